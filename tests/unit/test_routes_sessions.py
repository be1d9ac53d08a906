"""/admin/sessions: a conversation with one agent, one execution per message."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.store import TERMINAL_STATES
from tests.support.agents import QUICK_AGENT_SETTINGS
from tests.support.sse import read_until_complete

pytestmark = pytest.mark.sanity

DEADLINE = 5.0


@pytest.fixture
def app_config(app_config: dict[str, str]) -> dict[str, str]:
    return {**app_config, **QUICK_AGENT_SETTINGS}


@pytest.fixture
def session(client: FlaskClient) -> dict[str, Any]:
    response = client.post("/admin/sessions", json={"agent": "command"})
    assert response.status_code == 201, response.json
    return response.json


def send(client: FlaskClient, session_id: str, message: str) -> Any:
    return client.post(
        f"/admin/sessions/{session_id}/messages", json={"message": message}
    )


def wait_for_execution(
    client: FlaskClient, execution_id: str, done: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        execution = client.get(f"/admin/executions/{execution_id}").json
        if done(execution):
            return execution
        time.sleep(0.01)
    pytest.fail(f"execution {execution_id} never got there: {execution}")


def finished(execution: dict[str, Any]) -> bool:
    return execution["status"] in TERMINAL_STATES


def started_printing(execution: dict[str, Any]) -> bool:
    return bool(execution["output"])


def stream_events(client: FlaskClient, session_id: str) -> list[dict[str, Any]]:
    """The session stream's events up to `complete`, failing past the deadline."""
    response = client.get(f"/admin/sessions/{session_id}/stream", buffered=False)
    assert response.mimetype == "text/event-stream"
    try:
        return read_until_complete(response.response, DEADLINE)
    finally:
        response.close()


def test_new_session_is_active_idle_and_has_no_run(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    fetched = client.get(f"/admin/sessions/{session['id']}").json

    assert session["agent"] == "command"
    assert session["status"] == "active"
    assert session["last_execution_id"] is None
    assert fetched["busy"] is False
    assert fetched["id"] == session["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "agent: is required"),
        ({"agent": "bash"}, "agent must be one of"),
        ({"agent": 3}, "agent: must be a non-empty string"),
    ],
    ids=["missing", "unknown", "not-text"],
)
def test_session_with_bad_agent_is_400(
    client: FlaskClient, body: dict[str, Any], message: str
) -> None:
    response = client.post("/admin/sessions", json=body)

    assert response.status_code == 400
    assert message in response.json["message"]


@pytest.mark.parametrize("suffix", ["", "/output", "/stream"])
def test_unknown_session_is_404_json(client: FlaskClient, suffix: str) -> None:
    response = client.get(f"/admin/sessions/nope{suffix}")

    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert response.json["message"] == "no session with id 'nope'"


def test_message_runs_the_agent_as_an_execution_of_the_session(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    response = send(client, session["id"], "hi")
    execution = wait_for_execution(client, response.json["id"], finished)

    assert response.status_code == 201
    assert response.json["session_id"] == session["id"]
    assert execution["output"] == ["echo: hi", "done"]
    fetched = client.get(f"/admin/sessions/{session['id']}").json
    assert fetched["last_execution_id"] == execution["id"]
    assert fetched["busy"] is False


def test_message_without_text_is_400_naming_the_field(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    response = client.post(f"/admin/sessions/{session['id']}/messages", json={})

    assert response.status_code == 400
    assert response.json["field"] == "message"


def test_message_while_agent_is_answering_is_409(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    first = send(client, session["id"], "hang").json

    busy = client.get(f"/admin/sessions/{session['id']}").json["busy"]
    response = send(client, session["id"], "again")

    assert busy is True
    assert response.status_code == 409
    assert response.json["error"] == "conflict"
    assert "still answering" in response.json["message"]
    fetched = client.get(f"/admin/sessions/{session['id']}").json
    assert fetched["last_execution_id"] == first["id"]


def test_next_message_is_accepted_once_the_previous_run_ended(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    first = send(client, session["id"], "one").json
    wait_for_execution(client, first["id"], finished)

    response = send(client, session["id"], "two")

    assert response.status_code == 201


def test_stop_cancels_the_running_message_and_stops_the_session(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    execution_id = send(client, session["id"], "hang").json["id"]
    wait_for_execution(client, execution_id, started_printing)

    response = client.post(f"/admin/sessions/{session['id']}/stop")
    execution = wait_for_execution(client, execution_id, finished)

    assert response.status_code == 200
    assert response.json["status"] == "stopped"
    assert execution["status"] == "cancelled"


def test_message_to_a_stopped_session_is_409(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    client.post(f"/admin/sessions/{session['id']}/stop")

    response = send(client, session["id"], "anyone there?")

    assert response.status_code == 409
    assert "stopped" in response.json["message"]


def test_output_lists_each_turn_with_its_lines(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    ids = []
    for message in ("one", "two"):
        ids.append(send(client, session["id"], message).json["id"])
        wait_for_execution(client, ids[-1], finished)

    body = client.get(f"/admin/sessions/{session['id']}/output").json

    assert body["session"]["id"] == session["id"]
    assert body["turns"] == [
        {
            "execution_id": ids[0],
            "message": "one",
            "status": "succeeded",
            "exit_code": 0,
            "lines": ["echo: one", "done"],
        },
        {
            "execution_id": ids[1],
            "message": "two",
            "status": "succeeded",
            "exit_code": 0,
            "lines": ["echo: two", "done"],
        },
    ]


def test_stream_of_session_without_a_run_is_a_single_complete_event(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    response = client.get(f"/admin/sessions/{session['id']}/stream")

    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.get_data(as_text=True) == (
        'event: complete\ndata: {"id": null, "status": "idle", "lines": 0}\n\n'
    )


def test_stream_of_session_follows_its_latest_run(
    client: FlaskClient, session: dict[str, Any]
) -> None:
    execution_id = send(client, session["id"], "live").json["id"]

    events = stream_events(client, session["id"])

    lines = [e["data"]["line"] for e in events if e.get("event") == "log"]
    assert lines == ["echo: live", "done"]
    assert events[-1]["data"]["id"] == execution_id
    assert events[-1]["data"]["status"] == "succeeded"
