"""Logging set-up: JSON or text lines, each carrying the current request id."""

from __future__ import annotations

import logging
import sys
import uuid

from flask import g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
_MAX_REQUEST_ID = 128
# attributes every LogRecord has; anything else was passed through `extra`
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "request_id", "taskName"}


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record; Flask's `g` is greenlet- and thread-local."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id()
        return True


class TextFormatter(logging.Formatter):
    """One line per event: the message, then its fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}
        if record.request_id:
            fields = {"request_id": record.request_id, **fields}
        return " ".join([line, *(f"{k}={v}" for k, v in fields.items())])


def configure_logging(log_format: str = "text", level: str = "INFO") -> None:
    """Route the root logger to stderr in the chosen format; safe to call twice."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(_formatter(log_format))

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_agented", False)]:
        root.removeHandler(old)
    handler._agented = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # urllib3 (the Sentry transport's HTTP client) warns on every retry; while
    # Sentry is unreachable that is a line per event. Delivery problems are logged
    # once per condition by error tracking instead.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"levelname": "level", "asctime": "time"},
        )
    return TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def current_request_id() -> str | None:
    if not has_request_context():
        return None
    return g.get("request_id")


def assign_request_id() -> None:
    """Take the caller's X-Request-ID when it is sane, else make one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= _MAX_REQUEST_ID and given.isprintable() and given.isascii():
        g.request_id = given
    else:
        g.request_id = uuid.uuid4().hex


def echo_request_id(response):
    response.headers[REQUEST_ID_HEADER] = current_request_id() or ""
    return response
