"""Bad configuration stops start-up with one clear line; good values pass."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import ConfigError, Settings, check_database, mask_dsn

pytestmark = pytest.mark.sanity

REPO = Path(__file__).resolve().parents[2]
KEY = "abcdef0123456789abcdef0123456789"

BAD_VALUES = [
    ("SENTRY_TRACES_SAMPLE_RATE", "abc", "must be a number between 0 and 1"),
    ("SENTRY_TRACES_SAMPLE_RATE", "-0.1", "must be a number between 0 and 1"),
    ("SENTRY_TRACES_SAMPLE_RATE", "1.5", "must be a number between 0 and 1"),
    ("SENTRY_TRACES_SAMPLE_RATE", "nan", "must be a number between 0 and 1"),
    ("SENTRY_TRACES_SAMPLE_RATE", "inf", "must be a number between 0 and 1"),
    ("SENTRY_DSN", "out://1", "the scheme must be http or https"),
    ("SENTRY_DSN", '""', "wrapped in quotes"),
    ("SENTRY_DSN", "''", "wrapped in quotes"),
    ("SENTRY_DSN", f"https://{KEY}@sentry.example", "numeric project id"),
    ("SENTRY_DSN", f"https://{KEY}@sentry.example/", "numeric project id"),
    ("SENTRY_DSN", "https://sentry.example/42", "carries no public key"),
    ("SENTRY_DSN", f"https://{KEY}@/42", "names no host"),
    ("SENTRY_DSN", f"https://{KEY}@host:99999/42", "port"),
    ("SENTRY_DSN", f"https://{KEY}@127.0.0.1:0/42", "between 1 and 65535"),
    ("SENTRY_DSN", "not a dsn", "the scheme must be http or https"),
    ("SENTRY_DSN", f'"https://{KEY}@sentry.example/1"', "wrapped in quotes"),
    ("SENTRY_DSN", f"http:/{KEY}@sentry.example/1", "names no host"),
    ("SENTRY_DSN", f"{KEY}@sentry.example/1", "the scheme must be http or https"),
    ("SENTRY_DSN", f"https://{KEY}@sentry.example/\u00b2", "numeric project id"),
    # urllib refuses these outright, quoting the netloc (key and all) as it does
    ("SENTRY_DSN", f"https://{KEY}@host\uff0fx/1", "not a well-formed URL"),
    ("SENTRY_DSN", f"https://{KEY}@[::1/1", "not a well-formed URL"),
    ("SENTRY_DSN", f"https://sentry.example/42?sentry_key={KEY}", "no public key"),
    ("SENTRY_ENVIRONMENT", "prod env", "no spaces"),
    ("SENTRY_ENVIRONMENT", "x" * 201, "1 to 200 characters"),
    ("SENTRY_RELEASE", "1.0\nINJECTED", "no spaces"),
    ("LOG_FORMAT", "xml", "must be one of: json, text"),
    ("LOG_LEVEL", "LOUD", "must be one of"),
    ("GUNICORN_BIND", "nonsense", "must be HOST:PORT"),
    ("GUNICORN_BIND", "127.0.0.1:70000", "must be HOST:PORT"),
    ("GUNICORN_BIND", "0.0.0.0:8000", "not a loopback address"),
    ("GUNICORN_BIND", "127.0.0.1:\u00b2", "must be HOST:PORT"),
    ("GUNICORN_LOG_LEVEL", "bogus", "must be one of: debug, info"),
    ("AGENTED_DB_PATH", "/", "is a directory"),
    ("AGENTED_DB_PATH", "/etc/hostname/agented.db", "is not a folder"),
    ("AGENTED_DB_PATH", "/tmp/" + "x" * 300, "too long"),
    ("AGENTED_DB_PATH", "/dev/null", "is not a regular file"),
    ("AGENTED_EXECUTION_TIMEOUT", "-5", "positive number of seconds"),
    ("AGENTED_SSE_HEARTBEAT", "soon", "positive number of seconds"),
    ("AGENTED_MAX_BODY_BYTES", "1e6", "positive whole number"),
    ("AGENTED_MAX_BODY_BYTES", "\u00b2", "positive whole number"),
    ("AGENTED_DEBUG_ROUTES", "maybe", "must be 1 or 0"),
]
IDS = [f"{name}={value[:20]!r}" for name, value, _ in BAD_VALUES]


@pytest.mark.verifies("OBS02-T6")
@pytest.mark.parametrize(("name", "value", "message"), BAD_VALUES, ids=IDS)
def test_bad_value_is_refused_with_a_message_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})

    text = str(raised.value)
    assert text.startswith(f"{name}=")
    assert message in text
    assert "\n" not in text
    assert KEY not in text


@pytest.mark.verifies("OBS02-T6")
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENTRY_TRACES_SAMPLE_RATE", "0"),
        ("SENTRY_TRACES_SAMPLE_RATE", "1"),
        ("SENTRY_TRACES_SAMPLE_RATE", " 0.5 "),
        ("SENTRY_DSN", f"https://{KEY}@o1.ingest.sentry.example/4505"),
        ("SENTRY_DSN", f"http://{KEY}@127.0.0.1:8000/1"),
        ("SENTRY_DSN", f"http://{KEY}:legacysecret@[::1]:9000/sub/path/7"),
        ("SENTRY_ENVIRONMENT", "staging-eu"),
        ("SENTRY_RELEASE", "agented@1.2.3+build.4"),
        ("GUNICORN_BIND", "[::1]:0"),
        ("GUNICORN_BIND", "localhost:8080"),
        ("LOG_FORMAT", "JSON"),
        ("LOG_LEVEL", "debug"),
    ],
)
def test_good_values_are_accepted(name: str, value: str) -> None:
    Settings.from_env({name: value})


@pytest.mark.verifies("OBS02-T6")
def test_public_bind_is_allowed_once_an_api_key_is_set() -> None:
    settings = Settings.from_env(
        {"GUNICORN_BIND": "0.0.0.0:8000", "AGENTED_API_KEY": "k"}
    )

    assert settings.bind == "0.0.0.0:8000"


@pytest.mark.verifies("OBS02-T6")
def test_masked_dsn_hides_key_and_secret() -> None:
    masked = mask_dsn(f"https://{KEY}:oldsecret@sentry.example:8443/42")

    assert masked == "https://***@sentry.example:8443/42"


@pytest.mark.verifies("OBS02-T6")
def test_relative_database_path_is_taken_from_the_repository_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # not where the path should resolve

    settings = Settings.from_env({"AGENTED_DB_PATH": "var/relative-check.db"})

    assert settings.db_path == REPO / "var" / "relative-check.db"


@pytest.mark.verifies("OBS02-T6")
def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()

    with pytest.raises(ConfigError, match="holds another program's tables"):
        check_database(path)

    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert tables == {"invoices"}


@pytest.mark.verifies("OBS02-T6")
def test_database_with_an_older_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE executions (id TEXT PRIMARY KEY)")
    conn.close()

    with pytest.raises(ConfigError) as raised:
        check_database(path)

    assert "is not a usable Agented database" in str(raised.value)
    assert "\n" not in str(raised.value)


def _run_server_module(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "backend" / "run.py"), "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.verifies("OBS02-T6")
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENTRY_TRACES_SAMPLE_RATE", "abc"),
        ("SENTRY_DSN", f"out://{KEY}@host/1"),
        ("SENTRY_DSN", f"https://{KEY}@host\uff0fx/1"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_dev_server_stops_with_one_line_and_no_traceback(
    name: str, value: str, tmp_path: Path, base_env: dict[str, str]
) -> None:
    result = _run_server_module({**base_env, name: value})

    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"agented: configuration error: {name}=")
    assert "Traceback" not in result.stderr
    assert KEY not in result.stderr + result.stdout


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment for a child process: no developer settings leak in."""
    import os

    keep = ("PATH", "HOME", "LANG", "SYSTEMROOT", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["AGENTED_DB_PATH"] = str(tmp_path / "agented.db")
    env["AGENTED_ENV_FILE"] = str(tmp_path / "absent.env")
    return env
