"""A minimal Sentry ingest on loopback that counts envelopes and throws them away.

Run as its own process (`python bench/sink.py`), so decoding what the SDK sends
costs the server under load no CPU; it prints the port it bound, then serves
`POST /api/<project>/envelope/`, `GET /stats` (counts per project, as JSON) and
`GET /ping` (an empty answer, to find the load generator's ceiling) until SIGTERM.
`DiscardSink` starts it, reads the port and stops it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

_ENVELOPE = re.compile(rb"^/api/(\d+)/envelope/$")
_READY = "sink listening on 127.0.0.1:"
SINK_KEY = "benchsinkpublickey0123456789abc"


class ProjectCounts:
    """What one project's DSN received."""

    def __init__(self) -> None:
        self.envelopes = 0
        self.bytes = 0
        self.items: Counter[str] = Counter()
        self.transactions: Counter[str] = Counter()
        self.stream_transactions = 0
        self.discarded: Counter[str] = Counter()

    def add(self, body: bytes) -> None:
        self.envelopes += 1
        self.bytes += len(body)
        for item_type, payload in _envelope_items(body):
            self.items[item_type] += 1
            if item_type == "transaction":
                self._add_transaction(json.loads(payload))
            elif item_type == "client_report":
                self._add_report(json.loads(payload))

    def _add_transaction(self, event: dict[str, Any]) -> None:
        name = str(event.get("transaction"))
        self.transactions[name] += 1
        url = str((event.get("request") or {}).get("url", ""))
        # by URL or by endpoint name, so a renamed route is still caught
        if url.split("?")[0].endswith("/stream") or "stream" in name:
            self.stream_transactions += 1

    def _add_report(self, report: dict[str, Any]) -> None:
        for entry in report.get("discarded_events", []):
            key = f"{entry.get('category')}:{entry.get('reason')}"
            self.discarded[key] += int(entry.get("quantity", 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "envelopes": self.envelopes,
            "bytes": self.bytes,
            "items": dict(self.items),
            "transactions": dict(self.transactions),
            "stream_transactions": self.stream_transactions,
            "discarded": dict(self.discarded),
        }


def _envelope_items(body: bytes) -> list[tuple[str, bytes]]:
    """(type, payload) of each item; the envelope format is line based."""
    items = []
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length + 1 :]
        items.append((str(header.get("type")), payload))
    return items


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


class SinkServer:
    """The asyncio HTTP/1.1 server: keep-alive, Content-Length bodies only."""

    def __init__(self) -> None:
        self.projects: defaultdict[str, ProjectCounts] = defaultdict(ProjectCounts)
        self.undecodable = 0

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # the sink is stopping under an open keep-alive connection: ending
            # quietly spares the log asyncio's traceback for each such connection
            pass
        finally:
            writer.close()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (h.partition(":") for h in header_lines if h)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))

        status, answer = self._answer(method, path.encode(), headers, body)
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(answer)}\r\n\r\n".encode()
            + answer
        )
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    def _answer(
        self, method: str, path: bytes, headers: dict[str, str], body: bytes
    ) -> tuple[str, bytes]:
        if method == "GET" and path == b"/ping":
            return "200 OK", b"{}"
        if method == "GET" and path == b"/stats":
            stats = {k: v.as_dict() for k, v in self.projects.items()}
            stats["undecodable"] = self.undecodable  # type: ignore[assignment]
            return "200 OK", json.dumps(stats).encode()
        found = _ENVELOPE.match(path.split(b"?")[0])
        if method != "POST" or found is None:
            return "404 Not Found", b"{}"
        try:
            decoded = _decode(body, headers.get("content-encoding", ""))
            self.projects[found.group(1).decode()].add(decoded)
        except (OSError, ValueError, zlib.error):
            self.undecodable += 1
        return "200 OK", b"{}"


async def serve() -> None:
    sink = SinkServer()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0, backlog=512)
    port = server.sockets[0].getsockname()[1]
    print(f"{_READY}{port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


class DiscardSink:
    """`bench/sink.py` as a child process; a context manager that always stops it."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> DiscardSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("the sink is not started")
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def dsn(self, project: int) -> str:
        return f"http://{SINK_KEY}@127.0.0.1:{self.port}/{project}"

    def start(self, timeout: float = 15.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = _read_line(self.proc, timeout)
        if not line.startswith(_READY):
            self.stop()
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.port = int(line.removeprefix(_READY))

    def stats(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.port}/stats"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)

    def project(self, project: int) -> dict[str, Any]:
        empty = ProjectCounts().as_dict()
        return self.stats().get(str(project), empty)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=timeout)


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first line of output, or "" if none came before the deadline."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            return proc.stdout.readline().strip()
        if proc.poll() is not None:
            return ""
    return ""


if __name__ == "__main__":
    asyncio.run(serve())
