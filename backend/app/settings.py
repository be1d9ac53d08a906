"""Typed settings read from the environment, in one place.

This module imports nothing but the standard library: Gunicorn's master validates the
environment with it before forking, and the gevent workers must be the first to import
anything heavier (they monkey-patch first).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DB_PATH = REPO_ROOT / "var" / "agented.db"
DEFAULT_BIND = "127.0.0.1:20000"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
GUNICORN_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SENTRY_SCHEMES = ("http", "https")
_LABEL = re.compile(r"^[\w.@+:/-]{1,200}$")


class ConfigError(ValueError):
    """A bad environment value; the message is the one line an operator sees."""


@dataclass(frozen=True)
class SentrySettings:
    """What error tracking needs; `dsn` is None when tracking is off."""

    dsn: str | None
    traces_sample_rate: float
    environment: str
    release: str

    @property
    def enabled(self) -> bool:
        return self.dsn is not None


@dataclass(frozen=True)
class Settings:
    """The service's configuration; `from_env` is the only place that reads it."""

    db_path: Path
    api_key: str | None
    agent_command: str | None
    debug_routes: bool
    execution_timeout: float
    cancel_grace: float
    heartbeat_interval: float
    max_body_bytes: int
    log_format: str
    log_level: str
    gunicorn_log_level: str
    bind: str
    sentry: SentrySettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            db_path=_db_path(env),
            api_key=_text(env, "AGENTED_API_KEY"),
            agent_command=_text(env, "AGENTED_AGENT_COMMAND"),
            debug_routes=_flag(env, "AGENTED_DEBUG_ROUTES"),
            execution_timeout=_seconds(env, "AGENTED_EXECUTION_TIMEOUT", 1800.0),
            cancel_grace=_seconds(env, "AGENTED_CANCEL_GRACE", 5.0),
            heartbeat_interval=_seconds(env, "AGENTED_SSE_HEARTBEAT", 15.0),
            max_body_bytes=_positive_int(env, "AGENTED_MAX_BODY_BYTES", 1 << 20),
            log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS, "text").lower(),
            log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS, "INFO").upper(),
            gunicorn_log_level=_choice(
                env, "GUNICORN_LOG_LEVEL", GUNICORN_LOG_LEVELS, "info"
            ).lower(),
            bind=_bind(env, _text(env, "AGENTED_API_KEY")),
            sentry=sentry_settings(env),
        )


def env_file(environ: Mapping[str, str] | None = None) -> Path:
    """The .env file to load: AGENTED_ENV_FILE, else .env at the repository root."""
    env = os.environ if environ is None else environ
    given = _text(env, "AGENTED_ENV_FILE")
    return Path(given).expanduser() if given else REPO_ROOT / ".env"


def sentry_settings(env: Mapping[str, str]) -> SentrySettings:
    """Read and check the SENTRY_* variables; the SDK itself reads none of them."""
    return SentrySettings(
        dsn=_dsn(env),
        traces_sample_rate=_rate(env, "SENTRY_TRACES_SAMPLE_RATE", 0.1),
        environment=_label(env, "SENTRY_ENVIRONMENT", "production"),
        release=_label(env, "SENTRY_RELEASE", f"agented@{package_version()}"),
    )


@functools.cache  # read once: it cannot change under a running process
def package_version() -> str:
    try:
        return metadata.version("agented")
    except metadata.PackageNotFoundError:
        return _version_from_pyproject()


def _version_from_pyproject() -> str:
    import tomllib

    with (REPO_ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def mask_dsn(dsn: str) -> str:
    """The DSN with everything that could be its key replaced, safe to print.

    Whatever stands before the last "@" may hold the key, however malformed the
    rest is; only the scheme (if any) and what follows the "@" are kept.
    """
    head, at, tail = dsn.rpartition("@")
    # a query string may carry a key too (?sentry_key=...)
    tail = tail.split("?", 1)[0] + ("?***" if "?" in tail else "")
    if not at:
        return tail
    scheme = head.split("://", 1)[0] + "://" if "://" in head else ""
    return f"{scheme}***@{tail}"


def dsn_host_and_project(dsn: str) -> tuple[str, str]:
    parts = urlsplit(dsn)
    port = f":{parts.port}" if _safe_port(parts) else ""
    return f"{parts.hostname}{port}", parts.path.rstrip("/").rsplit("/", 1)[-1]


def dsn_key(dsn: str | None) -> str | None:
    return urlsplit(dsn).username if dsn else None


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _quoted_empty(value: str) -> bool:
    return len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""


def _dsn(env: Mapping[str, str]) -> str | None:
    raw = _text(env, "SENTRY_DSN")
    if raw is None:
        return None
    problem = _dsn_problem(raw)
    if problem:
        shown = mask_dsn(raw)[:120]
        raise ConfigError(f"SENTRY_DSN={shown!r} is not a valid DSN: {problem}")
    return raw


def _dsn_problem(raw: str) -> str | None:
    if _quoted_empty(raw):
        return "it is wrapped in quotes; write the DSN bare, or leave it empty"
    try:
        parts = urlsplit(raw)
    except ValueError:  # its text would quote the netloc, key and all
        return "it is not a well-formed URL"
    if parts.scheme not in SENTRY_SCHEMES:
        return "the scheme must be http or https"
    if not parts.hostname:
        return "it names no host"
    try:
        port = parts.port  # urllib validates the port only when it is read
    except ValueError:
        port = 0
    if port == 0:
        return "its port is not a number between 1 and 65535"
    if not parts.username:
        return "it carries no public key (https://KEY@host/PROJECT_ID)"
    project = parts.path.rstrip("/").rsplit("/", 1)[-1]
    if not _digits(project):
        return "it does not end in a numeric project id"
    return None


def _digits(text: str) -> bool:
    """Only 0-9: str.isdigit() also takes "²" and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def _safe_port(parts) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        rate = float(raw)
    except ValueError:
        rate = math.nan
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"{name}={raw!r} must be a number between 0 and 1")
    return rate


def _label(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _text(env, name)
    if raw is None:
        return default
    if not _LABEL.match(raw):
        raise ConfigError(
            f"{name}={raw[:80]!r} must be 1 to 200 characters of letters, digits "
            "and . _ - @ + : / (no spaces)"
        )
    return raw


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (_text(env, name) or "0").lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be 1 or 0 (or true/false)")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _text(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 10**7:
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = _text(env, name)
    if raw is None:
        return default
    if not _digits(raw) or int(raw) == 0:
        raise ConfigError(f"{name}={raw!r} must be a positive whole number")
    return int(raw)


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str):
    raw = _text(env, name)
    if raw is None:
        return default
    if raw.lower() not in {a.lower() for a in allowed}:
        raise ConfigError(f"{name}={raw!r} must be one of: {', '.join(allowed)}")
    return raw


def _db_path(env: Mapping[str, str]) -> Path:
    raw = _text(env, "AGENTED_DB_PATH")
    if raw is not None and "\x00" in raw:
        raise ConfigError("AGENTED_DB_PATH contains a NUL byte")
    path = DEFAULT_DB_PATH if raw is None else Path(raw).expanduser()
    if not path.is_absolute():
        # from the repository root, the same for run.py, Gunicorn's master and its
        # worker (which runs in backend/), wherever the command was started
        path = REPO_ROOT / path
    try:
        problem = _db_path_problem(path)
    except OSError as exc:  # a name too long, a loop of links...
        problem = exc.strerror or str(exc)
    if problem:
        raise ConfigError(f"AGENTED_DB_PATH={str(path)[:200]!r}: {problem}")
    return path


def _db_path_problem(path: Path) -> str | None:
    if path.is_dir():
        return "is a directory, not a file"
    if path.exists() and not path.is_file():
        return "is not a regular file"
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"{existing} is not a folder"
    if existing is not None and not os.access(existing, os.W_OK):
        return f"{existing} is not writable"
    return None


def check_database(path: Path) -> None:
    """Create or check the schema once, so that a file that is not SQLite, or is
    another program's database, stops start-up with one line."""
    import sqlite3

    from app.db import Database  # standard library only, like this module

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=5.0)
        try:
            tables = {
                name
                for (name,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
        finally:
            conn.close()
        if tables and "executions" not in tables:
            raise ConfigError(
                f"AGENTED_DB_PATH={str(path)[:200]!r} holds another program's "
                f"tables ({', '.join(sorted(tables)[:5])}); point it at a new file"
            )
        Database(path).init_schema()
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(
            f"AGENTED_DB_PATH={str(path)[:200]!r} is not a usable Agented "
            f"database: {exc}"
        ) from None


def _bind(env: Mapping[str, str], api_key: str | None) -> str:
    raw = _text(env, "GUNICORN_BIND") or DEFAULT_BIND
    host = bind_host(raw)
    if host is None:
        raise ConfigError(
            f"GUNICORN_BIND={raw!r} must be HOST:PORT with a port from 0 to 65535"
        )
    if api_key is None and not is_loopback(host):
        raise ConfigError(
            f"GUNICORN_BIND={raw!r} is not a loopback address and AGENTED_API_KEY "
            "is not set; set a key before exposing /admin"
        )
    return raw


def bind_host(bind: str) -> str | None:
    """The host of HOST:PORT (IPv6 without brackets), or None if malformed."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not _digits(port) or int(port) > 65535:
        return None
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
