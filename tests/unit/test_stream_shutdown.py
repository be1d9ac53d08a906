"""A stopping server ends its SSE streams with a `shutdown` event, without waiting."""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.broker import Broker
from app.factory import begin_shutdown
from tests.support.sse import parse_sse

pytestmark = [pytest.mark.sanity, pytest.mark.verifies("F-5")]

DEADLINE = 5.0
# far beyond the test's deadline: only a wake-up can end an idle stream in time
HEARTBEAT = 60.0
SHUTDOWN_DATA = {"reason": "server shutting down", "retry": True}
HANGING_AGENT = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
    "import time; time.sleep(60)"
)


@pytest.fixture
def app_config(app_config: dict[str, str]) -> dict[str, str]:
    return {
        **app_config,
        "AGENTED_AGENT_COMMAND": HANGING_AGENT,
        "AGENTED_SSE_HEARTBEAT": str(HEARTBEAT),
    }


def start_execution(client: FlaskClient) -> str:
    response = client.post(
        "/admin/executions", json={"agent": "command", "prompt": "p"}
    )
    assert response.status_code == 201, response.json
    return response.json["id"]


def start_session_run(client: FlaskClient) -> str:
    session_id = client.post("/admin/sessions", json={"agent": "command"}).json["id"]
    response = client.post(
        f"/admin/sessions/{session_id}/messages", json={"message": "p"}
    )
    assert response.status_code == 201, response.json
    return session_id


def read_to_end(chunks: Iterator[Any]) -> list[dict[str, Any]]:
    """Every event until the stream ends, failing past the deadline."""
    wire = ""
    deadline = time.monotonic() + DEADLINE
    for chunk in chunks:
        wire += chunk.decode() if isinstance(chunk, bytes) else chunk
        assert time.monotonic() < deadline, f"the stream did not end: {wire!r}"
    return parse_sse(wire)


def test_idle_stream_ends_with_shutdown_event_once_shutdown_begins(
    app: Flask, client: FlaskClient
) -> None:
    execution_id = start_execution(client)
    response = client.get(f"/admin/executions/{execution_id}/stream", buffered=False)
    chunks = iter(response.response)
    first = parse_sse(next(chunks).decode())
    # begun from another thread while the stream waits, as a signal handler would
    closer = threading.Timer(0.1, begin_shutdown, [app])

    started = time.monotonic()
    closer.start()
    rest = read_to_end(chunks)
    seconds = time.monotonic() - started
    response.close()
    closer.join(DEADLINE)

    assert first == [{"event": "status", "data": {"status": "running"}}]
    assert rest == [{"event": "shutdown", "retry": "1000", "data": SHUTDOWN_DATA}]
    assert seconds < 2.0, f"the stream took {seconds:.1f} s to end"


@pytest.mark.parametrize("kind", ["execution", "session"])
def test_stream_opened_after_shutdown_began_ends_at_once(
    app: Flask, client: FlaskClient, kind: str
) -> None:
    if kind == "execution":
        path = f"/admin/executions/{start_execution(client)}/stream"
    else:
        path = f"/admin/sessions/{start_session_run(client)}/stream"
    begin_shutdown(app)

    started = time.monotonic()
    response = client.get(path, buffered=False)
    events = read_to_end(iter(response.response))
    response.close()

    assert response.status_code == 200
    assert events[-1]["event"] == "shutdown", events
    assert events[-1]["data"] == SHUTDOWN_DATA
    assert time.monotonic() - started < 2.0


def test_closed_broker_wakes_every_subscriber_and_says_it_is_closed() -> None:
    broker = Broker()

    with broker.subscribe("a") as first, broker.subscribe("b") as second:
        woken = broker.close()
        pending = (first.get_nowait(), second.get_nowait())

    assert woken == 2
    assert pending == (None, None)
    assert broker.closed
