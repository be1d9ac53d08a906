"""What Sentry costs under load: four servers side by side, measured interleaved.

One Gunicorn gevent server per configuration (Sentry off; on with traces sampled at
0, 0.1 and 1.0) runs for the whole phase. Each repeat loads every configuration in
turn, in an order rotated per repeat, so drift of the machine's load (other work on
it, thermal state) falls on all of them alike; a ratio to "off" is only ever taken
between runs of the same repeat.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import OtherWork, Spread, cpu_seconds
from bench.load import LoadGenerator, LoadResult
from bench.sink import DiscardSink
from tests.support.servers import GunicornServer

log = logging.getLogger("bench.overhead")

# configuration name -> traces sample rate; None is Sentry off (no DSN at all)
CONFIGS: dict[str, float | None] = {"off": None, "0": 0.0, "0.1": 0.1, "1.0": 1.0}
ROUTES = {"liveness": "/health/liveness", "executions": "/admin/executions"}
SEED_EXECUTIONS = 20
# after each run: the SDK's worker thread sends what the run queued, off the clock of
# the next configuration's run
_SETTLE_SECONDS = 0.5
_WARM_UP_SECONDS = 1.0
_SEED_AGENT = f"{shlex.quote(sys.executable)} -c \"print('seed line')\""


@dataclass(frozen=True)
class Run:
    """One load run of one configuration and route."""

    repeat: int
    config: str
    route: str
    load: LoadResult
    worker_cpu_us_per_request: float
    worker_cpu: float  # CPU seconds per second of run: 1.0 is one full core
    sink_cpu: float
    # whatever else ran on the machine meanwhile: other people's work, in cores
    other_cpu: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "repeat": self.repeat,
            "config": self.config,
            "route": self.route,
            **self.load.as_dict(),
            "worker_cpu_us_per_request": self.worker_cpu_us_per_request,
            "worker_cpu": self.worker_cpu,
            "sink_cpu": self.sink_cpu,
            "other_cpu": self.other_cpu,
        }


@dataclass
class Target:
    """A configuration's server and its Gunicorn worker."""

    config: str
    server: GunicornServer
    worker_pid: int = 0


def measure_overhead(
    workdir: Path, generator: LoadGenerator, repeats: int, seconds: float
) -> dict[str, Any]:
    """Start the servers and a sink, load them interleaved, summarise."""
    with ExitStack() as stack:
        sink = stack.enter_context(DiscardSink())
        targets = _start_targets(stack, workdir, sink)
        for target in targets:
            _seed(target.server.url)
        _warm_up(generator, targets, seconds=_WARM_UP_SECONDS)
        before = sink.stats()

        runs = [
            run
            for repeat in range(repeats)
            for run in _one_repeat(generator, targets, sink, repeat, seconds)
        ]

        # a graceful stop flushes each SDK's queue, so the sink has it all after
        _in_parallel([t.server.stop for t in targets])
        delivered = _sink_deltas(before, sink.stats())
    return {
        "runs": [run.as_dict() for run in runs],
        "summary": summarise(runs),
        "sink": delivered,
        "generator": generator.name,
        "connections": generator.connections,
        "seconds_per_run": seconds,
        "repeats": repeats,
    }


def _start_targets(stack: ExitStack, workdir: Path, sink: DiscardSink) -> list[Target]:
    targets = []
    for project, (config, rate) in enumerate(CONFIGS.items(), start=1):
        env = {"AGENTED_AGENT_COMMAND": _SEED_AGENT}
        if rate is not None:
            env["SENTRY_DSN"] = sink.dsn(project)
            env["SENTRY_TRACES_SAMPLE_RATE"] = str(rate)
        server = GunicornServer(workdir / f"server-{config}", env)
        stack.callback(server.stop)
        targets.append(Target(config, server))
    _in_parallel([t.server.start for t in targets])
    for target in targets:
        [target.worker_pid] = target.server.worker_pids()
    return targets


def _in_parallel(calls: list[Any]) -> None:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def _seed(url: str) -> None:
    """Executions for GET /admin/executions to list, so its JSON is not empty."""
    for n in range(SEED_EXECUTIONS):
        body = {"agent": "command", "prompt": f"seed {n}"}
        response = requests.post(f"{url}/admin/executions", json=body, timeout=10)
        response.raise_for_status()


def _warm_up(generator: LoadGenerator, targets: list[Target], seconds: float) -> None:
    for target in targets:
        for path in ROUTES.values():
            generator.run(target.server.url + path, seconds)


def _one_repeat(
    generator: LoadGenerator,
    targets: list[Target],
    sink: DiscardSink,
    repeat: int,
    seconds: float,
) -> list[Run]:
    shift = repeat % len(targets)
    order = targets[shift:] + targets[:shift]
    runs = []
    for route, path in ROUTES.items():
        for target in order:
            runs.append(_one_run(generator, target, sink, repeat, route, path, seconds))
    return runs


def _one_run(
    generator: LoadGenerator,
    target: Target,
    sink: DiscardSink,
    repeat: int,
    route: str,
    path: str,
    seconds: float,
) -> Run:
    worker_before, sink_before = cpu_seconds(target.worker_pid), cpu_seconds(sink.pid)
    others = OtherWork()
    load = generator.run(target.server.url + path, seconds)
    other_cpu = others.cores()
    worker_used = cpu_seconds(target.worker_pid) - worker_before
    sink_used = cpu_seconds(sink.pid) - sink_before
    time.sleep(_SETTLE_SECONDS)
    if load.errors:
        log.warning("load run had errors config=%s route=%s", target.config, route)
    return Run(
        repeat=repeat,
        config=target.config,
        route=route,
        load=load,
        worker_cpu_us_per_request=worker_used / max(load.requests, 1) * 1e6,
        worker_cpu=worker_used / max(load.seconds, 1e-9),
        sink_cpu=sink_used / max(load.seconds, 1e-9),
        other_cpu=other_cpu,
    )


def summarise(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per route and configuration: spreads of each figure and of its ratio to off."""
    summary: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        summary[route] = {
            config: _summarise_one([r for r in runs if r.route == route], config)
            for config in CONFIGS
        }
    return summary


def _summarise_one(runs: list[Run], config: str) -> dict[str, Any]:
    mine = {r.repeat: r for r in runs if r.config == config}
    off = {r.repeat: r for r in runs if r.config == "off"}
    figures = {
        "rps": lambda r: r.load.rps,
        "p50_ms": lambda r: r.load.p50_ms,
        "p99_ms": lambda r: r.load.p99_ms,
        "cpu_us": lambda r: r.worker_cpu_us_per_request,
    }
    result: dict[str, Any] = {}
    for name, figure in figures.items():
        result[name] = Spread.of([figure(r) for r in mine.values()]).as_dict()
        ratios = [figure(mine[k]) / figure(off[k]) for k in mine if figure(off[k])]
        result[f"{name}_ratio"] = Spread.of(ratios).as_dict()
    result["requests"] = sum(r.load.requests for r in mine.values())
    result["errors"] = sum(r.load.errors for r in mine.values())
    result["generator_cpu_max"] = max(r.load.generator_cpu for r in mine.values())
    result["other_cpu_max"] = max(r.other_cpu for r in mine.values())
    result["worker_cpu_median"] = Spread.of(
        [r.worker_cpu for r in mine.values()]
    ).median
    result["sink_cpu_max"] = max(r.sink_cpu for r in mine.values())
    return result


def _sink_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per configuration: what its project received during the measured runs."""
    deltas = {}
    for project, config in enumerate(CONFIGS, start=1):
        old, new = before.get(str(project), {}), after.get(str(project), {})
        if not new:
            continue
        old_items, old_discarded = old.get("items", {}), old.get("discarded", {})
        deltas[config] = {
            "envelopes": new["envelopes"] - old.get("envelopes", 0),
            "transactions": new["items"].get("transaction", 0)
            - old_items.get("transaction", 0),
            # the SDK's own count of what it dropped: sampled out, queue full...
            "discarded": {
                reason: count - old_discarded.get(reason, 0)
                for reason, count in new.get("discarded", {}).items()
                if count > old_discarded.get(reason, 0)
            },
        }
    return deltas
