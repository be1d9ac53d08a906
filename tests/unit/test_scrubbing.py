"""Secrets in a failing request never reach the wire; the useful context does."""

from __future__ import annotations

import string
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import sentry_sdk
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.error_tracking import FILTERED, is_sensitive_name
from tests.support.sentry_capture import Capture, start_capture

pytestmark = pytest.mark.sanity

API_KEY = "sk-agented-api-key-0123456789"

# printable, no separators that would change how a header or cookie parses
secret_text = st.text(
    alphabet=string.ascii_letters + string.digits + "-_.~+/=!$*@",
    min_size=8,
    max_size=40,
).map(lambda s: "S3cr" + s)
places = st.sampled_from(
    [
        "authorization",
        "cookie",
        "x-api-key",
        "x-auth-token",
        "x-custom-key",
        "query",
        "json",
        "form",
        "nested-json",
    ]
)


def _send(client: FlaskClient, place: str, secret: str) -> None:
    """A failing request carrying `secret` in one place."""
    headers: dict[str, str] = {}
    kwargs: dict = {}
    if place == "authorization":
        headers["Authorization"] = f"Bearer {secret}"
    elif place == "cookie":
        client.set_cookie("sessionid", secret)
    elif place in ("x-auth-token", "x-custom-key"):
        headers[place] = secret
    elif place == "x-api-key":
        headers["X-API-Key"] = secret
    elif place == "query":
        kwargs["query_string"] = {"token": secret, "page": "2"}
    elif place == "json":
        kwargs["json"] = {"password": secret, "prompt": "hello"}
    elif place == "nested-json":
        kwargs["json"] = {"options": [{"client_secret": secret}], "prompt": "hi"}
    elif place == "form":
        kwargs["data"] = {"api_token": secret, "prompt": "hello"}
    client.post("/admin/debug/raise", headers=headers, **kwargs)


@pytest.fixture
def keyed_client(app_config: dict[str, str]) -> Iterator[FlaskClient]:
    """A client of an app that requires API_KEY on /admin."""
    from app.factory import create_app, shutdown

    keyed = create_app({**app_config, "AGENTED_API_KEY": API_KEY})
    yield keyed.test_client()
    shutdown(keyed)


@pytest.mark.verifies("OBS02-T5")
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(secret=secret_text, place=places)
def test_generated_secret_never_reaches_the_wire(
    client: FlaskClient, sentry_capture: Capture, secret: str, place: str
) -> None:
    capture = sentry_capture
    capture.wire.clear()
    client.delete_cookie("sessionid")

    _send(client, place, secret)

    assert len(capture.errors) == 1, "the failing request must still be reported"
    wire = capture.wire_text()
    for spelling in {secret, quote(secret, safe=""), quote(secret)}:
        assert spelling not in wire, (place, spelling)


@pytest.mark.verifies("OBS02-T5")
def test_event_keeps_url_method_and_harmless_headers(
    keyed_client: FlaskClient,
) -> None:
    capture = start_capture(api_key=API_KEY)

    keyed_client.post(
        "/admin/debug/raise?page=2&token=abcdef123456",
        headers={
            "X-API-Key": API_KEY,
            "X-Auth-Token": "tok-123456789",
            "X-Forwarded-For": "203.0.113.9",
            "User-Agent": "tests/1",
        },
    )

    [event] = capture.errors
    request = event["request"]
    assert request["method"] == "POST"
    assert request["url"].endswith("/admin/debug/raise")
    assert request["headers"]["User-Agent"] == "tests/1"
    assert request["headers"]["X-Auth-Token"] == FILTERED
    assert "page=2" in request["query_string"]
    assert "abcdef123456" not in request["query_string"]
    assert "203.0.113.9" not in capture.wire_text()
    assert "REMOTE_ADDR" not in request.get("env", {})


@pytest.mark.verifies("OBS02-T5")
def test_api_key_and_dsn_key_never_appear_even_in_messages() -> None:
    capture = start_capture(api_key=API_KEY)

    sentry_sdk.capture_message(f"oops key={API_KEY} dsn=testkey1234567890")

    payload = "\n".join(str(e) for e in capture.errors)
    assert API_KEY not in payload
    assert "testkey1234567890" not in payload
    assert FILTERED in payload


@pytest.mark.verifies("OBS02-T5")
def test_exception_message_built_from_request_data_is_scrubbed(
    keyed_client: FlaskClient,
) -> None:
    capture = start_capture(api_key=API_KEY)
    secret = "S3cr-from-the-query-string"

    keyed_client.post(
        f"/admin/debug/raise?token={secret}", headers={"X-API-Key": API_KEY}
    )
    with keyed_client.application.test_request_context(f"/x?token={secret}"):
        try:
            raise ValueError(f"could not use {secret}")
        except ValueError:
            sentry_sdk.capture_exception()

    assert len(capture.errors) == 2
    assert secret not in capture.wire_text()


@pytest.mark.verifies("OBS02-T5")
@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("Authorization", True),
        ("X-Auth-Token", True),
        ("X-Upstream-Key", True),
        ("X-API-Key", True),
        ("api_key", True),
        ("client_secret", True),
        ("password", True),
        ("sig", True),
        ("signature", True),
        ("sessionid", True),
        ("Cookie", True),
        ("X-Passphrase", True),
        ("X-Pass", True),
        ("pass", True),
        ("pw", True),
        ("user_pw", True),
        ("X-AccessKey", True),
        ("accessKey", True),
        ("secret_key", True),
        ("code", True),
        ("User-Agent", False),
        ("exit_code", False),
        ("compass", False),
        ("passenger", False),
        ("Accept", False),
        ("Content-Type", False),
        ("X-Request-ID", False),
        ("page", False),
        ("monkey", False),
        ("prompt", False),
    ],
)
def test_credential_names_are_recognised(name: str, sensitive: bool) -> None:
    assert is_sensitive_name(name) is sensitive


@pytest.mark.verifies("OBS02-T5")
def test_transactions_are_scrubbed_too(keyed_client: FlaskClient) -> None:
    capture = start_capture(rate=1.0, api_key=API_KEY)
    secret = "S3cr-in-a-transaction-query"

    keyed_client.get(
        f"/admin/executions?token={secret}",
        headers={"X-API-Key": API_KEY, "X-Session-Token": secret},
    )

    assert len(capture.transactions) == 1
    assert secret not in capture.wire_text()
    assert API_KEY not in capture.wire_text()
