"""A closed-loop HTTP/1.1 load generator for the benchmark.

`python bench/loadgen.py URL --connections N --seconds S` keeps N keep-alive
connections busy with GET URL for S seconds, then prints one line, `BENCH_JSON {...}`,
with the request count and latency percentiles. Loopback only: it refuses other hosts.
Standalone on purpose (stdlib only): it runs as its own process, by path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from urllib.parse import urlsplit

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Tally:
    """Latencies and failures of all connections."""

    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.errors = 0
        self.status_errors = 0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _connection(
    host: str, port: int, request: bytes, deadline: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            tally.errors += 1
            await asyncio.sleep(0.01)
            continue
        try:
            await _keep_alive(reader, writer, request, deadline, tally)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            tally.errors += 1
        finally:
            writer.close()


async def _keep_alive(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    deadline: float,
    tally: Tally,
) -> None:
    while time.monotonic() < deadline:
        started = time.perf_counter_ns()
        writer.write(request)
        status = await asyncio.wait_for(_read_response(reader), timeout=10)
        tally.latencies_us.append((time.perf_counter_ns() - started) // 1000)
        if status >= 400:
            tally.status_errors += 1


def _percentile(ordered: list[int], share: float) -> int:
    """Nearest rank, as in bench/common.py: the smallest value at or above `share`."""
    if not ordered:
        return 0
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def run(url: str, connections: int, seconds: float) -> dict[str, int]:
    parts = urlsplit(url)
    if parts.hostname not in _LOOPBACK:
        raise SystemExit(f"loadgen: only loopback targets, not {parts.hostname}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request = (
        f"GET {path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "User-Agent: bench-loadgen\r\n\r\n"
    ).encode()
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    tasks = [
        _connection(parts.hostname or "", parts.port or 80, request, deadline, tally)
        for _ in range(connections)
    ]
    await asyncio.gather(*tasks)
    ordered = sorted(tally.latencies_us)
    return {
        "requests": len(ordered),
        "duration_us": int((time.monotonic() - started) * 1e6),
        "p50_us": _percentile(ordered, 0.50),
        "p99_us": _percentile(ordered, 0.99),
        "errors": tally.errors,
        "status_errors": tally.status_errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    report = asyncio.run(run(args.url, args.connections, args.seconds))
    print("BENCH_JSON " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
