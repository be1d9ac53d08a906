"""Runs agent command lines as subprocesses and records what they print."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from app.agents import build_command
from app.broker import Broker
from app.store import ExecutionStore

log = logging.getLogger(__name__)


# lines stored per transaction while an agent prints faster than they are written
PUMP_BATCH_LINES = 200
# the most read from an agent's output at once
_CHUNK_BYTES = 64 * 1024
# a line longer than this is stored in pieces of this size, so that an agent that
# never prints a newline cannot grow the worker's memory without bound
MAX_LINE_BYTES = 1024 * 1024


def _chunks(stream: Any) -> Iterator[bytes]:
    """What the pipe holds, a read at a time; a read waits only when it is empty."""
    while chunk := stream.read1(_CHUNK_BYTES):
        yield chunk


class LineSplitter:
    """Bytes in, complete lines out (UTF-8, bad bytes replaced, CRLF or LF).

    Only "\\n" ends a line: a lone "\\r" (a progress bar redrawing itself) stays in
    its line. An unfinished line waits for the rest, up to `max_line` bytes, past
    which it is given out in pieces; `end` gives up what is left at EOF.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_line = max_line

    def feed(self, chunk: bytes) -> list[str]:
        scan_from = len(self._buffer)  # the bytes before hold no newline
        self._buffer += chunk
        lines = []
        last = self._buffer.rfind(b"\n", scan_from)
        if last != -1:
            complete = bytes(self._buffer[: last + 1])
            del self._buffer[: last + 1]
            for line in complete.split(b"\n")[:-1]:
                lines += self._pieces(line)
        while len(self._buffer) >= self._max_line:  # mid-line: keep any "\\r"
            lines.append(_text(bytes(self._buffer[: self._max_line])))
            del self._buffer[: self._max_line]
        return lines

    def _pieces(self, line: bytes) -> list[str]:
        line = line.removesuffix(b"\r")
        size = self._max_line
        return [_text(line[i : i + size]) for i in range(0, len(line), size)] or [""]

    def end(self) -> list[str]:
        rest, self._buffer = bytes(self._buffer), bytearray()
        return [_decode(rest)] if rest else []


def _decode(line: bytes) -> str:
    return _text(line.removesuffix(b"\r"))


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


@dataclass
class _Running:
    proc: Any
    stop_reason: str | None = None


class ExecutionRunner:
    """Starts, watches, cancels and reaps executions; one per app."""

    def __init__(
        self,
        store: ExecutionStore,
        broker: Broker,
        *,
        agent_command: str | None,
        timeout: float,
        cancel_grace: float,
    ) -> None:
        self.store = store
        self.broker = broker
        self.agent_command = agent_command
        self.timeout = timeout
        self.cancel_grace = cancel_grace
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}

    def start(
        self, agent: str, prompt: str, session_id: str | None = None
    ) -> dict[str, Any]:
        """Create the execution and launch its process; AgentError for a bad agent."""
        argv = build_command(agent, prompt, self.agent_command)
        execution = self.store.create(agent, prompt, argv, session_id)
        execution_id = execution["id"]

        try:
            proc = _spawn(argv)
        except OSError as exc:
            self._finish(execution_id, "failed", None, f"cannot start {argv[0]}: {exc}")
            log.warning("execution failed to start", extra=_fields(execution, exc))
            return self.store.get(execution_id) or execution

        with self._lock:
            self._running[execution_id] = _Running(proc)
        self.store.update(execution_id, status="running", started_at=time.time())
        self.broker.publish(execution_id)
        log.info("execution started", extra=_fields(execution))
        _daemon(self._pump, execution_id, proc)
        _daemon(self._watch, execution_id, proc)
        return self.store.get(execution_id) or execution

    def cancel(self, execution_id: str) -> bool:
        """Stop a running execution: SIGTERM to its group, SIGKILL after the grace."""
        return self._stop(execution_id, "cancelled")

    def is_running(self, execution_id: str) -> bool:
        with self._lock:
            return execution_id in self._running

    def shutdown(self) -> int:
        """Stop every running execution and mark it interrupted; returns how many."""
        with self._lock:
            running = list(self._running.items())
        for execution_id, entry in running:
            entry.stop_reason = "interrupted"
            # the verdict first: the pump wakes when the process dies and must find it
            self._finish(execution_id, "interrupted", None, "server shut down")
            _signal_group(entry.proc, signal.SIGKILL)
        return len(running)

    def _stop(self, execution_id: str, reason: str) -> bool:
        with self._lock:
            entry = self._running.get(execution_id)
            if entry is None or entry.stop_reason is not None:
                return entry is not None
            entry.stop_reason = reason
        _signal_group(entry.proc, signal.SIGTERM)
        _daemon(self._kill_after_grace, entry.proc)
        log.info(
            "execution stopping", extra={"execution_id": execution_id, "reason": reason}
        )
        return True

    def _kill_after_grace(self, proc: Any) -> None:
        try:
            proc.wait(timeout=self.cancel_grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)

    def _watch(self, execution_id: str, proc: Any) -> None:
        try:
            proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._stop(execution_id, "timed_out")

    def _pump(self, execution_id: str, proc: Any) -> None:
        """Store what the agent prints, as it arrives, and wake its subscribers.

        Output is read a chunk at a time (whatever the pipe holds, up to 64 KiB),
        and every complete line in a chunk is stored before the next read, which
        may wait: a line never waits for the agent's next one. A flooding agent
        never makes a read wait, so under gevent nothing else would run; lines are
        stored PUMP_BATCH_LINES to a transaction and the loop yields after each
        (one commit per line kept a worker from answering anyone for 40 s over
        10,000 lines).
        """
        seq = 0

        def save(lines: list[str]) -> None:
            nonlocal seq
            for first in range(0, len(lines), PUMP_BATCH_LINES):
                batch = lines[first : first + PUMP_BATCH_LINES]
                self.store.append_lines(execution_id, seq + 1, batch)
                seq += len(batch)
                self.broker.publish(execution_id)
                time.sleep(0)  # under gevent: let requests and streams run

        try:
            with proc.stdout:
                splitter = LineSplitter()
                for chunk in _chunks(proc.stdout):
                    save(splitter.feed(chunk))
                save(splitter.end())
            exit_code = proc.wait()
        except Exception:
            log.exception("execution output lost", extra={"execution_id": execution_id})
            _signal_group(proc, signal.SIGKILL)
            self._finish(execution_id, "failed", None, "output could not be read")
            return
        self._finish(execution_id, self._outcome(execution_id, exit_code), exit_code)

    def _outcome(self, execution_id: str, exit_code: int) -> str:
        with self._lock:
            entry = self._running.get(execution_id)
        if entry is not None and entry.stop_reason:
            return entry.stop_reason
        return "succeeded" if exit_code == 0 else "failed"

    def _finish(
        self,
        execution_id: str,
        status: str,
        exit_code: int | None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self._running.pop(execution_id, None)
        # only the first verdict counts: shutdown and the pump may both get here
        if not self.store.finish(execution_id, status, exit_code, error):
            return
        self.broker.publish(execution_id)
        log.info(
            "execution finished",
            extra={
                "execution_id": execution_id,
                "status": status,
                "exit_code": exit_code,
            },
        )


def _spawn(argv: list[str]) -> Any:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a cancel reaches children
    )


def _signal_group(proc: Any, sig: int) -> None:
    """Signal the process group the child leads; never group 0 (our own).

    The group outlives its leader when a child keeps running, so it is signalled
    even after the leader exited; ProcessLookupError means the group is gone.
    """
    try:
        if proc.pid > 0:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass  # it exited between poll and kill


def _daemon(target: Any, *args: Any) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def _fields(execution: dict[str, Any], exc: Exception | None = None) -> dict[str, Any]:
    fields = {"execution_id": execution["id"], "agent": execution["agent"]}
    if exc is not None:
        fields["error"] = str(exc)
    return fields
