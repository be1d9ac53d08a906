"""backend/run.py, run for real in a fresh interpreter: the order of start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sanity

REPO = Path(__file__).resolve().parents[2]
DSN = "http://orderkey0123456789@127.0.0.1:9/7"

# Wraps each start-up step to record when it ran and what the process looked like
# then, imports run.py as Gunicorn would, and prints what it saw as JSON.
PROBE = """
import json, logging, os, sys
import dotenv, sentry_sdk
import app.logs, app.error_tracking, app.factory

calls = []

def wrap(module, name, label, probe=lambda: None):
    real = getattr(module, name)
    def wrapper(*args, **kwargs):
        calls.append({"step": label, "seen": probe()})
        return real(*args, **kwargs)
    setattr(module, name, wrapper)

wrap(dotenv, "load_dotenv", "dotenv")
wrap(app.logs, "configure_logging", "logging",
     lambda: os.environ.get("LOG_FORMAT"))
wrap(app.error_tracking, "init_error_tracking", "sentry",
     lambda: len(logging.getLogger().handlers))
wrap(sentry_sdk, "init", "sentry_sdk.init")
wrap(app.factory, "create_app", "create_app",
     lambda: sentry_sdk.get_client().is_active())

import run
client = sentry_sdk.get_client()
print(json.dumps({
    "calls": calls,
    "active": client.is_active(),
    "dsn": client.options.get("dsn") if client.is_active() else None,
    "environment": client.options.get("environment") if client.is_active() else None,
    "has_application": callable(getattr(run, "application", None)),
}))
"""


def _run_probe(env_file: Path, extra_env: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update(PYTHONPATH=str(REPO / "backend"), AGENTED_ENV_FILE=str(env_file))
    env.update(extra_env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO / "backend",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        f"SENTRY_DSN={DSN}\nLOG_FORMAT=json\nSENTRY_ENVIRONMENT=from-dotenv\n"
        f"AGENTED_DB_PATH={tmp_path / 'agented.db'}\n"
    )
    return path


@pytest.mark.verifies("OBS02-T2")
def test_dotenv_then_logging_then_sentry_then_app(env_file: Path) -> None:
    seen = _run_probe(env_file, {})

    steps = [c["step"] for c in seen["calls"]]
    assert steps == ["dotenv", "logging", "sentry", "sentry_sdk.init", "create_app"]
    by_step = {c["step"]: c["seen"] for c in seen["calls"]}
    assert by_step["logging"] == "json", "logging is configured from .env values"
    assert by_step["sentry"] >= 1, "logging has a handler before Sentry starts"
    assert by_step["create_app"] is True, "the client exists before the app"
    assert seen["active"]
    assert seen["dsn"] == DSN
    assert seen["has_application"]


@pytest.mark.verifies("OBS02-T2")
def test_real_environment_wins_over_dotenv(env_file: Path) -> None:
    seen = _run_probe(env_file, {"SENTRY_ENVIRONMENT": "from-shell"})

    assert seen["environment"] == "from-shell"


@pytest.mark.verifies("OBS02-T1")
def test_blank_dsn_in_dotenv_starts_the_app_without_a_client(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"SENTRY_DSN=   \nAGENTED_DB_PATH={tmp_path / 'a.db'}\n")

    seen = _run_probe(env_file, {})

    assert [c["step"] for c in seen["calls"]] == [
        "dotenv",
        "logging",
        "sentry",
        "create_app",
    ]
    assert seen["active"] is False
    assert seen["has_application"]
