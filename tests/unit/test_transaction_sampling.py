"""Performance transactions: every route when sampled, never an SSE stream."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from app.error_tracking import TracesSampler
from tests.support.sentry_capture import Capture, start_capture

pytestmark = pytest.mark.sanity

FAST_AGENT = {"AGENTED_AGENT_COMMAND": "python3 -c \"print('one'); print('two')\""}


@pytest.fixture
def app_config(app_config: dict[str, str]) -> dict[str, str]:
    return {**app_config, **FAST_AGENT}


def _finished_execution(client: FlaskClient) -> str:
    execution = client.post(
        "/admin/executions", json={"agent": "command", "prompt": "p"}
    ).json
    stream = client.get(f"/admin/executions/{execution['id']}/stream")
    assert b"event: complete" in stream.data
    return execution["id"]


def _session_with_a_run(client: FlaskClient) -> str:
    session = client.post("/admin/sessions", json={"agent": "command"}).json
    client.post(f"/admin/sessions/{session['id']}/messages", json={"message": "m"})
    return session["id"]


def _names(capture: Capture) -> list[str]:
    return [t["transaction"] for t in capture.transactions]


@pytest.mark.verifies("OBS02-T4")
def test_streams_make_no_transaction_while_json_routes_do(client: FlaskClient) -> None:
    capture = start_capture(rate=1.0)
    execution_id = _finished_execution(client)
    session_id = _session_with_a_run(client)
    session_stream = client.get(f"/admin/sessions/{session_id}/stream")
    assert b"event: complete" in session_stream.data

    client.get(f"/admin/sessions/{session_id}/output")
    client.post(f"/admin/sessions/{session_id}/stop")
    client.get(f"/admin/executions/{execution_id}")

    names = _names(capture)
    assert "executions.stream_execution" not in names
    assert "sessions.stream_session" not in names
    for expected in (
        "executions.create_execution",
        "sessions.session_output",
        "sessions.stop_session",
        "executions.get_execution",
    ):
        assert expected in names


@pytest.mark.verifies("OBS02-T4")
def test_rate_zero_makes_no_transaction(client: FlaskClient) -> None:
    capture = start_capture(rate=0.0)

    client.get("/health/liveness")
    client.get("/admin/executions")

    assert capture.transactions == []


@pytest.mark.verifies("OBS02-T4")
def test_one_transaction_per_sampled_json_request(client: FlaskClient) -> None:
    capture = start_capture(rate=1.0)

    client.get("/health/liveness")

    assert _names(capture) == ["health.liveness"]


@pytest.mark.verifies("OBS02-T4")
def test_filter_drops_stream_transactions_even_if_the_sampler_keeps_them(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TracesSampler, "__call__", lambda self, context: 1.0)
    capture = start_capture(rate=1.0)

    _finished_execution(client)

    assert "executions.create_execution" in _names(capture)
    assert "executions.stream_execution" not in _names(capture)


@pytest.mark.verifies("OBS02-T4")
@pytest.mark.parametrize(
    ("trace_flag", "rate", "expected"),
    [("1", 0.0, 1), ("0", 1.0, 0)],
    ids=["upstream-sampled", "upstream-dropped"],
)
def test_incoming_trace_decision_is_honoured_for_json_routes(
    client: FlaskClient, trace_flag: str, rate: float, expected: int
) -> None:
    capture = start_capture(rate=rate)
    trace = f"{'a' * 32}-{'b' * 16}-{trace_flag}"

    client.get("/health/liveness", headers={"sentry-trace": trace})

    assert len(capture.transactions) == expected


@pytest.mark.verifies("OBS02-T4")
def test_incoming_sampled_trace_cannot_force_a_stream_transaction(
    client: FlaskClient,
) -> None:
    capture = start_capture(rate=1.0)
    execution_id = _finished_execution(client)
    trace = f"{'a' * 32}-{'b' * 16}-1"

    client.get(
        f"/admin/executions/{execution_id}/stream", headers={"sentry-trace": trace}
    )

    assert "executions.stream_execution" not in _names(capture)
