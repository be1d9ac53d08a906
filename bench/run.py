"""`make bench`: what error tracking costs, measured side by side in one run.

Phases run one after the other so they never share the two cores: request overhead
with Sentry off and on (sampling 0, 0.1, 1.0) under load, the CPU each request
costs in-process (where the overhead goes), delivery of errors to a real Bugsink,
SSE fan-out with Sentry on, and the test suite's wall time. Prints a table with
every target met or missed and writes bench/results.json.

    python bench/run.py            # the default run, under 10 minutes
    python bench/run.py --suite    # also times `pytest -m proxy` (minutes more)
    python bench/run.py --quick    # every phase, briefly: checks the bench itself
    python bench/run.py --markdown # the README table of the last results.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# run as a script, Python puts bench/ first on the path: swap it for the repository
# root (bench, tests) and backend/ (app), as pytest's pythonpath does
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path[0:1] = [str(REPO), str(REPO / "backend")]

from bench.common import (  # noqa: E402
    OtherWork,
    busy_cores,
    load_average,
    machine_facts,
)
from bench.delivery import measure_delivery  # noqa: E402
from bench.load import LoadGenerator, measure_ceiling  # noqa: E402
from bench.overhead import ROUTES, measure_overhead  # noqa: E402
from bench.report import markdown_report, text_report  # noqa: E402
from bench.request_cost import measure_request_cost  # noqa: E402
from bench.sse import measure_sse  # noqa: E402
from bench.suite import time_level  # noqa: E402
from bench.targets import judge  # noqa: E402

log = logging.getLogger("bench")

RESULTS = REPO / "bench" / "results.json"
# more than this many cores busy before the start means the machine is shared
_BUSY_WARNING = 0.25
_QUICK = {
    "repeats": 1,
    "seconds": 1.0,
    "events": 20,
    "lines": 1000,
    "cost_requests": 300,
    "sse_repeats": 1,
    "suite_repeats": 1,
}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.markdown:
        return _print_markdown(args.output)
    _find_uv()

    started = time.monotonic()
    results = _measure(args)
    results["wall_seconds"] = time.monotonic() - started

    verdicts = judge(results)
    results["targets"] = [v.as_dict() for v in verdicts]
    results["markdown"] = markdown_report(results, verdicts)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(text_report(results, verdicts), end="")
    print(f"written to {args.output}", flush=True)
    failed = [name for name, phase in _phases(results) if "error" in phase]
    return 1 if failed else 0


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "output"},
    }
    generator = LoadGenerator(args.connections)
    with tempfile.TemporaryDirectory(prefix="agented-bench-") as tmp:
        workdir = Path(tmp)
        results["generator"] = _phase(
            "generator", lambda: _generator_check(generator, args.seconds)
        )
        results["overhead"] = _phase(
            "overhead",
            lambda: measure_overhead(
                workdir / "overhead", generator, args.repeats, args.seconds
            ),
        )
        results["cost"] = _phase(
            "cost",
            lambda: measure_request_cost(ROUTES, args.cost_requests, args.repeats),
        )
        results["delivery"] = _phase(
            "delivery",
            lambda: measure_delivery(workdir / "delivery", args.events, args.rate),
        )
        results["sse"] = _phase(
            "sse",
            lambda: measure_sse(
                workdir / "sse", args.lines, args.subscribers, args.sse_repeats
            ),
        )
    results["suite"] = {
        "sanity": _phase("sanity", lambda: time_level("sanity", args.suite_repeats)),
        "proxy": _phase("proxy", lambda: time_level("proxy", 1))
        if args.suite
        else None,
    }
    return results


def _machine() -> dict[str, Any]:
    facts = machine_facts()
    facts["busy_cores_before"] = busy_cores(1.0)
    facts["load_average_before"] = load_average()[0]
    if facts["busy_cores_before"] > _BUSY_WARNING:
        log.warning(
            "machine busy before the start; figures will be disturbed busy_cores=%.2f",
            facts["busy_cores_before"],
        )
    return facts


def _generator_check(generator: LoadGenerator, seconds: float) -> dict[str, Any]:
    ceiling = measure_ceiling(generator, seconds)
    return {
        "name": generator.name,
        "connections": generator.connections,
        "ceiling_rps": ceiling.rps,
        "ceiling_cpu": ceiling.generator_cpu,
        "ceiling": ceiling.as_dict(),
    }


def _phase(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one phase; a failure is recorded and logged, and the next phase runs."""
    log.info("phase started name=%s", name)
    started, others = time.monotonic(), OtherWork()
    try:
        result = measure()
    except Exception as exc:
        log.exception("phase failed name=%s", name)
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    result["phase_seconds"] = time.monotonic() - started
    result["other_cores"] = others.cores()
    log.info(
        "phase finished name=%s seconds=%.1f other_cores=%.2f",
        name,
        result["phase_seconds"],
        result["other_cores"],
    )
    return result


def _phases(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    names = ("generator", "overhead", "cost", "delivery", "sse")
    phases = [(n, results[n]) for n in names]
    phases += [(n, level) for n, level in results["suite"].items() if level]
    return phases


def _find_uv() -> None:
    """Bugsink is started through uv; under `make` uv may be in .tools/ only."""
    uv = os.environ.get("UV")
    if shutil.which("uv") is None and uv and Path(uv).exists():
        os.environ["PATH"] = f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}"


def _print_markdown(path: Path) -> int:
    if not path.exists():
        print(f"no results at {path}: run `make bench` first", file=sys.stderr)
        return 1
    print(json.loads(path.read_text(encoding="utf-8"))["markdown"], end="")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--suite", action="store_true", help="also time pytest -m proxy (minutes)")
    add("--quick", action="store_true", help="every phase, briefly (not for figures)")
    add("--markdown", action="store_true", help="print the last results as Markdown")
    add("--output", type=Path, default=RESULTS, help="results file (JSON)")
    add("--connections", type=int, default=16, help="load generator connections")
    add("--repeats", type=int, default=3, help="overhead: repeats of every cell")
    add("--seconds", type=float, default=3.0, help="overhead: seconds per cell")
    add("--cost-requests", type=int, default=1000, help="in-process: per round")
    add("--events", type=int, default=200, help="delivery: errors per digest mode")
    add("--rate", type=float, default=10.0, help="delivery: errors per second")
    add("--lines", type=int, default=10_000, help="SSE: lines of the execution")
    add("--subscribers", type=int, default=50, help="SSE: concurrent subscribers")
    add("--sse-repeats", type=int, default=3, help="SSE: measured runs")
    add("--suite-repeats", type=int, default=3, help="sanity: timed runs")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in _QUICK.items():
            setattr(args, name, value)
    return args


if __name__ == "__main__":
    sys.exit(main())
