"""What an unhandled exception sends, and what client errors do not."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.support.sentry_capture import Capture

pytestmark = pytest.mark.sanity


@pytest.mark.verifies("OBS02-T3")
def test_unhandled_exception_sends_one_event_with_request_context(
    sentry_capture: Capture, client: FlaskClient
) -> None:
    response = client.post(
        "/admin/debug/raise?page=2",
        headers={"User-Agent": "agented-tests/1.0", "Accept": "application/json"},
    )

    assert response.status_code == 500
    [event] = sentry_capture.errors
    assert event["exception"]["values"][-1]["type"] == "DeliberateError"
    assert event["level"] == "error"
    assert event["environment"] == "test"
    assert event["release"] == "agented@test"
    request = event["request"]
    assert request["url"] == "http://localhost/admin/debug/raise"
    assert request["method"] == "POST"
    assert request["query_string"] == "page=2"
    assert request["headers"]["User-Agent"] == "agented-tests/1.0"
    assert request["headers"]["Accept"] == "application/json"
    assert event["transaction"] == "debug.raise_error"
    assert response.json["event_id"] == event["event_id"]


@pytest.mark.verifies("OBS02-T3")
def test_error_event_carries_the_request_id_the_client_saw(
    sentry_capture: Capture, client: FlaskClient
) -> None:
    response = client.post("/admin/debug/raise", headers={"X-Request-ID": "req-123"})

    [event] = sentry_capture.errors
    assert response.headers["X-Request-ID"] == "req-123"
    assert event["request"]["headers"]["X-Request-Id"] == "req-123"


@pytest.mark.verifies("OBS02-T3")
@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/no/such/route", None, 404),
        ("GET", "/admin/executions/unknown-id", None, 404),
        ("POST", "/admin/executions", "{not json", 400),
        ("POST", "/admin/executions", '{"agent": "demo"}', 400),
        ("PUT", "/health/liveness", None, 405),
    ],
    ids=[
        "unknown-route",
        "unknown-execution",
        "bad-json",
        "missing-field",
        "bad-method",
    ],
)
def test_client_errors_send_no_event(
    sentry_capture: Capture,
    client: FlaskClient,
    method: str,
    path: str,
    body: str | None,
    status: int,
) -> None:
    response = client.open(
        path, method=method, data=body, content_type="application/json"
    )

    assert response.status_code == status
    assert response.is_json
    assert sentry_capture.errors == []
