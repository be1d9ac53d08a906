"""JSON error responses that carry the request id and never a traceback."""

from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from app.error_tracking import last_event_id
from app.logs import current_request_id


class BadRequestField(Exception):
    """A request body that is missing a field or has one of the wrong type."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def error_body(status: int, error: str, message: str, **extra):
    body = {"error": error, "message": message, "request_id": current_request_id()}
    return jsonify({**body, **extra}), status


def register_error_handlers(app: Flask) -> None:
    # Only HTTPException and InternalServerError are handled here: a handler for
    # Exception would swallow unhandled errors before Flask signals
    # got_request_exception, which is what error tracking listens to.
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(InternalServerError, _internal_error)
    app.register_error_handler(BadRequestField, _bad_field)


def _http_error(exc: HTTPException):
    name = (exc.name or "error").lower().replace(" ", "_")
    response = error_body(exc.code or 500, name, exc.description or "")
    if exc.code == 405 and exc.valid_methods:
        response[0].headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response


def _internal_error(exc: InternalServerError):
    # the id of the error event already sent, so a user's report can be looked up
    reference = {"event_id": event_id} if (event_id := last_event_id()) else {}
    message = "the server failed; see its log"
    return error_body(500, "internal_server_error", message, **reference)


def _bad_field(exc: BadRequestField):
    return error_body(400, "bad_request", str(exc), field=exc.field)
