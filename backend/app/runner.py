"""Runs agent command lines as subprocesses and records what they print."""

from __future__ import annotations

import io
import logging
import os
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from app.agents import build_command
from app.broker import Broker
from app.store import ExecutionStore

log = logging.getLogger(__name__)


# lines stored per transaction while an agent prints faster than they are written
PUMP_BATCH_LINES = 200


def _more_ready(stream: Any) -> bool:
    """Whether reading `stream` now would return at once (more output is waiting).

    A stream with no descriptor (a fake process in tests) has all its output at
    hand, so it counts as ready.
    """
    try:
        ready, _, _ = select.select([stream], [], [], 0)
    except (OSError, ValueError, io.UnsupportedOperation):
        return True
    return bool(ready)


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
        """Store what the agent prints, in batches, and wake its subscribers.

        An agent printing as fast as it can never makes this read wait, so under
        gevent nothing else would run: one SQLite commit per line kept a worker
        from answering anyone for 40 s over 10,000 lines. Lines are stored a batch
        at a time, as many as are ready (up to PUMP_BATCH_LINES), and the loop
        yields after each batch; a slow agent's lines still go out one by one.
        """
        batch: list[str] = []
        seq = 0

        def flush() -> None:
            nonlocal seq
            self.store.append_lines(execution_id, seq + 1, batch)
            seq += len(batch)
            batch.clear()
            self.broker.publish(execution_id)
            time.sleep(0)  # under gevent: let requests and streams run

        try:
            with proc.stdout:
                for line in proc.stdout:
                    batch.append(line.rstrip("\r\n"))
                    if len(batch) >= PUMP_BATCH_LINES or not _more_ready(proc.stdout):
                        flush()
                if batch:
                    flush()
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
        text=True,
        errors="replace",
        bufsize=1,
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
