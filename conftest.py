"""Root fixtures: every test gets a clean environment, SDK and logging set-up."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sentry_sdk
from flask import Flask
from flask.testing import FlaskClient

from tests.support.sentry_capture import Capture, start_capture

pytest_plugins = ["tests.support.truth_table"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bugsink-digest",
        choices=("eager", "worker"),
        default="eager",
        help="Bugsink digests events in the ingest request (eager, the default) "
        "or in its real background worker (worker)",
    )


PROXY_TESTS = Path(__file__).resolve().parent / "tests" / "proxy"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """`-m sanity` selects nothing under tests/proxy (every test there is marked
    proxy; tests/proxy/conftest.py refuses one that is not), so it is not imported:
    a second saved on the fast level."""
    if config.getoption("markexpr") == "sanity" and collection_path.is_relative_to(
        PROXY_TESTS
    ):
        return True
    return None


# read by the app or its Gunicorn config; a developer's shell must not leak in
APP_ENV_PREFIXES = ("AGENTED_", "SENTRY_", "LOG_", "GUNICORN_")


@pytest.fixture(autouse=True)
def clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for name in list(os.environ):
        if name.startswith(APP_ENV_PREFIXES):
            monkeypatch.delenv(name)
    # no developer's .env either: point the loader at a file that does not exist
    missing = tmp_path_factory.mktemp("env") / "absent.env"
    monkeypatch.setenv("AGENTED_ENV_FILE", str(missing))


@pytest.fixture(autouse=True)
def clean_sentry() -> Iterator[None]:
    """No client and no scope data survive a test."""
    yield
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close(timeout=0)
    sentry_sdk.get_global_scope().set_client(None)
    for scope in (sentry_sdk.get_isolation_scope(), sentry_sdk.get_current_scope()):
        scope.clear()


class _RecordErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def sdk_internal_errors() -> Iterator[None]:
    """Fail a test whose SDK swallowed an exception (in before_send, a processor...)."""
    handler = _RecordErrors()
    logger = logging.getLogger("sentry_sdk.errors")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    if handler.records:
        details = "; ".join(r.getMessage() for r in handler.records)
        pytest.fail(f"sentry_sdk swallowed errors: {details}")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def app_config(tmp_path: Path) -> dict[str, str]:
    return {
        "AGENTED_DB_PATH": str(tmp_path / "agented.db"),
        "AGENTED_DEBUG_ROUTES": "1",
    }


@pytest.fixture
def app(app_config: dict[str, str]) -> Iterator[Flask]:
    from app.factory import create_app, shutdown

    flask_app = create_app(app_config)
    flask_app.testing = False  # let errors reach the 500 handler, as in production
    yield flask_app
    shutdown(flask_app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sentry_capture() -> Capture:
    """The SDK started by the project's init code, recording instead of sending."""
    return start_capture()
