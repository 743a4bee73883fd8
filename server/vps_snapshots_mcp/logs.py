"""Log lines an operator can ship: `--log-format text` (the default) or `json`, one record a line, on stderr.

A JSON line is one object:

    time             RFC 3339, UTC, to the millisecond (2026-11-29T08:42:29.123Z)
    level            DEBUG | INFO | WARNING | ERROR | CRITICAL
    logger           the logger's name (vps_snapshots_mcp..., uvicorn.error, vps_snapshots_mcp.access)
    message          the message, redacted (no secret, no `Bearer` credential)
    request_id       while a tool call runs: its JSON-RPC id, as the audit trail records it
    trace_id         while a tool call runs: the W3C trace id of its `_meta.traceparent`, as the audit trail
                     records it; on an access line, that of the request's `traceparent` header
    http_request_id  over HTTP: the id of the HTTP request it was logged in (its access line carries it too)
    exception        a traceback, when the record has one (redacted as the message is)

plus the fields an access line adds (`protocol/http.py`'s `AccessLog`): method, path (the route's template,
never a query), status, duration_ms. A field that is not known is left out. Leaf module: the context fields
are set by the layers that know them (`bound_fields`), and read here when a record is written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT_FIELDS = ("request_id", "trace_id", "http_request_id")
EXTRA_FIELDS = ("method", "path", "status", "duration_ms")
"""What an access line passes as `extra=`; shown as fields in JSON, in the message in text."""

_fields: ContextVar[dict[str, Any] | None] = ContextVar("vps_snapshots_mcp_log_fields", default=None)


@contextmanager
def bound_fields(**fields: Any) -> Iterator[None]:
    """Every record logged inside carries these fields (those that are None are left out)."""
    current = _fields.get() or {}
    reset = _fields.set(current | {key: value for key, value in fields.items() if value is not None})
    try:
        yield
    finally:
        _fields.reset(reset)


def context_fields() -> dict[str, Any]:
    return dict(_fields.get() or {})


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring); never more than one line, whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line |= {key: value for key, value in context_fields().items() if key in CONTEXT_FIELDS}
        for key in (*EXTRA_FIELDS, *CONTEXT_FIELDS):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=True, default=str)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


__all__ = ["CONTEXT_FIELDS", "TEXT_FORMAT", "JsonFormatter", "LogFormat", "bound_fields", "formatter"]
