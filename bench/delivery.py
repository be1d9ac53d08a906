"""Delivery: how long from a failing request until its event can be read on Bugsink.

Bugsink digests an event either inside its ingest request (eager) or later in its
background worker (snappea); both are measured, each against its own server, one
after the other so they do not share the CPU. Errors arrive at a fixed rate (open
loop), each timed in its own thread from sending the request to the lookup by
event id succeeding. The lookup is polled every 0.1 s (the helper's interval), so
each figure may be up to that much late: the resolution of this measurement.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from bench.common import Spread, percentile
from tests.support.bugsink import BUGSINK_VERSION, BugsinkServer, Project
from tests.support.servers import GunicornServer

log = logging.getLogger("bench.delivery")

MODES = {"eager": True, "background": False}
_EVENT_TIMEOUT = 30.0
_MAX_IN_FLIGHT = 32
# Bugsink's Gunicorn workers import much of Django on their first requests: the
# first few events of a fresh server are slow for that alone, so they are sent
# first, reported apart as the cold start, and left out of the figures
_WARM_UP_EVENTS = 10


def measure_delivery(workdir: Path, events: int, per_second: float) -> dict[str, Any]:
    """Start both Bugsinks, then time `events` errors against each in turn."""
    with ExitStack() as stack:
        sinks = {
            mode: BugsinkServer(workdir / f"bugsink-{mode}", eager_digest=eager)
            for mode, eager in MODES.items()
        }
        for sink in sinks.values():
            stack.callback(sink.stop)
        started = time.monotonic()
        _start_all(list(sinks.values()))
        startup = time.monotonic() - started

        results = {
            mode: _measure_mode(workdir / f"server-{mode}", sink, events, per_second)
            for mode, sink in sinks.items()
        }
    return {
        "modes": results,
        "bugsink_version": BUGSINK_VERSION,
        "bugsink_startup_s": startup,
        "events": events,
        "per_second": per_second,
        "poll_interval_s": 0.1,
    }


def _start_all(sinks: list[BugsinkServer]) -> None:
    with ThreadPoolExecutor(max_workers=len(sinks)) as pool:
        for future in [pool.submit(sink.start) for sink in sinks]:
            future.result()


def _measure_mode(
    workdir: Path, bugsink: BugsinkServer, events: int, per_second: float
) -> dict[str, Any]:
    project = bugsink.create_project(f"bench-{workdir.name}")
    env = {"SENTRY_DSN": project.dsn, "AGENTED_DEBUG_ROUTES": "1"}
    with GunicornServer(workdir, env) as server:
        cold, _ = _paced_events(
            server.url, bugsink, project, _WARM_UP_EVENTS, per_second
        )
        latencies, missing = _paced_events(
            server.url, bugsink, project, events, per_second
        )
    return {
        "cold_start_s": [round(v, 4) for v in cold],
        "latency_s": Spread.of(latencies).as_dict(),
        "p50_s": percentile(latencies, 0.50),
        "p95_s": percentile(latencies, 0.95),
        "max_s": max(latencies, default=float("nan")),
        "delivered": len(latencies),
        "missing": missing,
        "latencies_s": [round(v, 4) for v in latencies],  # in the order sent
    }


def _paced_events(
    url: str, bugsink: BugsinkServer, project: Project, events: int, per_second: float
) -> tuple[list[float], int]:
    """Send `events` errors at `per_second`; their latencies and how many never came."""
    futures: list[Future[float]] = []
    start = time.monotonic()
    # each event's clock starts when its thread sends it, so a full pool delays
    # the sending, never the figure
    with ThreadPoolExecutor(max_workers=_MAX_IN_FLIGHT) as pool:
        for n in range(events):
            time.sleep(max(0.0, start + n / per_second - time.monotonic()))
            futures.append(pool.submit(_one_event, url, bugsink, project))
    latencies, missing = [], 0
    for future in futures:
        try:
            latencies.append(future.result(timeout=0))
        except (OSError, TimeoutError, requests.RequestException, KeyError) as exc:
            log.warning("event not delivered: %s", exc)
            missing += 1
    return latencies, missing


def _one_event(url: str, bugsink: BugsinkServer, project: Project) -> float:
    started = time.perf_counter()
    response = requests.post(f"{url}/admin/debug/raise", timeout=10)
    event_id = response.json()["event_id"]
    bugsink.wait_for_event(project, event_id, timeout=_EVENT_TIMEOUT)
    return time.perf_counter() - started
