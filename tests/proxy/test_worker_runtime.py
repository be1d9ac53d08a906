"""Error tracking inside Gunicorn's gevent worker: on, off, and where it starts."""

from __future__ import annotations

import pytest
import requests

from tests.proxy.conftest import StartBackend
from tests.support.recording_sink import RecordingSink

pytestmark = pytest.mark.proxy


@pytest.mark.verifies("L2-4", "OBS02-T1")
def test_without_dsn_gunicorn_serves_and_failures_still_get_json_500(
    start_backend: StartBackend, record_figure
) -> None:
    server = start_backend()

    failed = requests.post(f"{server.url}/admin/debug/raise", timeout=10)
    runtime = requests.get(f"{server.url}/admin/debug/runtime", timeout=10).json()

    assert requests.get(f"{server.url}/health/liveness", timeout=10).ok
    record_figure(
        "L2-4",
        f"raising route answered {failed.status_code} "
        f"{failed.headers.get('Content-Type')}; client in the worker: "
        f"{runtime['error_tracking']}",
    )
    assert failed.status_code == 500
    assert failed.json()["request_id"] == failed.headers["X-Request-ID"]
    assert runtime["error_tracking"] is False
    assert runtime["gevent_patched"] is True
    assert "error tracking off" in server.log()


@pytest.mark.verifies("L2-5", "OBS02-T2")
def test_client_is_created_in_the_gevent_worker_after_patching(
    start_backend: StartBackend, recording_sink: RecordingSink
) -> None:
    server = start_backend(SENTRY_DSN=recording_sink.dsn)
    master_pid = server.proc.pid if server.proc else None

    runtime = requests.get(f"{server.url}/admin/debug/runtime", timeout=10).json()
    requests.post(f"{server.url}/admin/debug/raise", timeout=10)
    recording_sink.wait_for(lambda sink: sink.errors, timeout=30)

    [event] = recording_sink.errors
    process = event["contexts"]["process"]
    assert process["pid"] in server.worker_pids()
    assert process["pid"] != master_pid
    assert process["ppid"] == master_pid
    assert process["gevent_patched"] is True
    assert process["error_tracking"] is True
    assert runtime["pid"] == process["pid"]
    assert server.log().count("error tracking on") == 1


@pytest.mark.verifies("OBS02-T7")
def test_error_raised_just_before_sigterm_is_delivered(
    start_backend: StartBackend, recording_sink: RecordingSink
) -> None:
    server = start_backend(SENTRY_DSN=recording_sink.dsn)

    assert (
        requests.post(f"{server.url}/admin/debug/raise", timeout=10).status_code == 500
    )
    exit_code = server.stop()

    assert exit_code == 0
    assert len(recording_sink.errors) == 1
    assert (
        recording_sink.errors[0]["exception"]["values"][-1]["type"] == "DeliberateError"
    )
