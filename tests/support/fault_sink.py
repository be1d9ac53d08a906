"""A Sentry ingest endpoint on loopback that misbehaves on demand.

Raw sockets rather than an HTTP framework, because half of the faults (garbage
replies, reset connections, refusals) are things a framework will not do. One thread
accepts, one thread serves each connection; keep-alive is honoured, since the SDK's
urllib3 pool reuses its connection. The mode is read for every request, so a switch
takes effect on the next envelope, even on a connection that is already open.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sentry_sdk.envelope import Envelope

from tests.support.envelopes import EnvelopeViews, decompress, wait_until

SINK_KEY = "faultsinkpublickey0123456789abcd"
_MAX_HEADER_BYTES = 64 * 1024
_POLL = 0.2


class Mode(enum.StrEnum):
    """How the sink answers an envelope."""

    HEALTHY = "healthy"
    REFUSED = "refused"
    HTTP_500 = "http-500"
    RETRY_AFTER_429 = "429-retry-after"
    RATE_LIMITS_429 = "429-rate-limits"
    SLOW = "slow"
    MALFORMED = "malformed"
    RESET = "reset"


class FaultSink(EnvelopeViews):
    """Bind 127.0.0.1 port 0 at start; `set_mode` switches the fault at run time.

    REFUSED keeps the port bound but not listening, so connecting gets a
    deterministic ECONNREFUSED and nobody else can take the port. A sink that starts
    refused begins listening on the same socket when switched to another mode. The
    opposite switch (listening to refused) has to close the listener and bind the
    port again, which another process could take in between; no test needs it.
    """

    def __init__(
        self,
        mode: Mode = Mode.HEALTHY,
        *,
        project_id: int = 1,
        retry_after: int = 1,
        slow_seconds: float = 10.0,
        reply_delay: float = 0.0,
    ) -> None:
        self.project_id = project_id
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.reply_delay = reply_delay
        self._mode = mode
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._listening = False
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()
        self.port = 0
        self.envelopes: list[Envelope] = []
        self.raw: list[bytes] = []
        self.attempts: Counter[str] = Counter()

    def __enter__(self) -> FaultSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def dsn(self) -> str:
        return f"http://{SINK_KEY}@127.0.0.1:{self.port}/{self.project_id}"

    @property
    def mode(self) -> Mode:
        return self._mode

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(_POLL)
        self._listener = listener
        self.port = listener.getsockname()[1]
        if self._mode is not Mode.REFUSED:
            self._listen()

    def set_mode(self, mode: Mode) -> None:
        with self._lock:
            previous, self._mode = self._mode, mode
            # wake every reply that is waiting out SLOW
            changed, self._changed = self._changed, threading.Event()
        changed.set()
        if previous is Mode.REFUSED and mode is not Mode.REFUSED:
            self._listen()
        elif mode is Mode.REFUSED and self._listening:
            self._stop_listening()

    def stop(self, timeout: float = 5.0) -> None:
        """Close everything and join the threads; safe to call twice."""
        self._stopping.set()
        self._changed.set()
        self._close_listener()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _close_quietly(conn)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))

    def recorded(self) -> list[Envelope]:
        with self._lock:
            return list(self.envelopes)

    def discarded(self, category: str | None = None) -> Counter[str]:
        """Lost events the SDK reported in client reports, counted by reason."""
        counts: Counter[str] = Counter()
        for report in self.items("client_report"):
            for entry in report.get("discarded_events", []):
                if category is None or entry.get("category") == category:
                    counts[entry["reason"]] += int(entry.get("quantity", 0))
        return counts

    def wait_for(
        self, predicate: Callable[[FaultSink], Any], timeout: float = 30.0
    ) -> None:
        """Poll until `predicate(self)` holds; TimeoutError after `timeout`."""
        wait_until(
            lambda: predicate(self),
            timeout,
            lambda: (
                f"sink holds {len(self.errors)} errors "
                f"(mode {self._mode}, attempts {dict(self.attempts)})"
            ),
        )

    def _listen(self) -> None:
        assert self._listener is not None
        self._listener.listen(64)
        self._listening = True
        self._spawn(self._accept_loop, self._listener)

    def _stop_listening(self) -> None:
        self._close_listener()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _close_quietly(conn)
        # the same port, bound again but not listening
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.settimeout(_POLL)
        self._listener = listener

    def _close_listener(self) -> None:
        listener, self._listener, self._listening = self._listener, None, False
        if listener is not None:
            _close_quietly(listener)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set() and listener is self._listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(_POLL)
            with self._lock:
                self._connections.add(conn)
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        try:
            while not self._stopping.is_set():
                request, buffer = self._read_request(conn, buffer)
                if request is None or not self._answer(conn, *request):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._connections.discard(conn)
            _close_quietly(conn)

    def _read_request(
        self, conn: socket.socket, buffer: bytes
    ) -> tuple[tuple[dict[str, str], bytes] | None, bytes]:
        """One request (headers, body) and what follows it; None at end of stream."""
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > _MAX_HEADER_BYTES:
                return None, b""
            chunk = self._recv(conn)
            if not chunk:
                return None, b""
            buffer += chunk
        head, _, rest = buffer.partition(b"\r\n\r\n")
        headers = _parse_headers(head)
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = self._recv(conn)
            if not chunk:
                return None, b""
            rest += chunk
        return (headers, rest[:length]), rest[length:]

    def _recv(self, conn: socket.socket) -> bytes:
        while not self._stopping.is_set():
            try:
                return conn.recv(65536)
            except TimeoutError:
                continue
        return b""

    def _answer(self, conn: socket.socket, headers: dict[str, str], body: bytes):
        """Reply in the current mode; False when the connection is finished."""
        with self._lock:
            mode, changed = self._mode, self._changed
            self.attempts[mode] += 1
        if mode is Mode.SLOW:
            changed.wait(self.slow_seconds)
            if self._stopping.is_set():
                return False
            mode = Mode.HEALTHY
        if mode is Mode.HEALTHY:
            self._keep(body, headers.get("content-encoding"))
            if self.reply_delay:
                self._stopping.wait(self.reply_delay)
            conn.sendall(_response(200, "OK", b"{}"))
        elif mode is Mode.HTTP_500:
            conn.sendall(_response(500, "Internal Server Error", b"ingest failed"))
        elif mode is Mode.RETRY_AFTER_429:
            extra = {"Retry-After": str(self.retry_after)}
            conn.sendall(_response(429, "Too Many Requests", b"{}", extra))
        elif mode is Mode.RATE_LIMITS_429:
            extra = {"X-Sentry-Rate-Limits": f"{self.retry_after}::organization"}
            conn.sendall(_response(429, "Too Many Requests", b"{}", extra))
        elif mode is Mode.MALFORMED:
            conn.sendall(b"\x00\xffthis is not HTTP\r\n\x1b[0m\xfe\r\n\r\n")
            return False
        elif mode in (Mode.RESET, Mode.REFUSED):
            # linger 0: close() sends RST instead of FIN, the peer sees a reset
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            return False
        return True

    def _keep(self, body: bytes, encoding: str | None) -> None:
        decoded = decompress(body, encoding)
        envelope = Envelope.deserialize(decoded)
        with self._lock:
            self.raw.append(decoded)
            self.envelopes.append(envelope)


def _parse_headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def _response(
    status: int, reason: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
