"""The collector's logs: ``--log-level``, ``--log-format text|json`` and the access log.

JSON is one object per line with the keys log collectors expect (``time`` in ISO 8601 UTC,
``level``, ``logger``, ``message``, ``exc_info`` when there is a traceback, plus any ``extra``),
written by python-json-logger. Uvicorn's loggers go through the same handler; its access log
(one line per HTTP request) is off unless asked for.
"""

from __future__ import annotations

import enum
import logging
import sys
import time

from pythonjsonlogger.json import JsonFormatter

__all__ = ["LogFormat", "LogLevel", "configure_logging"]


class LogFormat(enum.StrEnum):
    """How each log line is written."""

    TEXT = "text"
    JSON = "json"


class LogLevel(enum.StrEnum):
    """The least severe level written (Python's level names, lower case)."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: LogLevel, fmt: LogFormat, access_log: bool = False) -> None:
    """Send every log record at ``level`` or above to stderr in ``fmt``; uvicorn's access log
    (INFO) only with ``access_log``. Replaces handlers set before (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.JSON:
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}",
                style="{",
                rename_fields={"levelname": "level", "name": "logger"},
                timestamp="time",
            )
        )
    else:
        text = logging.Formatter(_TEXT)
        text.converter = time.gmtime  # UTC, as everything else here
        handler.setFormatter(text)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
        uv.setLevel(logging.NOTSET)
    access = logging.getLogger("uvicorn.access")
    access.disabled = not access_log
    if access_log:
        access.setLevel(logging.INFO)
