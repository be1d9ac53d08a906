"""Shared pieces of the benchmark: spreads of repeated figures and /proc readings."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Spread:
    """A figure measured several times: its smallest, middle and largest value."""

    min: float
    median: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(min(values), statistics.median(values), max(values), len(values))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spread(figure: dict[str, Any] | None, fmt: str = "{:.0f}") -> str:
    """A Spread's dict as "median [min, max]", or its one value when it has one."""
    if not figure or not figure.get("n"):
        return "-"
    median = fmt.format(figure["median"])
    if figure["n"] == 1:
        return median
    return f"{median} [{fmt.format(figure['min'])}, {fmt.format(figure['max'])}]"


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share from 0 to 1): at least `share` are <= it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # after the command name: state is field 3, utime 14 and stime 15 (1-based)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


def busy_cores(seconds: float = 1.0) -> float:
    """Cores the whole machine kept busy over the next `seconds`, whoever used them.

    Taken before the benchmark starts, it tells whether other work shared the
    machine: every figure here assumes both cores were ours.
    """
    before = machine_cpu_seconds()
    time.sleep(seconds)
    return (machine_cpu_seconds() - before) / seconds


def machine_cpu_seconds() -> float:
    """CPU time every process on the machine has used since boot, all cores."""
    return _busy_ticks() / _CLOCK_TICKS


def _busy_ticks() -> int:
    # the first line of /proc/stat: user nice system idle iowait irq softirq steal
    ticks = [
        int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    ]
    return sum(ticks) - ticks[3] - ticks[4]


class OtherWork:
    """Measures the CPU the rest of the machine used, outside this process tree.

    Everything here assumes both cores are the benchmark's; another user's job
    running meanwhile skews every figure, so each measurement says how much there was.
    """

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._machine = machine_cpu_seconds()
        self._ours = own_tree_cpu_seconds()

    def cores(self) -> float:
        """Average cores used by others since this object was made."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        machine = machine_cpu_seconds() - self._machine
        ours = own_tree_cpu_seconds() - self._ours
        return max(0.0, machine - ours) / elapsed


def own_tree_cpu_seconds() -> float:
    """CPU seconds of this process and all its live descendants, reaped ones included.

    A process's cutime and cstime hold the children it has reaped, so a worker
    that exited is still counted, in its parent.
    """
    children: dict[int, list[int]] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it exited while we looked
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        # utime, stime, cutime, cstime: fields 14 to 17 (1-based)
        used[pid] = sum(int(n) for n in fields[11:15]) / _CLOCK_TICKS
    total, pending = 0.0, [os.getpid()]
    while pending:
        pid = pending.pop()
        total += used.get(pid, 0.0)
        pending.extend(children.get(pid, []))
    return total


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: cores, CPU model, memory, Python."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(_mem_total_kib() / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _mem_total_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0
