"""A bad environment stops Gunicorn's master before any worker starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO, GunicornServer

pytestmark = pytest.mark.proxy

KEY = "abcdef0123456789abcdef0123456789"


@pytest.mark.verifies("OBS02-T6")
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENTRY_TRACES_SAMPLE_RATE", "1.5"),
        ("SENTRY_DSN", f"https://{KEY}@sentry.example"),
        ("SENTRY_ENVIRONMENT", "two words"),
        ("GUNICORN_BIND", "0.0.0.0:0"),
    ],
)
def test_master_stops_with_one_line_and_never_boots_a_worker(
    tmp_path: Path, name: str, value: str
) -> None:
    env = GunicornServer(tmp_path, {name: value}).env

    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "backend/gunicorn.conf.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert output.strip().splitlines() == [
        line for line in output.strip().splitlines() if line.startswith("agented:")
    ]
    assert f"configuration error: {name}=" in output
    assert "Booting worker" not in output
    assert "Traceback" not in output
    assert KEY not in output
