"""Charger ids: which ones the gateway admits, and how one goes into an upstream URL.

A charger names itself in the last segment of the URL it connects to. That
id selects its route, its password and its translation state, and it becomes
the last segment of the URL the gateway opens to the CSMS, so it must not be
able to mean anything else there. OCPP's ``identifierString`` alphabet (the
one OCPP 2.x prescribes for the station identity) is what is accepted by
default: letters, digits and ``* - _ = : + | @ .``, at most 48 characters.
An operator whose estate uses other characters widens the set with
``charger_ids.extra_characters``; whatever the set, the id is percent-encoded
in upstream URLs and appears unchanged (decoded) in logs, metrics and the API.

Pure functions only: ``Gateway._process_request`` asks ``from_path`` and
``UpstreamLink`` asks ``upstream_url``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

IDENTIFIER_PUNCTUATION = "*-_=:+|@."
IDENTIFIER_CHARACTERS = frozenset(string.ascii_letters + string.digits + IDENTIFIER_PUNCTUATION)
MAX_LENGTH = 48
# Characters of the alphabet that a URL path segment carries as they are (RFC 3986 pchar); "|" is encoded.
_PATH_SAFE = "-._~*=:+@"


@dataclass(frozen=True, slots=True)
class IdRules:
    """Which ids are admitted: the identifierString alphabet plus the operator's extra characters."""

    extra_characters: str = ""
    max_length: int = MAX_LENGTH
    allowed: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed", IDENTIFIER_CHARACTERS | frozenset(self.extra_characters))


DEFAULT_RULES = IdRules()


def forbidden_extra(characters: str) -> str | None:
    """Why ``characters`` cannot widen the alphabet (control characters never can), or None."""
    for ch in characters:
        if not ch.isprintable():  # control characters, and every whitespace but the plain space
            return f"{ch!r} is a control or layout character; charger ids can never contain one"
        if ch == "/":
            return "'/' separates URL path segments; a charger id can never contain one"
    return None


def problem(charger_id: str, rules: IdRules = DEFAULT_RULES) -> str | None:
    """Why ``charger_id`` is not admitted under ``rules``, or None when it is."""
    if not charger_id:
        return "the charger id is empty"
    if len(charger_id) > rules.max_length:
        return f"the charger id has {len(charger_id)} characters; at most {rules.max_length} are allowed"
    if charger_id.strip(".") == "":
        return f"{charger_id!r} is a relative path segment, not a charger id"
    allowed = rules.allowed
    bad = sorted({ch for ch in charger_id if ch not in allowed})
    if bad:
        shown = ", ".join(repr(ch) for ch in bad)
        return (f"the charger id contains {shown}; allowed are letters, digits and {IDENTIFIER_PUNCTUATION}"
                + (f" and {rules.extra_characters!r}" if rules.extra_characters else ""))
    return None


def from_path(path: str, rules: IdRules = DEFAULT_RULES) -> tuple[str, str | None]:
    """The charger id of a request path (``/<prefix>/<id>[?query]``) and why it is refused, if it is.

    The id is the path's last segment, percent-decoded: ``/ocpp/`` names no
    charger (it is not charger "ocpp"), and an encoded ``/`` or ``?`` stays
    inside the id, where the alphabet refuses it.
    """
    raw = path.split("?", 1)[0].rsplit("/", 1)[-1]
    if not raw:
        return "", "the URL must end with the charger id: ws://host:port/<prefix>/<charger_id>"
    try:
        charger_id = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return raw, f"the charger id {raw!r} is not percent-encoded UTF-8"
    return charger_id, problem(charger_id, rules)


def upstream_url(base: str, charger_id: str) -> str:
    """``<base>/<charger_id>`` with the id percent-encoded as one path segment."""
    return f"{base}/{quote(charger_id, safe=_PATH_SAFE)}"
