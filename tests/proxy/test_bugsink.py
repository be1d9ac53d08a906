"""The Level 2 checklist against a real Sentry-compatible server (Bugsink)."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.proxy.conftest import StartBackend
from tests.support.bugsink import BugsinkServer, Project

pytestmark = pytest.mark.proxy

API_KEY = "agented-proxy-api-key-6a1f9c"


def _raise(server_url: str, http: requests.Session | None = None, **kwargs) -> str:
    """POST the failing route; the 500 body names the Sentry event id."""
    post = http.post if http is not None else requests.post
    response = post(f"{server_url}/admin/debug/raise", timeout=10, **kwargs)
    assert response.status_code == 500
    assert response.json()["error"] == "internal_server_error"
    return response.json()["event_id"]


@pytest.mark.verifies("L2-1", "OBS02-T3")
def test_unhandled_exception_is_stored_within_a_minute(
    start_backend: StartBackend,
    bugsink: BugsinkServer,
    bugsink_project: Project,
    record_figure,
) -> None:
    server = start_backend(SENTRY_DSN=bugsink_project.dsn, SENTRY_ENVIRONMENT="proxy")

    started = time.monotonic()
    event_id = _raise(server.url)
    stored = bugsink.wait_for_event(bugsink_project, event_id, timeout=60)
    delay = time.monotonic() - started

    record_figure("L2-1", f"event stored after {delay:.2f} s, limit 60 s")
    data = stored["data"]
    assert data["exception"]["values"][-1]["type"] == "DeliberateError"
    assert data["environment"] == "proxy"
    assert data["release"] == "agented@0.1.0"


@pytest.mark.verifies("L2-3", "OBS02-T5")
def test_stored_event_has_request_context_and_no_personal_data(
    start_backend: StartBackend,
    bugsink: BugsinkServer,
    bugsink_project: Project,
    record_figure,
) -> None:
    server = start_backend(SENTRY_DSN=bugsink_project.dsn, AGENTED_API_KEY=API_KEY)
    secrets = {
        "cookie": "cookie-value-4be1d2",
        "authorization": "bearer-token-77c0aa",
        "client_ip": "198.51.100.23",
        "query": "query-secret-5d8e31",
        "auth_token": "x-auth-token-a9f3b0",
    }

    event_id = _raise(
        f"{server.url}",
        params={"token": secrets["query"], "page": "3"},
        headers={
            "X-API-Key": API_KEY,
            "Authorization": f"Bearer {secrets['authorization']}",
            "Cookie": f"sessionid={secrets['cookie']}",
            "X-Forwarded-For": secrets["client_ip"],
            "X-Auth-Token": secrets["auth_token"],
            "User-Agent": "agented-proxy-tests/1.0",
        },
    )
    stored = bugsink.wait_for_event(bugsink_project, event_id, timeout=60)

    request = stored["data"]["request"]
    assert request["url"] == f"{server.url}/admin/debug/raise"
    assert request["method"] == "POST"
    assert request["headers"]["User-Agent"] == "agented-proxy-tests/1.0"
    assert "page=3" in request["query_string"]
    text = json.dumps(stored)
    sent = {**secrets, "api_key": API_KEY}
    found = [name for name, secret in sent.items() if secret in text]
    record_figure(
        "L2-3",
        f"URL, method and {len(request['headers'])} headers stored; "
        f"{len(found)} of {len(sent)} secrets sent found in the stored event",
    )
    assert found == []
    assert "127.0.0.1" not in json.dumps(stored["data"].get("user", {}))
    assert "REMOTE_ADDR" not in request.get("env", {})


@pytest.mark.verifies("L2-5")
def test_stored_event_comes_from_the_gevent_worker(
    start_backend: StartBackend,
    bugsink: BugsinkServer,
    bugsink_project: Project,
    record_figure,
) -> None:
    server = start_backend(SENTRY_DSN=bugsink_project.dsn)

    stored = bugsink.wait_for_event(bugsink_project, _raise(server.url), timeout=60)

    process = stored["data"]["contexts"]["process"]
    record_figure(
        "L2-5",
        f"event from pid {process['pid']}, child of master {process['ppid']}, "
        f"gevent patched: {process['gevent_patched']}",
    )
    assert process["pid"] in server.worker_pids()
    assert server.proc is not None
    assert process["ppid"] == server.proc.pid
    assert process["gevent_patched"] is True


@pytest.mark.verifies("OBS02-T7")
def test_error_then_sigterm_at_once_is_stored(
    start_backend: StartBackend, bugsink: BugsinkServer, bugsink_project: Project
) -> None:
    server = start_backend(SENTRY_DSN=bugsink_project.dsn)

    event_id = _raise(server.url)
    assert server.stop() == 0

    assert bugsink.wait_for_event(bugsink_project, event_id, timeout=60)


@pytest.mark.verifies("L3-1")
def test_fifty_identical_errors_make_one_issue_of_fifty_events(
    start_backend: StartBackend,
    bugsink: BugsinkServer,
    bugsink_project: Project,
    record_figure,
) -> None:
    server = start_backend(SENTRY_DSN=bugsink_project.dsn)

    with requests.Session() as http:
        event_ids = [_raise(server.url, http) for _ in range(50)]
    assert server.stop() == 0
    for event_id in event_ids:
        bugsink.wait_for_event(bugsink_project, event_id, timeout=60)

    issues = bugsink.issues(bugsink_project)
    record_figure(
        "L3-1",
        f"{len(issues)} issue holding {issues[0]['digested_event_count']} events",
    )
    assert len(set(event_ids)) == 50
    assert len(issues) == 1
    assert issues[0]["digested_event_count"] == 50
