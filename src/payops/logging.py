"""One log format: every line is a JSON object with the time, level, logger, message, the request
id inside a request, and the ``extra=`` fields of the call. ``payops serve`` routes uvicorn's
loggers (``uvicorn.error``, ``uvicorn.access``) and Python warnings through the same formatter.

Nothing secret is ever passed to a logger (decisions §12); as a second line of defence a
``Masked`` value (payops.masked) is written as its mask, whether it is an argument of the message
or an extra field.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from payops.masked import MASK, Masked

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# What every LogRecord carries; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}  # uvicorn's copy with ANSI colours
_ENTRY_FIELDS = ("ts", "level", "logger", "request_id", "message")


def redact(value: Any) -> Any:
    """``value`` with every ``Masked`` secret (also inside mappings and sequences) replaced by
    the mask."""
    if isinstance(value, Masked):
        return MASK if value else ""
    if isinstance(value, Mapping):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact(item) for item in value]
    return value


def _message(record: logging.LogRecord) -> str:
    if not record.args:
        return str(record.msg)
    args = record.args
    if isinstance(args, Mapping):
        args = {key: redact(item) for key, item in args.items()}
    else:
        args = tuple(redact(item) for item in args)
    try:
        return str(record.msg) % args
    except (TypeError, ValueError):
        return f"{record.msg} {args!r}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "request_id": request_id.get(),
            "message": _message(record),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in _ENTRY_FIELDS:
                entry[key] = redact(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


HANDLER = "payops_json"


def dict_config(level: str = "INFO") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of a PayOps process: one JSON handler on stderr at the
    root, the ``payops`` loggers at ``level``, everything else at WARNING."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "payops.logging.JsonFormatter"}},
        "handlers": {
            HANDLER: {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": [HANDLER], "level": "WARNING"},
        "loggers": {
            "payops": {"level": level.upper(), "handlers": [], "propagate": True},
            # httpx logs every request URL at INFO; some gateways put merchant identifiers in
            # the path.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def uvicorn_log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's ``log_config``: its loggers hand their records to the root's JSON handler
    (uvicorn itself sets their levels from ``log_level``)."""
    config = dict_config(level)
    config["loggers"] = {
        **config["loggers"],
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": True},
    }
    return config


def configure(level: str = "INFO") -> None:
    logging.config.dictConfig(dict_config(level))
    logging.captureWarnings(True)  # warnings.warn(...) becomes a JSON line too
