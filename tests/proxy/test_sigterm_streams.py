"""SIGTERM with an SSE stream open: the stream ends, the worker stops and cleans up."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.proxy.conftest import StartBackend
from tests.support.servers import GRACEFUL_TIMEOUT, REPO, GunicornServer
from tests.support.sse import SseParser

pytestmark = pytest.mark.proxy

DEADLINE = 30.0
# an idle worker stops in ~1.3 s (it checks its flag once a second); the limit is
# graceful_timeout, past which the worker is killed before its clean-up runs
STOP_BUDGET = 5.0
# says its pid, then sleeps for as many seconds as the prompt says
SLEEPING_AGENT = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
    "import os, sys, time\n"
    "print(os.getpid(), flush=True)\n"
    "time.sleep(float(sys.argv[1]))\n"
)


class StreamReader:
    """Follows one SSE stream in a thread and keeps every event it sees."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.first_line = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, name="sse-reader")
        self._thread.start()

    def _read(self) -> None:
        try:
            with requests.get(self.url, stream=True, timeout=(5, DEADLINE)) as resp:
                resp.raise_for_status()
                self._parse(resp)
        except BaseException as exc:  # judged by the test after join()
            self.error = exc
        finally:
            self.first_line.set()

    def _parse(self, response: requests.Response) -> None:
        parser = SseParser()
        for line in response.iter_lines(decode_unicode=True):
            event = parser.line(line)
            if event is None:
                continue
            self.events.append(event)
            if event.get("event") == "log":
                self.first_line.set()

    def agent_pid(self) -> int:
        assert self.first_line.wait(DEADLINE), "the agent printed nothing in time"
        logs = [e for e in self.events if e.get("event") == "log"]
        assert logs, f"no log event before the stream ended: {self.error!r}"
        return int(logs[0]["data"]["line"])

    def join(self) -> list[dict[str, Any]]:
        """The events seen; a read error stays in `error` for the test to judge."""
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), "the stream never ended"
        return self.events


def is_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie waiting for a reaper counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return stat.read_text().rpartition(")")[2].split()[0] != "Z"
    return True


@pytest.fixture
def agent_pids() -> Iterator[list[int]]:
    """Agents a test saw; any still running at teardown are killed with their group."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if is_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def execution_status(server: GunicornServer, execution_id: str) -> str:
    with sqlite3.connect(server.workdir / "agented.db") as db:
        row = db.execute(
            "SELECT status FROM executions WHERE id = ?", (execution_id,)
        ).fetchone()
    return row[0]


def start_execution(server: GunicornServer, prompt: str) -> str:
    # Connection: close, as an idle keep-alive connection would hold the stopping
    # worker up to `keepalive` seconds too; this test measures the stream alone
    created = requests.post(
        f"{server.url}/admin/executions",
        json={"agent": "command", "prompt": prompt},
        headers={"Connection": "close"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


@pytest.mark.verifies("F-5")
def test_sigterm_ends_open_stream_and_stops_the_worker_promptly(
    start_backend: StartBackend,
    agent_pids: list[int],
    record_figure: Callable[[str, str], None],
) -> None:
    """SSE streams never end on their own, and Gunicorn's gevent worker waits for
    every open connection up to graceful_timeout before it is killed without its
    atexit clean-up; so on SIGTERM the worker must end the streams itself."""
    server = start_backend(AGENTED_AGENT_COMMAND=SLEEPING_AGENT)
    execution_id = start_execution(server, "300")
    stream = StreamReader(f"{server.url}/admin/executions/{execution_id}/stream")
    agent_pid = stream.agent_pid()
    agent_pids.append(agent_pid)

    exit_code, seconds = server.timed_stop(timeout=GRACEFUL_TIMEOUT + DEADLINE)
    events = stream.join()

    record_figure("F-5", f"SIGTERM with an open stream: stopped in {seconds:.1f} s")
    log = server.log()
    assert exit_code == 0
    assert seconds < STOP_BUDGET, f"stopped in {seconds:.1f} s"
    assert "Worker graceful timeout" not in log
    assert stream.error is None, f"the stream broke: {stream.error!r}"
    assert events[-1]["event"] == "shutdown", events
    assert events[-1]["data"] == {"reason": "server shutting down", "retry": True}
    assert int(events[-1]["retry"]) > 0
    assert not is_alive(agent_pid), f"agent {agent_pid} outlived the server"
    assert execution_status(server, execution_id) == "interrupted"
    assert "executions interrupted at shutdown" in log
    assert "Traceback" not in log


@pytest.mark.verifies("F-5")
def test_sigterm_to_the_dev_server_cleans_up_as_ctrl_c_does(
    tmp_path: Path, agent_pids: list[int]
) -> None:
    """Python's default SIGTERM ends the process without atexit: agents would keep
    running and their executions stay "running"."""
    with socket.socket() as probe:  # a free loopback port for the dev server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **GunicornServer(tmp_path).env,
        "AGENTED_AGENT_COMMAND": SLEEPING_AGENT,
    }
    log_path = tmp_path / "dev-server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "backend/run.py", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/health/liveness", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        created = requests.post(
            f"{url}/admin/executions",
            json={"agent": "command", "prompt": "300"},
            timeout=10,
        )
        execution_id = created.json()["id"]
        while time.monotonic() < deadline:
            execution = requests.get(
                f"{url}/admin/executions/{execution_id}", timeout=10
            )
            output = execution.json()["output"]
            if output:
                break
            time.sleep(0.05)
        agent_pid = int(output[0])
        agent_pids.append(agent_pid)

        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    log = log_path.read_text(errors="replace")
    assert exit_code == 0, log
    assert not is_alive(agent_pid), f"agent {agent_pid} outlived the dev server"
    with sqlite3.connect(env["AGENTED_DB_PATH"]) as db:
        [status] = db.execute(
            "SELECT status FROM executions WHERE id = ?", (execution_id,)
        ).fetchone()
    assert status == "interrupted"
    assert "Traceback" not in log
