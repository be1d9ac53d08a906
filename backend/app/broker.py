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

    Closing it (the server is stopping) wakes every subscriber for good; subscribers
    check `closed` after each wake-up and end their stream.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[queue.Queue[None]]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

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
        _wake(subscribers)

    def close(self) -> int:
        """Wake every subscriber with `closed` set; returns how many were woken.

        Never blocks beyond the short lock, so a signal handler's greenlet may call
        it. A subscriber arriving later finds `closed` set before it first waits.
        """
        with self._lock:
            self._closed = True
            subscribers = [w for ws in self._subscribers.values() for w in ws]
        _wake(subscribers)
        return len(subscribers)

    def subscriber_count(self, key: str) -> int:
        with self._lock:
            return len(self._subscribers.get(key, ()))


def _wake(subscribers: list[queue.Queue[None]]) -> None:
    for wakeups in subscribers:
        # when full, a wake-up is already pending and will read everything new
        with suppress(queue.Full):
            wakeups.put_nowait(None)
