"""SSE fan-out: one execution printing many lines, followed by many subscribers.

The subscribers are raw HTTP/1.0 sockets read by one thread with a selector: the
stream then arrives without chunked framing, and counting `event: log` lines in
each block costs the client almost nothing, so the server is what is measured.

The agent waits for a go file before it prints, and the bench creates that file
only once every subscriber's stream has started; the clock runs from then until the
last subscriber has its `complete` event. A probe asks /health/liveness meanwhile,
so a worker too busy to answer anything else shows as the probe's worst latency.
"""

from __future__ import annotations

import selectors
import shlex
import socket
import sys
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import Spread, cpu_seconds, rss_kib
from bench.sink import DiscardSink
from tests.support.servers import GunicornServer

_LOG_EVENT = b"event: log\n"
_COMPLETE_EVENT = b"event: complete\n"
# its one argument (the prompt) is "LINES GO_FILE": it waits up to a minute for the
# go file, then writes all its lines at once, as fast as a pipe takes them
_AGENT_CODE = """
import os, sys, time
lines, go = sys.argv[1].split(" ", 1)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.005)
sys.stdout.write("".join(f"line {i} of the bench agent\\n" for i in range(int(lines))))
"""
_ATTACH_TIMEOUT = 30.0
_SETTLE_SECONDS = 0.5
_PROBE_INTERVAL = 0.25
_PROJECT = 1


@dataclass
class Subscriber:
    """One stream connection and what it has seen."""

    sock: socket.socket
    head: bytes = b""
    status_line: str = ""
    tail: bytes = b""
    log_events: int = 0
    first_log_at: float | None = None
    completed_at: float | None = None
    closed: bool = False

    def feed(self, data: bytes, now: float) -> None:
        if not self.status_line:
            data = self._take_head(data)
        window = self.tail + data
        found = window.count(_LOG_EVENT)
        if found and self.first_log_at is None:
            self.first_log_at = now
        self.log_events += found
        if self.completed_at is None and _COMPLETE_EVENT in window:
            self.completed_at = now
        # a marker cannot lie wholly in the kept tail, so none is counted twice
        self.tail = window[-(len(_LOG_EVENT) - 1) :]

    def _take_head(self, data: bytes) -> bytes:
        self.head += data
        head, sep, body = self.head.partition(b"\r\n\r\n")
        if not sep:
            return b""
        self.status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        return body


@dataclass(frozen=True)
class StreamRun:
    """One execution followed by every subscriber, timed from the go signal."""

    lines: int
    subscribers: int
    complete: int
    events_received: int
    seconds: float  # go file created -> last subscriber complete
    first_line_seconds: float  # go file created -> first line at any subscriber
    lines_per_second: float  # lines delivered, all subscribers together
    worker_cpu: float  # worker CPU seconds per second of the run
    client_cpu: float
    liveness_max_ms: float
    liveness_probes: int
    rss_before_kib: int
    rss_after_kib: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_sse(
    workdir: Path, lines: int, subscribers: int, repeats: int
) -> dict[str, Any]:
    """Warm up once, then `repeats` measured runs; RSS and the sink's transactions."""
    with ExitStack() as stack:
        sink = stack.enter_context(DiscardSink())
        env = {
            "AGENTED_AGENT_COMMAND": shlex.join([sys.executable, "-c", _AGENT_CODE]),
            "SENTRY_DSN": sink.dsn(_PROJECT),
            "SENTRY_TRACES_SAMPLE_RATE": "1.0",
        }
        server = GunicornServer(workdir / "server-sse", env)
        stack.callback(server.stop)
        server.start()
        [worker] = server.worker_pids()

        go_dir = workdir / "go"
        go_dir.mkdir(parents=True, exist_ok=True)
        stream = _Stream(server.url, worker, go_dir, subscribers)
        stream.once(max(lines // 50, 10))  # warm-up: imports, caches, first WAL
        runs = [stream.once(lines) for _ in range(repeats)]

        server.stop()  # flushes the SDK's queue into the sink
        received = sink.project(_PROJECT)
    return _summary(runs, received)


def _summary(runs: list[StreamRun], received: dict[str, Any]) -> dict[str, Any]:
    growth = [r.rss_after_kib - r.rss_before_kib for r in runs]
    return {
        "runs": [r.as_dict() for r in runs],
        "lines_per_second": Spread.of([r.lines_per_second for r in runs]).as_dict(),
        "seconds": Spread.of([r.seconds for r in runs]).as_dict(),
        "first_line_seconds": Spread.of([r.first_line_seconds for r in runs]).as_dict(),
        "liveness_max_ms": Spread.of([r.liveness_max_ms for r in runs]).as_dict(),
        "worker_cpu": Spread.of([r.worker_cpu for r in runs]).as_dict(),
        "rss_before_kib": runs[0].rss_before_kib,
        "rss_after_kib": runs[-1].rss_after_kib,
        "rss_growth_kib": Spread.of(growth).as_dict(),
        "rss_growth_total_kib": runs[-1].rss_after_kib - runs[0].rss_before_kib,
        "all_complete": all(r.complete == r.subscribers for r in runs),
        "all_lines": all(r.events_received == r.lines * r.subscribers for r in runs),
        "stream_transactions": received["stream_transactions"],
        "transactions": received["transactions"],
    }


class _Stream:
    """Starts executions on one server and follows each with every subscriber."""

    def __init__(self, url: str, worker: int, go_dir: Path, subscribers: int) -> None:
        self.url = url
        self.worker = worker
        self.go_dir = go_dir
        self.subscribers = subscribers
        self._count = 0

    def once(self, lines: int) -> StreamRun:
        self._count += 1
        go = self.go_dir / f"go-{self._count}"
        created = requests.post(
            f"{self.url}/admin/executions",
            json={"agent": "command", "prompt": f"{lines} {go}"},
            timeout=10,
        )
        created.raise_for_status()
        path = f"/admin/executions/{created.json()['id']}/stream"

        rss_before = rss_kib(self.worker)
        with _Follow(self.url, path, self.subscribers) as follow:
            follow.wait_attached(deadline=time.monotonic() + _ATTACH_TIMEOUT)
            started, cpu_before = time.monotonic(), cpu_seconds(self.worker)
            client_before = time.process_time()
            with _LivenessProbe(self.url) as probe:
                go.touch()
                follow.read_until_done(deadline=started + 60 + lines / 100)
            worker_cpu = cpu_seconds(self.worker) - cpu_before
            client_cpu = time.process_time() - client_before
        time.sleep(_SETTLE_SECONDS)  # let the worker finish closing the streams
        usage = {"worker": worker_cpu, "client": client_cpu, "rss_before": rss_before}
        return self._result(follow.subs, lines, started, usage, probe)

    def _result(
        self,
        subs: list[Subscriber],
        lines: int,
        started: float,
        usage: dict[str, float],
        probe: _LivenessProbe,
    ) -> StreamRun:
        first = min((s.first_log_at for s in subs if s.first_log_at), default=started)
        last = max((s.completed_at for s in subs if s.completed_at), default=started)
        received = sum(s.log_events for s in subs)
        seconds = max(last - started, 1e-9)
        return StreamRun(
            lines=lines,
            subscribers=len(subs),
            complete=sum(
                1 for s in subs if s.completed_at and " 200 " in s.status_line
            ),
            events_received=received,
            seconds=seconds,
            first_line_seconds=first - started,
            lines_per_second=received / seconds,
            worker_cpu=usage["worker"] / seconds,
            client_cpu=usage["client"] / seconds,
            liveness_max_ms=max(probe.latencies_ms, default=float("nan")),
            liveness_probes=len(probe.latencies_ms),
            rss_before_kib=int(usage["rss_before"]),
            rss_after_kib=rss_kib(self.worker),
        )


class _Follow:
    """`count` open streams of one path, read by one selector."""

    def __init__(self, url: str, path: str, count: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()
        self.count = count
        self.selector = selectors.DefaultSelector()
        self.subs: list[Subscriber] = []
        self._open = 0

    def __enter__(self) -> _Follow:
        for _ in range(self.count):
            sock = socket.create_connection(self.address, timeout=10)
            sock.sendall(self.request)
            sock.setblocking(False)
            sub = Subscriber(sock)
            self.selector.register(sock, selectors.EVENT_READ, sub)
            self.subs.append(sub)
        self._open = len(self.subs)
        return self

    def __exit__(self, *exc: object) -> None:
        for sub in self.subs:
            sub.sock.close()
        self.selector.close()

    def wait_attached(self, deadline: float) -> None:
        """Read until every stream has its response head: each is subscribed then."""
        while not all(s.status_line for s in self.subs):
            if time.monotonic() > deadline or not self._open:
                raise TimeoutError("not every SSE subscriber was attached in time")
            self._read_once()

    def read_until_done(self, deadline: float) -> None:
        while self._open and time.monotonic() < deadline:
            self._read_once()

    def _read_once(self) -> None:
        for key, _ in self.selector.select(timeout=0.5):
            sub: Subscriber = key.data
            data = sub.sock.recv(1 << 16)
            now = time.monotonic()
            if data:
                sub.feed(data, now)
            if not data or sub.completed_at is not None:
                self.selector.unregister(sub.sock)
                sub.closed = True
                self._open -= 1


class _LivenessProbe:
    """Asks /health/liveness every quarter second from its own thread."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/health/liveness"
        self.latencies_ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _LivenessProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=70)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                started = time.perf_counter()
                # a failure counts too: its latency is as long as it took to fail
                with suppress(requests.RequestException):
                    session.get(self.url, timeout=60).raise_for_status()
                self.latencies_ms.append((time.perf_counter() - started) * 1000)
                self._stop.wait(_PROBE_INTERVAL)
