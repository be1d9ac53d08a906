""".env.example documents every environment variable the code reads."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from app.settings import Settings, env_file

pytestmark = pytest.mark.sanity

REPO = Path(__file__).resolve().parents[2]
# os.environ.get("X"), os.environ["X"], os.getenv("X"), and the settings helpers
# _text(env, "X") style; a WSGI environ's keys are not environment variables
READ_PATTERN = re.compile(
    r"""(?:os\.environ\.get\(|os\.environ\[|os\.getenv\(|\b_\w+\(env,)"""
    r"""\s*["']([A-Z][A-Z0-9_]{2,})["']"""
)


class RecordingEnv(Mapping[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def get(self, key: str, default=None):  # type: ignore[override]
        self.asked.add(key)
        return default

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return False

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _documented() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.MULTILINE))


def _read_in_source() -> set[str]:
    names = set()
    for path in (REPO / "backend").rglob("*.py"):
        names |= set(READ_PATTERN.findall(path.read_text()))
    return names


@pytest.mark.verifies("OBS02-T8")
def test_every_variable_settings_read_is_documented() -> None:
    env = RecordingEnv()
    Settings.from_env(env)
    env_file(env)

    assert env.asked, "the recording environment saw no lookups"
    assert env.asked - _documented() == set()


@pytest.mark.verifies("OBS02-T8")
def test_every_variable_named_in_the_source_is_documented() -> None:
    found = _read_in_source()

    assert {"SENTRY_DSN", "GUNICORN_LOG_LEVEL", "AGENTED_ENV_FILE"} <= found
    assert found - _documented() == set()


@pytest.mark.verifies("OBS02-T8")
def test_sentry_section_documents_type_default_and_meaning() -> None:
    text = (REPO / ".env.example").read_text()
    section = text.split("# --- Error Tracking (Sentry) ---", 1)[1]

    assert "# --- Logging ---" in text
    for name, default in [
        ("SENTRY_DSN", "Unset"),
        ("SENTRY_TRACES_SAMPLE_RATE", "Default 0.1"),
        ("SENTRY_ENVIRONMENT", "production"),
        ("SENTRY_RELEASE", "agented@"),
    ]:
        block = section.split(f"# {name}:", 1)[1].split("\n#", 3)
        assert default in "".join(block[:3]), name
    assert "Client Keys (DSN)" in section
