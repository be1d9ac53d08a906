"""Sessions: a conversation with an agent, one run per message."""

from __future__ import annotations

from flask import Blueprint, Response
from werkzeug.exceptions import BadRequest, Conflict

from app.agents import AgentError
from app.routes import found, json_body, required_text, services
from app.routes.executions import event_stream_response
from app.sessions import SessionConflict
from app.streaming import SSE_HEADERS, SSE_MIMETYPE, sse_event

bp = Blueprint("sessions", __name__, url_prefix="/admin/sessions")


def _session(session_id: str) -> dict:
    return found(services().sessions.get(session_id), "session", session_id)


@bp.post("")
def create_session():
    agent = required_text(json_body(), "agent")
    try:
        return services().sessions.create(agent), 201
    except AgentError as exc:
        raise BadRequest(str(exc)) from exc


@bp.get("/<session_id>")
def get_session(session_id: str):
    return _session(session_id)


@bp.post("/<session_id>/messages")
def send_message(session_id: str):
    session = _session(session_id)
    message = required_text(json_body(), "message")
    try:
        return services().sessions.send(session, message), 201
    except SessionConflict as exc:
        raise Conflict(str(exc)) from exc


@bp.get("/<session_id>/output")
def session_output(session_id: str):
    session = _session(session_id)
    return {"session": session, "turns": services().sessions.output(session)}


@bp.post("/<session_id>/stop")
def stop_session(session_id: str):
    return services().sessions.stop(_session(session_id))


@bp.get("/<session_id>/stream")
def stream_session(session_id: str):
    """Follows the session's latest run; a session with no run completes at once."""
    session = _session(session_id)
    if session["last_execution_id"]:
        return event_stream_response(session["last_execution_id"])
    idle = sse_event("complete", {"id": None, "status": "idle", "lines": 0})
    return Response(iter([idle]), mimetype=SSE_MIMETYPE, headers=SSE_HEADERS)
