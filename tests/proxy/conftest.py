"""Fixtures that start real servers on loopback and always stop them."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.agents import QUICK_AGENT
from tests.support.bugsink import BugsinkServer, BugsinkUnavailable, Project
from tests.support.recording_sink import RecordingSink
from tests.support.servers import GunicornServer, reap_quitting

StartBackend = Callable[..., GunicornServer]


class BugsinkBoot:
    """A Bugsink starting in a thread of its own.

    Its boot (install check, two migrations, a login, a token) takes 10 to 30 s,
    nearly all of it in subprocesses; started with the first test of this folder,
    it overlaps the tests that run before the first one needing it.
    """

    def __init__(self, *, eager_digest: bool) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="agented-bugsink-"))
        self.server = BugsinkServer(self.workdir, eager_digest=eager_digest)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._start, name="bugsink-boot", daemon=True
        )
        self._thread.start()

    def _start(self) -> None:
        try:
            self.server.start()
        except BaseException as exc:  # handed to the test that waits for it
            self._error = exc

    def wait(self) -> BugsinkServer:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.server

    def close(self) -> None:
        self._thread.join(timeout=200)
        self.server.stop()
        if self._error is None:  # a failed boot keeps its folder: the log is there
            shutil.rmtree(self.workdir, ignore_errors=True)


_BOOTS: dict[str, BugsinkBoot] = {}
# fixture name -> does that server digest in the ingest request (True) or in
# Bugsink's background worker (False); None: as --bugsink-digest says
_BUGSINK_FIXTURES: dict[str, bool | None] = {"bugsink": None, "worker_bugsink": False}


def pytest_configure(config: pytest.Config) -> None:
    config.add_cleanup(reap_quitting)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here runs real servers: it must say so, since `-m sanity` skips
    this folder without looking (see the root conftest)."""
    here = Path(__file__).parent
    unmarked = [
        item.nodeid
        for item in items
        if item.path.is_relative_to(here) and item.get_closest_marker("proxy") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests under tests/proxy not marked proxy: {unmarked}")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """At the first test of this folder, start each Bugsink a selected test needs.

    Not earlier: the unit tests run first in a full run, and some of them patch
    process-wide what a boot thread relies on (freezegun the clocks,
    pytest-subprocess Popen).
    """
    session = item.session
    if getattr(session, "_agented_boots_started", False):
        return
    session._agented_boots_started = True  # type: ignore[attr-defined]
    wanted = {name for selected in session.items for name in selected.fixturenames}
    for name in _BUGSINK_FIXTURES:
        if name in wanted and name not in _BOOTS:
            boot = _BOOTS[name] = _new_boot(name, session.config)
            session.config.add_cleanup(boot.close)
    session.config.add_cleanup(_BOOTS.clear)


def started_bugsink(boot: BugsinkBoot) -> Iterator[BugsinkServer]:
    """A running Bugsink, stopped afterwards; a skip where it cannot run, except CI."""
    with ExitStack() as stack:
        stack.callback(boot.close)
        try:
            server = boot.wait()
        except BugsinkUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"Bugsink must run in CI but could not start: {exc}")
            pytest.skip(f"Bugsink could not be installed or started: {exc}")
        yield server


def _new_boot(name: str, config: pytest.Config) -> BugsinkBoot:
    eager = _BUGSINK_FIXTURES[name]
    if eager is None:
        eager = config.getoption("bugsink_digest") == "eager"
    return BugsinkBoot(eager_digest=eager)


def _boot_for(name: str, config: pytest.Config) -> BugsinkBoot:
    """The boot started with the first test here, or one started now."""
    return _BOOTS.get(name) or _new_boot(name, config)


@pytest.fixture(scope="session")
def bugsink(pytestconfig: pytest.Config) -> Iterator[BugsinkServer]:
    """One Bugsink for the session; each test gets a project of its own."""
    yield from started_bugsink(_boot_for("bugsink", pytestconfig))


@pytest.fixture(scope="module")
def worker_bugsink(pytestconfig: pytest.Config) -> Iterator[BugsinkServer]:
    """Digests in Bugsink's background worker process, as a production install does."""
    yield from started_bugsink(_boot_for("worker_bugsink", pytestconfig))


@pytest.fixture
def bugsink_project(bugsink: BugsinkServer, request: pytest.FixtureRequest) -> Project:
    return bugsink.create_project(f"{request.node.name[:60]}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def recording_sink() -> Iterator[RecordingSink]:
    with RecordingSink() as sink:
        yield sink


@pytest.fixture
def start_backend(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StartBackend]:
    """Start Gunicorn with extra environment; every server is told to quit at
    teardown and waited for at the end of the run."""
    servers: list[GunicornServer] = []
    request.node.agented_servers = servers

    def start(**env: str) -> GunicornServer:
        workdir = tmp_path / f"backend-{len(servers)}"
        base = {"AGENTED_DEBUG_ROUTES": "1", "AGENTED_AGENT_COMMAND": QUICK_AGENT}
        server = GunicornServer(workdir, {**base, **env})
        servers.append(server)
        server.start()
        return server

    with ExitStack() as stack:
        stack.callback(lambda: [s.quit_later() for s in servers])
        yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed:
        for index, server in enumerate(getattr(item, "agented_servers", [])):
            report.sections.append((f"gunicorn log {index}", server.log()))
    return report
