"""HTTP routes, one blueprint per area, and the helpers they share."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    NotFound,
    RequestEntityTooLarge,
)

from app.errors import BadRequestField

MAX_PROMPT_CHARS = 100_000


def json_body() -> dict[str, Any]:
    """The request's JSON object; a 400 for anything else."""
    try:
        # what the server's reader raises on broken chunk framing or a client gone
        # mid-body is its own type (Gunicorn's ParseException, OSError...): all of
        # it is the client's fault, not the service's
        data = request.get_data(cache=True)
    except HTTPException:
        raise
    except Exception as exc:
        raise BadRequest("the request body could not be read") from exc
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        # a chunked body is cut at the limit rather than refused; at the limit, it
        # cannot be told from a longer one
        raise RequestEntityTooLarge(f"the body must be under {limit} bytes")
    try:
        body = request.get_json(silent=True)
    except RecursionError as exc:  # nesting deeper than the parser's stack
        raise BadRequest("the body could not be read as JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest(
            "the body must be a JSON object (Content-Type: application/json)"
        )
    return body


def required_text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise BadRequestField(field, "is required")
    if not isinstance(value, str) or not value.strip():
        raise BadRequestField(field, "must be a non-empty string")
    if len(value) > MAX_PROMPT_CHARS:
        raise BadRequestField(field, f"must be at most {MAX_PROMPT_CHARS} characters")
    if "\x00" in value:
        # no command line can carry it: the agent could never be started
        raise BadRequestField(field, "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequestField(
                field, "must be valid Unicode text (a lone surrogate is not)"
            ) from None
    return value


def services() -> Any:
    return current_app.extensions["agented"]


def found(item: Any, what: str, item_id: str) -> Any:
    if item is None:
        raise NotFound(f"no {what} with id {item_id[:64]!r}")
    return item
