"""In-process wake-ups for SSE subscribers when an execution changes."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class Broker:
    """Wakes every subscriber of a key; the data itself is read from the store.

    A subscriber's queue holds at most one pending wake-up, so a slow reader costs
    one slot of memory however fast an agent prints: it catches up from SQLite.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[queue.Queue[None]]] = {}

    @contextmanager
    def subscribe(self, key: str) -> Iterator[queue.Queue[None]]:
        wakeups: queue.Queue[None] = queue.Queue(maxsize=1)
        with self._lock:
            self._subscribers.setdefault(key, set()).add(wakeups)
        try:
            yield wakeups
        finally:
            with self._lock:
                subscribers = self._subscribers.get(key, set())
                subscribers.discard(wakeups)
                if not subscribers:
                    self._subscribers.pop(key, None)

    def publish(self, key: str) -> None:
        with self._lock:
            subscribers = list(self._subscribers.get(key, ()))
        for wakeups in subscribers:
            # when full, a wake-up is already pending and will read everything new
            with suppress(queue.Full):
                wakeups.put_nowait(None)

    def subscriber_count(self, key: str) -> int:
        with self._lock:
            return len(self._subscribers.get(key, ()))
