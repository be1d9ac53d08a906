"""Transactions from a real Gunicorn gevent worker, read back from a recording sink."""

from __future__ import annotations

import math

import pytest
import requests

from tests.proxy.conftest import StartBackend
from tests.support.recording_sink import RecordingSink

pytestmark = pytest.mark.proxy


def _read_stream(url: str) -> list[str]:
    with requests.get(url, stream=True, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [
            line.removeprefix("event: ")
            for line in response.iter_lines(decode_unicode=True)
            if line.startswith("event: ")
        ]
    assert events[-1] == "complete", events
    return events


@pytest.mark.verifies("L2-2", "OBS02-T4")
def test_streams_read_to_the_end_make_no_transaction_json_routes_do(
    start_backend: StartBackend, recording_sink: RecordingSink, record_figure
) -> None:
    server = start_backend(SENTRY_DSN=recording_sink.dsn, SENTRY_TRACES_SAMPLE_RATE="1")
    api = server.url + "/admin"

    execution = requests.post(
        f"{api}/executions", json={"agent": "command", "prompt": "p"}, timeout=10
    ).json()
    assert "log" in _read_stream(f"{api}/executions/{execution['id']}/stream")
    # ids, not responses: a response kept alive keeps its connection open, and
    # the graceful stop below would wait out the keep-alive for it
    session_id = requests.post(
        f"{api}/sessions", json={"agent": "command"}, timeout=10
    ).json()["id"]
    requests.post(
        f"{api}/sessions/{session_id}/messages", json={"message": "m"}, timeout=10
    )
    _read_stream(f"{api}/sessions/{session_id}/stream")
    assert requests.get(f"{api}/sessions/{session_id}/output", timeout=10).ok
    assert requests.post(f"{api}/sessions/{session_id}/stop", timeout=10).ok
    assert server.stop() == 0  # a graceful stop flushes the SDK's queue

    names = {t["transaction"] for t in recording_sink.transactions}
    streamed = names & {"executions.stream_execution", "sessions.stream_session"}
    record_figure(
        "L2-2",
        f"2 streams read to the end made {len(streamed)} transactions; "
        f"{len(names - streamed)} JSON routes made theirs",
    )
    assert {
        "executions.create_execution",
        "sessions.create_session",
        "sessions.send_message",
        "sessions.session_output",
        "sessions.stop_session",
    } <= names
    assert "executions.stream_execution" not in names
    assert "sessions.stream_session" not in names
    urls = [t["request"]["url"] for t in recording_sink.transactions]
    assert not [u for u in urls if u.endswith("/stream")]


def _binomial_bounds(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The central interval holding all but `alpha` of Binomial(n, p)."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, tail = 0, 0.0
    while tail + pmf[low] < alpha / 2:
        tail += pmf[low]
        low += 1
    high, tail = n, 0.0
    while tail + pmf[high] < alpha / 2:
        tail += pmf[high]
        high -= 1
    return low, high


@pytest.mark.verifies("L3-2")
def test_sampling_rate_holds_over_a_thousand_requests(
    start_backend: StartBackend,
    recording_sink: RecordingSink,
    record_figure,
) -> None:
    server = start_backend(
        SENTRY_DSN=recording_sink.dsn, SENTRY_TRACES_SAMPLE_RATE="0.1"
    )
    requests_sent = 1000

    with requests.Session() as http:
        for _ in range(requests_sent):
            assert http.get(f"{server.url}/health/liveness", timeout=10).ok
    assert server.stop() == 0

    # readiness probes during start-up may be sampled too: count liveness only
    count = sum(
        1 for t in recording_sink.transactions if t["transaction"] == "health.liveness"
    )
    low, high = _binomial_bounds(requests_sent, 0.1, alpha=0.001)
    record_figure(
        "L3-2", f"{count} transactions of {requests_sent}, bounds {low}-{high}"
    )
    assert low <= count <= high
