"""Server-Sent Events read back as an EventSource would (WHATWG HTML, 9.2.6).

Each event is a dict of its fields; `data` lines are joined and JSON-decoded (the
service sends JSON), a comment line (`: heartbeat`) is kept under "comment".
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any


class SseParser:
    """Fed one line at a time (no line ending); gives each event as it ends."""

    def __init__(self) -> None:
        self._event: dict[str, Any] = {}
        self._data: list[str] = []

    def line(self, line: str) -> dict[str, Any] | None:
        if line == "":
            return self._dispatch()
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "":
            self._event["comment"] = value
        elif field == "data":
            self._data.append(value)
        else:
            self._event[field] = value
        return None

    def _dispatch(self) -> dict[str, Any] | None:
        event, self._event = self._event, {}
        if self._data:
            event["data"] = json.loads("\n".join(self._data))
            self._data = []
        return event or None


def parse_sse(wire: str) -> list[dict[str, Any]]:
    """Every complete event in `wire`."""
    parser = SseParser()
    events = (parser.line(line) for line in wire.split("\n"))
    return [event for event in events if event is not None]


def read_until_complete(
    chunks: Iterable[bytes | str], timeout: float = 5.0
) -> list[dict[str, Any]]:
    """The events of a streamed response up to its `complete` event.

    Fails (AssertionError) when the deadline passes first or the stream ends.
    """
    parser = SseParser()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    pending = ""
    for chunk in chunks:
        pending += chunk.decode() if isinstance(chunk, bytes) else chunk
        *lines, pending = pending.split("\n")
        for line in lines:
            event = parser.line(line)
            if event is not None:
                events.append(event)
                if event.get("event") == "complete":
                    return events
        assert time.monotonic() < deadline, f"no complete event in time: {events}"
    raise AssertionError(f"the stream ended without a complete event: {events}")
