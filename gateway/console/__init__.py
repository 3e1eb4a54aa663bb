"""The admin console: a read-only page over the admin JSON API (index.html, console.js, console.css).

Plain files, no build step; ``gateway.admin`` serves them at ``/`` and ``/console/<name>``.
"""

from __future__ import annotations

from importlib.resources import files

# The files the admin server hands out, with their content types; nothing else under /console/ exists.
ASSETS = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
}


def asset(name: str) -> bytes:
    """The bytes of one of the console's ``ASSETS`` (KeyError for any other name)."""
    if name not in ASSETS:
        raise KeyError(name)
    return files(__name__).joinpath(name).read_bytes()
