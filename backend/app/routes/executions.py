"""Executions: start an agent run, inspect it, cancel it, stream its output."""

from __future__ import annotations

from flask import Blueprint, Response, request, stream_with_context
from werkzeug.exceptions import BadRequest

from app.agents import AgentError
from app.routes import found, json_body, required_text, services
from app.streaming import (
    SSE_HEADERS,
    SSE_MIMETYPE,
    execution_events,
    parse_last_event_id,
)

bp = Blueprint("executions", __name__, url_prefix="/admin/executions")


@bp.post("")
def create_execution():
    body = json_body()
    prompt = required_text(body, "prompt")
    agent = required_text(body, "agent")
    try:
        execution = services().runner.start(agent, prompt)
    except AgentError as exc:
        raise BadRequest(str(exc)) from exc
    return execution, 201


@bp.get("")
def list_executions():
    return {"executions": services().executions.list()}


@bp.get("/<execution_id>")
def get_execution(execution_id: str):
    svc = services()
    execution = found(svc.executions.get(execution_id), "execution", execution_id)
    execution["output"] = [text for _, text in svc.executions.lines_after(execution_id)]
    return execution


@bp.delete("/<execution_id>")
def cancel_execution(execution_id: str):
    svc = services()
    found(svc.executions.get(execution_id), "execution", execution_id)
    cancelling = svc.runner.cancel(execution_id)
    return {"id": execution_id, "cancelling": cancelling}, 202 if cancelling else 200


@bp.get("/<execution_id>/stream")
def stream_execution(execution_id: str):
    svc = services()
    found(svc.executions.get(execution_id), "execution", execution_id)
    return event_stream_response(execution_id)


def event_stream_response(execution_id: str) -> Response:
    """The SSE response following one execution, resuming after Last-Event-ID."""
    svc = services()
    try:
        after = parse_last_event_id(request.headers.get("Last-Event-ID"))
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    events = execution_events(
        svc.executions,
        svc.broker,
        execution_id,
        after_seq=after,
        heartbeat_interval=svc.settings.heartbeat_interval,
    )
    return Response(
        stream_with_context(events), mimetype=SSE_MIMETYPE, headers=SSE_HEADERS
    )
