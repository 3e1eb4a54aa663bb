"""structlog set-up: JSON lines for the service, a readable console for the demo."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(fmt: str = "json", level: str = "info", stream: Any = None) -> None:
    """Configure structlog once per process; every line carries a timestamp and level."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=stream is None and sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library; keep them quiet unless debugging.
    logging.basicConfig(level=logging.WARNING if level != "debug" else logging.DEBUG, stream=stream or sys.stderr)
    logging.getLogger("websockets").setLevel(logging.ERROR if level != "debug" else logging.DEBUG)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger("ocpp_gateway").bind(**bound)
