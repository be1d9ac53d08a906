"""The load generator, run as a child process so it never shares a core's GIL.

`bench/loadgen.py` runs closed-loop over keep-alive connections for a fixed time and
reports requests, errors and latency percentiles; its own CPU use comes from the
kernel's accounting of the child, so a reader can check it was not the bottleneck.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.sink import DiscardSink

_LOADGEN = Path(__file__).with_name("loadgen.py")
_MARK = "BENCH_JSON "
# the child may finish its last in-flight requests after the run's end
_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class LoadResult:
    """One run of the generator against one URL."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    generator_cpu: float  # CPU seconds per second of run: 1.0 is one full core

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LoadGenerator:
    """Runs one load test at a time with a fixed number of connections."""

    name = "python asyncio (bench/loadgen.py)"

    def __init__(self, connections: int) -> None:
        self.connections = connections

    def run(self, url: str, seconds: float) -> LoadResult:
        argv = [
            sys.executable,
            str(_LOADGEN),
            url,
            f"--connections={self.connections}",
            f"--seconds={seconds}",
        ]
        started = time.monotonic()
        output, cpu = _run_child(argv, deadline=started + seconds + _GRACE_SECONDS)
        elapsed = time.monotonic() - started
        report = _last_report(output)
        requests = int(report["requests"])
        duration = report["duration_us"] / 1e6
        return LoadResult(
            requests=requests,
            seconds=duration,
            rps=requests / duration if duration else 0.0,
            p50_ms=report["p50_us"] / 1000,
            p99_ms=report["p99_us"] / 1000,
            errors=int(report["errors"]) + int(report["status_errors"]),
            generator_cpu=cpu / elapsed if elapsed else 0.0,
        )


def _run_child(argv: list[str], deadline: float) -> tuple[str, float]:
    """The child's stdout and the CPU seconds it used; killed at the deadline."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out)
        try:
            usage = _wait_with_usage(proc, deadline)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait(timeout=10)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"loadgen exited {proc.returncode}: {text}")
    return text, usage.ru_utime + usage.ru_stime


def _wait_with_usage(proc: subprocess.Popen[bytes], deadline: float) -> Any:
    # wait4 reaps the child and hands back its own resource usage, nobody else's
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        time.sleep(0.05)
    raise TimeoutError("loadgen ran past its deadline")


def _last_report(output: str) -> dict[str, Any]:
    for line in reversed(output.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line.removeprefix(_MARK))
    raise RuntimeError(f"the load generator printed no report:\n{output}")


def measure_ceiling(generator: LoadGenerator, seconds: float) -> LoadResult:
    """The generator's rate against a server that does nothing: its own limit.

    The server is the benchmark's sink answering `GET /ping`, itself one Python
    process, so this is a floor of the generator's ceiling; what matters is that it
    stays well above every figure measured against the backend.
    """
    with DiscardSink() as sink:
        generator.run(f"{sink.url}/ping", min(seconds, 1.0))  # warm-up
        return generator.run(f"{sink.url}/ping", seconds)
