"""/admin/executions over the Flask test client, with a quick real agent process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.factory import create_app, shutdown
from app.routes import MAX_PROMPT_CHARS
from app.store import TERMINAL_STATES
from tests.support.agents import QUICK_AGENT_SETTINGS
from tests.support.sse import parse_sse, read_until_complete

pytestmark = pytest.mark.sanity

DEADLINE = 5.0


@pytest.fixture
def app_config(app_config: dict[str, str]) -> dict[str, str]:
    return {**app_config, **QUICK_AGENT_SETTINGS}


@pytest.fixture
def make_app(app_config: dict[str, str]) -> Iterator[Any]:
    """Another app on the same settings plus overrides; shut down after the test."""
    made: list[Flask] = []

    def factory(**overrides: str) -> Flask:
        made.append(create_app({**app_config, **overrides}))
        return made[-1]

    yield factory
    for extra in made:
        shutdown(extra)


def start(client: FlaskClient, prompt: str = "hello") -> dict[str, Any]:
    response = client.post(
        "/admin/executions", json={"agent": "command", "prompt": prompt}
    )
    assert response.status_code == 201, response.json
    return response.json


def wait_for(client: FlaskClient, execution_id: str, done: Any) -> dict[str, Any]:
    """Poll GET /admin/executions/<id> until `done(execution)` holds."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        execution = client.get(f"/admin/executions/{execution_id}").json
        if done(execution):
            return execution
        time.sleep(0.01)
    pytest.fail(f"execution {execution_id} never got there: {execution}")


def finished(execution: dict[str, Any]) -> bool:
    return execution["status"] in TERMINAL_STATES


def read_stream(response: TestResponse) -> list[dict[str, Any]]:
    """The events of an SSE response up to `complete`, failing past the deadline."""
    try:
        return read_until_complete(response.response, DEADLINE)
    finally:
        response.close()


def test_post_starts_an_execution_and_answers_201_with_its_id(
    client: FlaskClient,
) -> None:
    execution = start(client, "hang")

    assert len(execution["id"]) == 32
    assert execution["agent"] == "command"
    assert execution["prompt"] == "hang"
    assert execution["command"][-1] == "hang"
    assert execution["status"] == "running"


def test_finished_execution_shows_status_exit_code_and_output(
    client: FlaskClient,
) -> None:
    execution_id = start(client, "hello")["id"]

    execution = wait_for(client, execution_id, finished)

    assert execution["status"] == "succeeded"
    assert execution["exit_code"] == 0
    assert execution["output"] == ["echo: hello", "done"]


def test_nonzero_exit_is_failed(client: FlaskClient) -> None:
    execution = wait_for(client, start(client, "fail")["id"], finished)

    assert (execution["status"], execution["exit_code"]) == ("failed", 3)


def test_list_shows_executions_newest_first(client: FlaskClient) -> None:
    first, second = start(client, "one")["id"], start(client, "two")["id"]

    listed = client.get("/admin/executions").json["executions"]

    assert [e["id"] for e in listed] == [second, first]


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ({"agent": "command"}, "prompt", "is required"),
        ({"prompt": "p"}, "agent", "is required"),
        ({"agent": "command", "prompt": ""}, "prompt", "non-empty string"),
        ({"agent": "command", "prompt": "  \n"}, "prompt", "non-empty string"),
        ({"agent": "command", "prompt": 5}, "prompt", "non-empty string"),
        ({"agent": ["command"], "prompt": "p"}, "agent", "non-empty string"),
        (
            {"agent": "command", "prompt": "x" * (MAX_PROMPT_CHARS + 1)},
            "prompt",
            "at most",
        ),
    ],
    ids=["no-prompt", "no-agent", "empty", "blank", "number", "list", "too-long"],
)
def test_bad_field_is_400_naming_it(
    client: FlaskClient, body: dict[str, Any], field: str, problem: str
) -> None:
    response = client.post("/admin/executions", json=body)

    assert response.status_code == 400
    assert response.json["error"] == "bad_request"
    assert response.json["field"] == field
    assert response.json["message"].startswith(f"{field}: ")
    assert problem in response.json["message"]
    assert client.get("/admin/executions").json["executions"] == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{", "application/json"),
        ("[1, 2]", "application/json"),
        ('"prompt"', "application/json"),
        ("null", "application/json"),
        ('{"agent": "command", "prompt": "p"}', "text/plain"),
        ("agent=command&prompt=p", "application/x-www-form-urlencoded"),
    ],
    ids=["invalid", "array", "string", "null", "text-plain", "form"],
)
def test_body_that_is_not_a_json_object_is_400(
    client: FlaskClient, data: str, content_type: str
) -> None:
    response = client.post("/admin/executions", data=data, content_type=content_type)

    assert response.status_code == 400
    assert response.json["error"] == "bad_request"
    assert "JSON object" in response.json["message"]


def test_unknown_agent_is_400_naming_the_choices(client: FlaskClient) -> None:
    response = client.post(
        "/admin/executions", json={"agent": "bash", "prompt": "echo hi"}
    )

    assert response.status_code == 400
    assert "claude, codex, gemini, command, demo" in response.json["message"]


def test_command_agent_without_a_template_is_400(make_app: Any) -> None:
    client = make_app(AGENTED_AGENT_COMMAND="").test_client()

    response = client.post(
        "/admin/executions", json={"agent": "command", "prompt": "p"}
    )

    assert response.status_code == 400
    assert "AGENTED_AGENT_COMMAND" in response.json["message"]


def test_agent_binary_that_cannot_start_is_a_failed_execution(make_app: Any) -> None:
    client = make_app(AGENTED_AGENT_COMMAND="/nonexistent/agented-agent").test_client()

    execution = start(client, "p")

    assert execution["status"] == "failed"
    assert "cannot start /nonexistent/agented-agent" in execution["error"]


def test_body_over_the_limit_is_413_json(make_app: Any) -> None:
    client = make_app(AGENTED_MAX_BODY_BYTES="200").test_client()

    response = client.post(
        "/admin/executions", json={"agent": "command", "prompt": "x" * 300}
    )

    assert response.status_code == 413
    assert response.json["error"] == "request_entity_too_large"
    assert response.json["request_id"] == response.headers["X-Request-ID"]


def test_body_at_the_limit_is_accepted(make_app: Any) -> None:
    client = make_app(AGENTED_MAX_BODY_BYTES="200").test_client()
    body = json.dumps({"agent": "command", "prompt": "p"})
    body = body[:-1] + " " * (200 - len(body)) + "}"

    response = client.post(
        "/admin/executions", data=body, content_type="application/json"
    )

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("DELETE", ""), ("GET", "/stream")],
    ids=["get", "cancel", "stream"],
)
def test_unknown_execution_is_404_json_with_request_id(
    client: FlaskClient, method: str, suffix: str
) -> None:
    response = client.open(
        f"/admin/executions/nope{suffix}",
        method=method,
        headers={"X-Request-ID": "req-404"},
    )

    assert response.status_code == 404
    assert response.json == {
        "error": "not_found",
        "message": "no execution with id 'nope'",
        "request_id": "req-404",
    }


def test_cancel_of_running_execution_is_202_and_it_ends_cancelled(
    client: FlaskClient,
) -> None:
    execution_id = start(client, "hang")["id"]
    wait_for(client, execution_id, lambda e: e["output"] == ["echo: hang"])

    response = client.delete(f"/admin/executions/{execution_id}")
    execution = wait_for(client, execution_id, finished)

    assert response.status_code == 202
    assert response.json == {"id": execution_id, "cancelling": True}
    assert execution["status"] == "cancelled"
    assert execution["output"] == ["echo: hang"]


def test_cancel_of_finished_execution_is_200_and_changes_nothing(
    client: FlaskClient,
) -> None:
    execution_id = start(client)["id"]
    wait_for(client, execution_id, finished)

    response = client.delete(f"/admin/executions/{execution_id}")

    assert response.status_code == 200
    assert response.json == {"id": execution_id, "cancelling": False}
    assert client.get(f"/admin/executions/{execution_id}").json["status"] == (
        "succeeded"
    )


def test_stream_is_an_uncached_unbuffered_event_stream(client: FlaskClient) -> None:
    execution_id = start(client)["id"]

    response = client.get(f"/admin/executions/{execution_id}/stream", buffered=False)
    read_stream(response)

    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    assert response.headers["X-Request-ID"]


def test_stream_of_finished_execution_replays_and_completes(
    client: FlaskClient,
) -> None:
    execution_id = start(client)["id"]
    wait_for(client, execution_id, finished)

    body = client.get(f"/admin/executions/{execution_id}/stream").get_data(as_text=True)
    events = parse_sse(body)

    assert [e["event"] for e in events] == ["log", "log", "status", "complete"]
    assert [e["data"]["line"] for e in events[:2]] == ["echo: hello", "done"]
    assert events[-1]["data"] == {
        "id": execution_id,
        "status": "succeeded",
        "exit_code": 0,
        "lines": 2,
    }


def test_stream_of_running_execution_follows_it_to_complete(
    client: FlaskClient,
) -> None:
    execution_id = start(client, "live")["id"]

    response = client.get(f"/admin/executions/{execution_id}/stream", buffered=False)
    events = read_stream(response)

    logs = [e["data"] for e in events if e.get("event") == "log"]
    assert logs == [{"seq": 1, "line": "echo: live"}, {"seq": 2, "line": "done"}]
    assert [e["id"] for e in events if e.get("event") == "log"] == ["1", "2"]
    assert events[-1]["data"]["status"] == "succeeded"


def test_stream_resumes_after_last_event_id(client: FlaskClient) -> None:
    execution_id = start(client)["id"]
    wait_for(client, execution_id, finished)

    response = client.get(
        f"/admin/executions/{execution_id}/stream",
        headers={"Last-Event-ID": "1"},
        buffered=False,
    )
    events = read_stream(response)

    assert [e["data"]["line"] for e in events if e["event"] == "log"] == ["done"]


@pytest.mark.parametrize("last_event_id", ["-1", "abc", "١٢", "9" * 30])
def test_bad_last_event_id_is_400_json(client: FlaskClient, last_event_id: str) -> None:
    execution_id = start(client)["id"]

    response = client.get(
        f"/admin/executions/{execution_id}/stream",
        headers={"Last-Event-ID": last_event_id},
    )

    assert response.status_code == 400
    assert response.mimetype == "application/json"
    assert "Last-Event-ID" in response.json["message"]
