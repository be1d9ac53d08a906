"""Fixtures that start real servers on loopback and always stop them."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.bugsink import BugsinkServer, BugsinkUnavailable, Project
from tests.support.recording_sink import RecordingSink
from tests.support.servers import GunicornServer

# a quick agent for executions: three lines, no sleeping
QUICK_AGENT = (
    f'{sys.executable} -c "import sys; [print(i, sys.argv[1]) for i in range(3)]"'
)

StartBackend = Callable[..., GunicornServer]


def started_bugsink(workdir: Path, *, eager_digest: bool) -> Iterator[BugsinkServer]:
    """A running Bugsink, stopped afterwards; a skip where it cannot run, except CI."""
    server = BugsinkServer(workdir, eager_digest=eager_digest)
    with ExitStack() as stack:
        stack.callback(server.stop)
        try:
            server.start()
        except BugsinkUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"Bugsink must run in CI but could not start: {exc}")
            pytest.skip(f"Bugsink could not be installed or started: {exc}")
        yield server


@pytest.fixture(scope="session")
def bugsink(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[BugsinkServer]:
    """One Bugsink for the session; each test gets a project of its own."""
    eager = pytestconfig.getoption("bugsink_digest") == "eager"
    yield from started_bugsink(tmp_path_factory.mktemp("bugsink"), eager_digest=eager)


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
    """Start Gunicorn with extra environment; every server stops at teardown."""
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
        stack.callback(lambda: [s.stop() for s in servers])
        yield start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed:
        for index, server in enumerate(getattr(item, "agented_servers", [])):
            report.sections.append((f"gunicorn log {index}", server.log()))
    return report
