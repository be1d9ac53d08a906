"""ExecutionRunner: starting, recording, cancelling, timing out and reaping agents."""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pytest_subprocess import FakeProcess
from pytest_subprocess.process_dispatcher import ProcessDispatcher

from app.broker import Broker
from app.db import Database
from app.runner import PUMP_BATCH_LINES, ExecutionRunner, LineSplitter
from app.store import TERMINAL_STATES, ExecutionStore
from tests.support.agents import join_runner_threads

pytestmark = pytest.mark.sanity

DEADLINE = 5.0
FAKE_AGENT = "fake-agent"


def wait_for_status(
    store: ExecutionStore, execution_id: str, statuses: tuple[str, ...]
) -> dict[str, Any]:
    """Poll the store until the execution reaches one of `statuses`."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        row = store.get(execution_id)
        if row is not None and row["status"] in statuses:
            return row
        time.sleep(0.01)
    pytest.fail(f"{execution_id} never reached {statuses}: {store.get(execution_id)}")


def wait_for_lines(store: ExecutionStore, execution_id: str, count: int) -> list[str]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        lines = [text for _, text in store.lines_after(execution_id)]
        if len(lines) >= count:
            return lines
        time.sleep(0.01)
    pytest.fail(f"{execution_id} printed fewer than {count} lines in time")


def is_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class KillpgRecorder:
    """Records os.killpg calls; passes them on only when a test asks for it."""

    def __init__(self, real_killpg: Any) -> None:
        self.calls: list[tuple[int, int]] = []
        self.passthrough = False
        self._real_killpg = real_killpg

    def __call__(self, pgid: int, sig: int) -> None:
        self.calls.append((pgid, sig))
        if self.passthrough and pgid > 0:
            self._real_killpg(pgid, sig)


@pytest.fixture(autouse=True)
def killpg(monkeypatch: pytest.MonkeyPatch) -> KillpgRecorder:
    """No test here can signal a process group it did not start, pytest's included."""
    recorder = KillpgRecorder(os.killpg)
    monkeypatch.setattr(os, "killpg", recorder)
    return recorder


@pytest.fixture
def real_killpg(killpg: KillpgRecorder) -> KillpgRecorder:
    """For tests whose agents are real processes in their own groups."""
    killpg.passthrough = True
    return killpg


@pytest.fixture
def fp(fp: FakeProcess, monkeypatch: pytest.MonkeyPatch) -> FakeProcess:
    """pytest-subprocess with fake processes that have no real pid (pid 0).

    pytest-subprocess 1.6 numbers fake processes 1, 2, 3... from a counter shared
    by the session (ProcessDispatcher._pid, incremented before each process is
    made); os.killpg on those numbers could reach real process groups. Starting the
    counter at -1 makes the one fake process of each test pid 0.
    """
    monkeypatch.setattr(ProcessDispatcher, "_pid", -1)
    return fp


@pytest.fixture
def store(tmp_path: Path) -> ExecutionStore:
    db = Database(tmp_path / "agented.db")
    db.init_schema()
    return ExecutionStore(db)


def make_runner(
    store: ExecutionStore,
    agent_command: str = FAKE_AGENT,
    *,
    timeout: float = 60.0,
    cancel_grace: float = 2.0,
) -> ExecutionRunner:
    return ExecutionRunner(
        store,
        Broker(),
        agent_command=agent_command,
        timeout=timeout,
        cancel_grace=cancel_grace,
    )


def python_agent(code: str) -> str:
    """An AGENTED_AGENT_COMMAND running `code` here; the prompt is sys.argv[1]."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


class BlockingAgent:
    """A fake agent that runs until it is signalled (then exits with -signal).

    With `exits_on_signal=False` it only records signals and runs until `release()`.
    """

    def __init__(
        self, fp: FakeProcess, argv: list[str], *, exits_on_signal: bool = True
    ) -> None:
        self.signals: list[int] = []
        self.exits_on_signal = exits_on_signal
        self._released = threading.Event()
        fp.register(argv, callback=self._run, signal_callback=self._on_signal)

    def release(self) -> None:
        self._released.set()

    def _run(self, process: Any) -> None:
        self._released.wait(DEADLINE)

    def _on_signal(self, process: Any, sig: int) -> None:
        self.signals.append(sig)
        if self.exits_on_signal:
            process.returncode = -sig
            self.release()


def test_output_lines_are_stored_in_order_with_seq_from_one(
    fp: FakeProcess, store: ExecutionStore
) -> None:
    fp.register([FAKE_AGENT, "go"], stdout=["first", "", "third  ", "last"])
    runner = make_runner(store)

    started = runner.start("command", "go")
    row = wait_for_status(store, started["id"], TERMINAL_STATES)

    assert store.lines_after(started["id"]) == [
        (1, "first"),
        (2, ""),
        (3, "third  "),
        (4, "last"),
    ]
    assert row["status"] == "succeeded"
    assert row["exit_code"] == 0
    assert row["started_at"] is not None
    assert row["finished_at"] is not None


def test_flood_of_output_is_stored_in_few_transactions_in_order(
    fp: FakeProcess, store: ExecutionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line per commit froze a gevent worker for 40 s over 10,000 lines."""
    lines = [f"line {n}" for n in range(1, 2001)]
    fp.register([FAKE_AGENT, "go"], stdout=lines)
    batches: list[int] = []
    append_lines = store.append_lines
    monkeypatch.setattr(
        store,
        "append_lines",
        lambda eid, first, texts: (
            batches.append(len(texts)),
            append_lines(eid, first, texts),
        ),
    )
    runner = make_runner(store)

    started = runner.start("command", "go")
    wait_for_status(store, started["id"], TERMINAL_STATES)

    assert store.lines_after(started["id"]) == list(enumerate(lines, start=1))
    assert sum(batches) == len(lines)
    assert len(batches) <= len(lines) // PUMP_BATCH_LINES + 1
    assert max(batches) <= PUMP_BATCH_LINES


def test_a_line_is_stored_at_once_when_the_agent_then_goes_quiet(
    store: ExecutionStore, real_killpg: KillpgRecorder, tmp_path: Path
) -> None:
    """Batching never holds a line back waiting for the next one."""
    go_on = tmp_path / "go-on"
    code = (
        "import os, sys, time\n"
        "print('first', flush=True)\n"
        # gives up after 30 s, so a failing test leaves no agent behind
        "give_up = time.monotonic() + 30\n"
        f"while not os.path.exists({str(go_on)!r}) and time.monotonic() < give_up:\n"
        "    time.sleep(0.01)\n"
        "print('second', flush=True)\n"
    )
    runner = make_runner(store, python_agent(code))
    execution_id = runner.start("command", "go")["id"]

    assert wait_for_lines(store, execution_id, 1) == ["first"]
    go_on.touch()
    wait_for_status(store, execution_id, TERMINAL_STATES)
    assert [text for _, text in store.lines_after(execution_id)] == ["first", "second"]


def test_complete_lines_before_an_unfinished_one_are_stored_at_once(
    store: ExecutionStore, real_killpg: KillpgRecorder, tmp_path: Path
) -> None:
    """1,024 lines and the start of the next in one write, then silence: the lines
    must not wait for the rest of the unfinished one (a spinner before a long call).
    16 KiB: more than one read's worth, so part of it is still in the pipe."""
    go_on = tmp_path / "go-on"
    code = (
        "import os, sys, time\n"
        "sys.stdout.buffer.write("
        "b''.join(b'%015d\\n' % i for i in range(1024)) + b'thinking...')\n"
        "sys.stdout.flush()\n"
        # gives up after 30 s, so a failing test leaves no agent behind
        "give_up = time.monotonic() + 30\n"
        f"while not os.path.exists({str(go_on)!r}) and time.monotonic() < give_up:\n"
        "    time.sleep(0.01)\n"
        "print(' done', flush=True)\n"
    )
    runner = make_runner(store, python_agent(code))
    execution_id = runner.start("command", "go")["id"]

    expected = [f"{i:015d}" for i in range(1024)]
    assert wait_for_lines(store, execution_id, 1024) == expected
    go_on.touch()
    wait_for_status(store, execution_id, TERMINAL_STATES)
    assert store.lines_after(execution_id, 1024) == [(1025, "thinking... done")]


def _split_whole(data: bytes) -> list[str]:
    """The oracle: the whole output split at once, as the agent meant it."""
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return [p.removesuffix(b"\r").decode("utf-8", errors="replace") for p in pieces]


@given(
    data=st.lists(
        st.sampled_from([b"\n", b"\r", b"\r\n", b"ab", "é€😀".encode(), b"\xff"]),
        max_size=40,
    ).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
)
def test_splitter_gives_back_the_lines_however_the_bytes_are_cut(
    data: bytes, cuts: list[int]
) -> None:
    """Reads end anywhere: inside a UTF-8 character, between CR and LF."""
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    splitter = LineSplitter()

    got = [
        line
        for start, stop in itertools.pairwise(bounds)
        for line in splitter.feed(data[start:stop])
    ]
    got += splitter.end()

    assert got == _split_whole(data)


def test_splitter_gives_out_an_endless_line_in_pieces() -> None:
    """An agent that never prints a newline must not grow memory without bound."""
    splitter = LineSplitter(max_line=10)

    assert splitter.feed(b"x" * 7) == []
    assert splitter.feed(b"x" * 18) == ["x" * 10, "x" * 10]
    assert splitter.feed(b"\r\n" + b"y" * 23 + b"\r\n") == [
        "xxxxx",
        "y" * 10,
        "y" * 10,
        "yyy",
    ]
    assert splitter.end() == []


def test_splitter_keeps_a_lone_carriage_return_inside_its_line() -> None:
    splitter = LineSplitter()

    lines = splitter.feed(b"10%\r20%\r30%\r\nok\r\nlast")

    assert lines == ["10%\r20%\r30%", "ok"]
    assert splitter.end() == ["last"]


@pytest.mark.parametrize(
    ("returncode", "status"), [(0, "succeeded"), (1, "failed"), (42, "failed")]
)
def test_exit_code_decides_succeeded_or_failed(
    fp: FakeProcess, store: ExecutionStore, returncode: int, status: str
) -> None:
    fp.register([FAKE_AGENT, "go"], stdout=["out"], returncode=returncode)
    runner = make_runner(store)

    execution_id = runner.start("command", "go")["id"]
    row = wait_for_status(store, execution_id, TERMINAL_STATES)

    assert (row["status"], row["exit_code"]) == (status, returncode)
    assert not runner.is_running(execution_id)


def test_missing_binary_fails_the_execution_without_raising(
    store: ExecutionStore,
) -> None:
    runner = make_runner(store, "/nonexistent/agented-agent --flag")

    row = runner.start("command", "go")

    assert row["status"] == "failed"
    assert row["exit_code"] is None
    assert row["error"].startswith("cannot start /nonexistent/agented-agent")
    assert row["finished_at"] is not None
    assert not runner.is_running(row["id"])
    assert store.get(row["id"]) == row


def test_cancel_of_fake_process_signals_it_and_never_process_group_zero(
    fp: FakeProcess, store: ExecutionStore, killpg: KillpgRecorder
) -> None:
    """A process without a real pid (pid 0) is signalled directly.

    os.killpg(0, sig) would signal the caller's own process group, the server.
    """
    agent = BlockingAgent(fp, [FAKE_AGENT, "go"])
    runner = make_runner(store)
    execution_id = runner.start("command", "go")["id"]

    assert runner.cancel(execution_id) is True
    row = wait_for_status(store, execution_id, TERMINAL_STATES)

    assert agent.signals == [signal.SIGTERM]
    assert killpg.calls == []
    assert (row["status"], row["exit_code"]) == ("cancelled", -signal.SIGTERM)


def test_second_cancel_while_stopping_reports_true_without_signalling_again(
    fp: FakeProcess, store: ExecutionStore
) -> None:
    agent = BlockingAgent(fp, [FAKE_AGENT, "go"], exits_on_signal=False)
    runner = make_runner(store)
    execution_id = runner.start("command", "go")["id"]

    assert runner.cancel(execution_id) is True
    assert runner.cancel(execution_id) is True
    agent.release()
    row = wait_for_status(store, execution_id, TERMINAL_STATES)

    assert agent.signals == [signal.SIGTERM]
    assert row["status"] == "cancelled"


def test_cancel_of_finished_or_unknown_execution_returns_false(
    fp: FakeProcess, store: ExecutionStore
) -> None:
    fp.register([FAKE_AGENT, "go"], stdout=["done"])
    runner = make_runner(store)
    execution_id = runner.start("command", "go")["id"]
    wait_for_status(store, execution_id, TERMINAL_STATES)

    assert runner.cancel(execution_id) is False
    assert runner.cancel("no-such-execution") is False
    assert (store.get(execution_id) or {})["status"] == "succeeded"


def test_cancel_sends_sigterm_to_the_process_group(
    store: ExecutionStore, real_killpg: KillpgRecorder
) -> None:
    """The agent's own children stop too: they share its new process group."""
    code = (
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        "print(os.getpid(), child.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    runner = make_runner(store, python_agent(code))
    execution_id = runner.start("command", "go")["id"]
    leader, child = map(int, wait_for_lines(store, execution_id, 1)[0].split())

    assert runner.cancel(execution_id) is True
    row = wait_for_status(store, execution_id, TERMINAL_STATES)

    assert real_killpg.calls[0] == (leader, signal.SIGTERM)
    assert os.getpgid(0) != leader
    assert (row["status"], row["exit_code"]) == ("cancelled", -signal.SIGTERM)
    deadline = time.monotonic() + DEADLINE
    while not is_gone(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert is_gone(child)


def test_agent_ignoring_sigterm_is_killed_after_the_grace(
    store: ExecutionStore, real_killpg: KillpgRecorder
) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    runner = make_runner(store, python_agent(code), cancel_grace=0.2)
    execution_id = runner.start("command", "go")["id"]
    wait_for_lines(store, execution_id, 1)

    runner.cancel(execution_id)
    row = wait_for_status(store, execution_id, TERMINAL_STATES)

    assert [sig for _, sig in real_killpg.calls] == [signal.SIGTERM, signal.SIGKILL]
    assert (row["status"], row["exit_code"]) == ("cancelled", -signal.SIGKILL)


def test_execution_past_its_timeout_is_timed_out(
    store: ExecutionStore, real_killpg: KillpgRecorder
) -> None:
    runner = make_runner(store, "sleep {prompt}", timeout=0.1)

    execution_id = runner.start("command", "30")["id"]
    row = wait_for_status(store, execution_id, TERMINAL_STATES)

    assert (row["status"], row["exit_code"]) == ("timed_out", -signal.SIGTERM)
    assert [sig for _, sig in real_killpg.calls] == [signal.SIGTERM]


def test_shutdown_kills_running_executions_and_counts_them(
    fp: FakeProcess, store: ExecutionStore
) -> None:
    agent = BlockingAgent(fp, [FAKE_AGENT, "go"])
    runner = make_runner(store)
    execution_id = runner.start("command", "go")["id"]

    assert runner.shutdown() == 1

    assert agent.signals == [signal.SIGKILL]
    assert not runner.is_running(execution_id)
    assert runner.shutdown() == 0


def test_shutdown_verdict_survives_the_processes_exiting(
    store: ExecutionStore, real_killpg: KillpgRecorder
) -> None:
    """The pump thread that sees a killed agent exit must not overwrite the verdict."""
    runner = make_runner(store, "sleep {prompt}")
    ids = [runner.start("command", "30")["id"] for _ in range(5)]

    assert runner.shutdown() == len(ids)
    assert join_runner_threads(DEADLINE) == []

    assert [(store.get(i) or {})["status"] for i in ids] == ["interrupted"] * len(ids)
