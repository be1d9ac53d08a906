"""Server-Sent Events: the wire format and the generators behind the stream routes."""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any

from app.broker import Broker
from app.store import TERMINAL_STATES, ExecutionStore

SSE_MIMETYPE = "text/event-stream"
# proxies (nginx) and browsers must neither buffer nor cache an event stream
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# how long a browser waits before it reconnects (with Last-Event-ID) after a stream
# was ended by a stopping server: time for the next worker to take over
SHUTDOWN_RETRY_MS = 1000


def sse_event(
    event: str,
    data: Any,
    event_id: int | None = None,
    *,
    retry_ms: int | None = None,
) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    lines.extend(f"data: {part}" for part in json.dumps(data).splitlines())
    return "\n".join(lines) + "\n\n"


def sse_comment(text: str) -> str:
    return f": {text}\n\n"


def shutdown_event() -> str:
    """The last event of a stream the stopping server ends: come back elsewhere.

    EventSource reconnects on its own when a response ends; it carries no id, so
    the client resumes after the last line it saw.
    """
    data = {"reason": "server shutting down", "retry": True}
    return sse_event("shutdown", data, retry_ms=SHUTDOWN_RETRY_MS)


class Heartbeat:
    """Says when an idle stream is due a comment to keep proxies from closing it."""

    def __init__(
        self, interval: float, clock: Callable[[], float] | None = None
    ) -> None:
        self.interval = interval
        # looked up at call time, so a patched clock (freezegun) is honoured
        self.clock = clock or (lambda: time.monotonic())
        self.last_sent = self.clock()

    def remaining(self) -> float:
        return max(0.0, self.last_sent + self.interval - self.clock())

    def due(self) -> bool:
        return self.remaining() == 0.0

    def sent(self) -> None:
        self.last_sent = self.clock()


def parse_last_event_id(raw: str | None) -> int:
    """The sequence number to resume after; ValueError for anything but digits."""
    if raw is None or raw.strip() == "":
        return 0
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise ValueError("Last-Event-ID must be a non-negative whole number")
    return int(raw)


def execution_events(
    store: ExecutionStore,
    broker: Broker,
    execution_id: str,
    *,
    after_seq: int = 0,
    heartbeat_interval: float = 15.0,
) -> Iterator[str]:
    """Replay stored lines after `after_seq`, then follow live until `complete`.

    A closed broker (the server is stopping) ends the stream after the stored lines
    with a `shutdown` event instead.
    """
    heartbeat = Heartbeat(heartbeat_interval)
    last_seq, last_status = after_seq, None
    with broker.subscribe(execution_id) as wakeups:
        while True:
            # status is read before lines: lines written before a final status
            # are then always in the same pass as that status
            execution = store.get(execution_id) or {"status": "interrupted"}
            status = execution["status"]
            finished = status in TERMINAL_STATES
            if status != last_status and not finished:
                yield sse_event("status", {"status": status})
            for seq, text in store.lines_after(execution_id, last_seq):
                last_seq = seq
                heartbeat.sent()
                yield sse_event("log", {"seq": seq, "line": text}, event_id=seq)
            if finished:
                yield sse_event("status", {"status": status})
                lines = store.line_count(execution_id)
                yield sse_event("complete", _summary(execution, lines))
                return
            if broker.closed:
                yield shutdown_event()
                return
            last_status = status
            yield from _wait(wakeups, heartbeat)


def _wait(wakeups: queue.Queue[None], heartbeat: Heartbeat) -> Iterator[str]:
    try:
        wakeups.get(timeout=max(heartbeat.remaining(), 0.05))
    except queue.Empty:
        if heartbeat.due():
            heartbeat.sent()
            yield sse_comment("heartbeat")


def _summary(execution: dict[str, Any], lines: int) -> dict[str, Any]:
    return {
        "id": execution.get("id"),
        "status": execution["status"],
        "exit_code": execution.get("exit_code"),
        "lines": lines,
    }
