"""Bad requests get a JSON 4xx with the request id, and never an error event."""

from __future__ import annotations

import io
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.sentry_capture import Capture

pytestmark = pytest.mark.sanity

MAX_BODY_BYTES = 4096
REQUEST_ID = "bad-request-check-1"


@pytest.fixture
def app_config(app_config: dict[str, str]) -> dict[str, str]:
    return {**app_config, "AGENTED_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}


@pytest.fixture
def execution_id(app: Flask) -> str:
    """A finished execution with three stored lines, to stream from."""
    store = app.extensions["agented"].executions
    execution = store.create("demo", "hello", ["demo", "hello"], None)
    for seq in (1, 2, 3):
        store.append_line(execution["id"], seq, f"line {seq}")
    store.update(execution["id"], status="succeeded", exit_code=0)
    return execution["id"]


def assert_json_client_error(response: TestResponse, status: int) -> None:
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert set(body) >= {"error", "message", "request_id"}
    assert body["request_id"] == response.headers["X-Request-ID"] == REQUEST_ID
    assert "Traceback" not in response.get_data(as_text=True)


BODIES = {
    "malformed-json": b'{"agent": "demo", "prompt": ',
    "json-array": b'["demo", "hello"]',
    "json-string": b'"hello"',
    "json-null": b"null",
    "not-utf8-json": b'{"agent": "demo", "prompt": "\xff\xfe"}',
    "utf16-bom-garbage": b"\xfe\xff\x00{",
    "wrong-types": b'{"agent": 5, "prompt": ["hello"]}',
    "blank-fields": b'{"agent": "  ", "prompt": ""}',
    "unknown-agent": b'{"agent": "no-such-agent", "prompt": "hi"}',
    "deep-nesting": b'{"agent": "demo", "prompt": ' + b"[" * 1500 + b"]" * 1500 + b"}",
    "nul-in-prompt": b'{"agent": "demo", "prompt": "a\\u0000b"}',
    "lone-surrogate": b'{"agent": "demo", "prompt": "a\\ud800b"}',
}


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
def test_malformed_execution_body_is_a_json_400(
    client: FlaskClient, sentry_capture: Capture, body: bytes
) -> None:
    response = client.post(
        "/admin/executions",
        data=body,
        content_type="application/json",
        headers={"X-Request-ID": REQUEST_ID},
    )

    assert_json_client_error(response, 400)
    assert sentry_capture.errors == []


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize("path", ["/admin/executions", "/admin/sessions"])
def test_body_over_the_limit_is_a_json_413(
    client: FlaskClient, sentry_capture: Capture, path: str
) -> None:
    body = b'{"agent": "demo", "prompt": "' + b"x" * MAX_BODY_BYTES + b'"}'

    response = client.post(
        path,
        data=body,
        content_type="application/json",
        headers={"X-Request-ID": REQUEST_ID},
    )

    assert_json_client_error(response, 413)
    assert sentry_capture.errors == []


@pytest.mark.verifies("F-7")
def test_chunked_body_over_the_limit_is_a_json_413(
    client: FlaskClient, sentry_capture: Capture
) -> None:
    """A body of unknown length is cut at the limit by Werkzeug, not refused; the
    view tells it from a short body by its length and answers 413, not a
    misleading "not JSON" 400."""
    body = b'{"agent": "demo", "prompt": "' + b"x" * MAX_BODY_BYTES + b'"}'

    response = client.post(
        "/admin/executions",
        content_type="application/json",
        headers={"X-Request-ID": REQUEST_ID, "Transfer-Encoding": "chunked"},
        environ_overrides={
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
        },
    )

    assert_json_client_error(response, 413)
    assert sentry_capture.errors == []


@pytest.mark.verifies("F-7")
def test_chunked_body_under_the_limit_is_accepted(client: FlaskClient) -> None:
    body = b'{"agent": "demo", "prompt": "hello"}'

    response = client.post(
        "/admin/executions",
        content_type="application/json",
        headers={"X-Request-ID": REQUEST_ID, "Transfer-Encoding": "chunked"},
        environ_overrides={
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
        },
    )

    assert response.status_code == 201, response.get_json()


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize(
    "message", ["a\u0000b", "a\ud800b"], ids=["nul", "lone-surrogate"]
)
def test_unusable_session_message_is_a_json_400_naming_the_field(
    client: FlaskClient, sentry_capture: Capture, message: str
) -> None:
    session = client.post("/admin/sessions", json={"agent": "demo"}).get_json()

    response = client.post(
        f"/admin/sessions/{session['id']}/messages",
        data=json.dumps({"message": message}),
        content_type="application/json",
        headers={"X-Request-ID": REQUEST_ID},
    )

    assert_json_client_error(response, 400)
    assert "message" in response.get_json()["message"]
    assert sentry_capture.errors == []


class FramingError(Exception):
    """What a server's body reader raises on bad chunk framing (Gunicorn's own type
    derives from Exception, not OSError)."""


class BrokenInput(io.RawIOBase):
    def __init__(self, error: Exception) -> None:
        self.error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise self.error


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize(
    "error",
    [FramingError("invalid chunk size"), ConnectionResetError("client gone")],
    ids=["bad-framing", "client-reset"],
)
def test_body_the_server_cannot_read_is_a_json_400(
    client: FlaskClient, sentry_capture: Capture, error: Exception
) -> None:
    response = client.post(
        "/admin/executions",
        content_type="application/json",
        headers={"X-Request-ID": REQUEST_ID, "Transfer-Encoding": "chunked"},
        environ_overrides={
            "wsgi.input": BrokenInput(error),
            "wsgi.input_terminated": True,
        },
    )

    assert_json_client_error(response, 400)
    assert sentry_capture.errors == []


UNKNOWN = [
    ("GET", "/admin/executions/no-such-id"),
    ("DELETE", "/admin/executions/no-such-id"),
    ("GET", "/admin/executions/no-such-id/stream"),
    ("GET", "/admin/sessions/no-such-id"),
    ("POST", "/admin/sessions/no-such-id/stop"),
    ("GET", "/admin/sessions/no-such-id/output"),
    ("GET", "/admin/sessions/no-such-id/stream"),
    ("GET", "/admin/executions/" + "x" * 5000),
    ("GET", "/admin/executions/%00%01%02"),
    ("GET", "/admin/executions/..%2F..%2Fetc%2Fpasswd"),
    ("GET", "/admin/executions/' OR '1'='1"),
]


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize(
    ("method", "path"), UNKNOWN, ids=[f"{m} {p[:45]}" for m, p in UNKNOWN]
)
def test_unknown_ids_are_a_json_404(
    client: FlaskClient, sentry_capture: Capture, method: str, path: str
) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": REQUEST_ID})

    assert_json_client_error(response, 404)
    assert len(response.get_json()["message"]) < 200
    assert sentry_capture.errors == []


@pytest.mark.verifies("F-7")
def test_session_message_with_a_malformed_body_is_a_json_4xx(
    client: FlaskClient, sentry_capture: Capture
) -> None:
    session = client.post("/admin/sessions", json={"agent": "demo"}).get_json()

    response = client.post(
        f"/admin/sessions/{session['id']}/messages",
        data=b"{oops",
        content_type="application/json",
        headers={"X-Request-ID": REQUEST_ID},
    )

    assert_json_client_error(response, 400)
    assert sentry_capture.errors == []


BAD_LAST_EVENT_IDS = ["abc", "-1", "1.5", "1e3", "9" * 19, "0x10", "\xb2", "1 2"]


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize("last_event_id", BAD_LAST_EVENT_IDS)
def test_bad_last_event_id_is_a_json_400(
    client: FlaskClient, sentry_capture: Capture, execution_id: str, last_event_id: str
) -> None:
    response = client.get(
        f"/admin/executions/{execution_id}/stream",
        headers={"Last-Event-ID": last_event_id, "X-Request-ID": REQUEST_ID},
    )

    assert_json_client_error(response, 400)
    assert "Last-Event-ID" in response.get_json()["message"]
    assert sentry_capture.errors == []


@pytest.mark.verifies("F-7")
def test_good_last_event_id_still_resumes_after_the_bad_ones(
    client: FlaskClient, execution_id: str
) -> None:
    response = client.get(
        f"/admin/executions/{execution_id}/stream", headers={"Last-Event-ID": "2"}
    )

    text = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "line 3" in text
    assert "line 2" not in text


ODD_PATHS = {
    "percent-encoded-invalid-utf8": "/admin/executions/%ff%fe%fd",
    "invalid-utf8-outside-admin": "/%c3%28/%a0%a1",
    "overlong-utf8-slash": "/admin/%c0%afexecutions",
    "very-long-path": "/" + "a" * 8192,
    "very-long-admin-path": "/admin/" + "b/" * 4000,
    "many-slashes": "/" * 2000 + "health/liveness/x",
}


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize("path", ODD_PATHS.values(), ids=ODD_PATHS.keys())
def test_odd_paths_are_a_json_404(
    client: FlaskClient, sentry_capture: Capture, path: str
) -> None:
    response = client.get(path, headers={"X-Request-ID": REQUEST_ID})

    assert_json_client_error(response, 404)
    assert sentry_capture.errors == []


WRONG_METHODS = [
    ("PUT", "/health/liveness"),
    ("POST", "/health/readiness"),
    ("PATCH", "/admin/executions"),
    ("DELETE", "/admin/executions"),
    ("PUT", "/admin/executions/some-id"),
    ("POST", "/admin/executions/some-id/stream"),
    ("GET", "/admin/debug/raise"),
    ("DELETE", "/admin/sessions"),
]


@pytest.mark.verifies("F-7")
@pytest.mark.parametrize(
    ("method", "path"), WRONG_METHODS, ids=[f"{m} {p}" for m, p in WRONG_METHODS]
)
def test_wrong_method_is_a_json_405_with_allow(
    client: FlaskClient, sentry_capture: Capture, method: str, path: str
) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": REQUEST_ID})

    assert_json_client_error(response, 405)
    assert response.headers["Allow"]
    assert method not in response.headers["Allow"].split(", ")
    assert sentry_capture.errors == []


@pytest.mark.verifies("F-7")
def test_client_errors_never_send_an_event_but_a_failure_still_does(
    client: FlaskClient, sentry_capture: Capture
) -> None:
    client.post("/admin/executions", data=b"{", content_type="application/json")
    client.get("/admin/executions/%ff")
    client.put("/health/liveness")

    response = client.post("/admin/debug/raise", headers={"X-Request-ID": REQUEST_ID})

    assert response.status_code == 500
    assert response.get_json()["request_id"] == REQUEST_ID
    assert len(sentry_capture.errors) == 1
