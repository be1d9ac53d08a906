"""Starting error tracking: off without a DSN, configured from the environment."""

from __future__ import annotations

import logging

import pytest
import sentry_sdk
from flask.testing import FlaskClient

from app.error_tracking import init_error_tracking
from app.settings import package_version, sentry_settings
from tests.support.sentry_capture import TEST_DSN, Capture, start_capture

pytestmark = pytest.mark.sanity


@pytest.mark.verifies("OBS02-T1")
@pytest.mark.parametrize(
    "dsn", [None, "", "   ", "\t\n"], ids=["unset", "empty", "blanks", "whitespace"]
)
def test_missing_dsn_creates_no_client(
    dsn: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    env = {} if dsn is None else {"SENTRY_DSN": dsn}

    with caplog.at_level(logging.INFO):
        started = init_error_tracking(sentry_settings(env))

    assert started is False
    assert not sentry_sdk.get_client().is_active()
    off = [r for r in caplog.records if r.getMessage() == "error tracking off"]
    assert len(off) == 1


@pytest.mark.verifies("OBS02-T1")
def test_without_dsn_a_failing_request_still_gets_json_500_and_nothing_is_sent(
    client: FlaskClient,
) -> None:
    response = client.post("/admin/debug/raise")

    assert response.status_code == 500
    assert response.json["error"] == "internal_server_error"
    assert response.json["request_id"] == response.headers["X-Request-ID"]
    assert "event_id" not in response.json
    assert not sentry_sdk.get_client().is_active()


@pytest.mark.verifies("OBS02-T6")
def test_defaults_when_only_the_dsn_is_set() -> None:
    settings = sentry_settings({"SENTRY_DSN": TEST_DSN})

    assert settings.traces_sample_rate == 0.1
    assert settings.environment == "production"
    assert settings.release == f"agented@{package_version()}"
    assert package_version() == "0.1.0"


@pytest.mark.verifies("OBS02-T6")
def test_environment_values_reach_the_client() -> None:
    env = {
        "SENTRY_DSN": TEST_DSN,
        "SENTRY_TRACES_SAMPLE_RATE": "0.25",
        "SENTRY_ENVIRONMENT": "staging",
        "SENTRY_RELEASE": "agented@1.2.3+abc",
    }
    settings = sentry_settings(env)

    capture = start_capture(
        rate=settings.traces_sample_rate,
        environment=settings.environment,
        release=settings.release,
    )

    options = sentry_sdk.get_client().options
    assert capture.started
    assert options["dsn"] == TEST_DSN
    assert options["environment"] == "staging"
    assert options["release"] == "agented@1.2.3+abc"
    assert options["traces_sampler"]({"wsgi_environ": {"PATH_INFO": "/x"}}) == 0.25


@pytest.mark.verifies("OBS02-T5")
def test_client_never_sends_default_pii(sentry_capture: Capture) -> None:
    options = sentry_sdk.get_client().options

    assert options["send_default_pii"] is False
    assert not sentry_sdk.get_client().should_send_default_pii()


@pytest.mark.verifies("OBS02-T1", "OBS02-T5")
def test_startup_log_names_server_and_project_but_never_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        start_capture(environment="staging", release="agented@9")

    on = [r for r in caplog.records if r.getMessage() == "error tracking on"]
    assert len(on) == 1
    assert on[0].sentry_host == "127.0.0.1:9"
    assert on[0].sentry_project == "42"
    assert on[0].environment == "staging"
    assert on[0].release == "agented@9"
    assert on[0].traces_sample_rate == 1.0
    everything = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "testkey1234567890" not in everything
