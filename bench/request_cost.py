"""CPU per request in one process, Sentry off and on in turn: where the cost goes.

No server and no sockets for the requests: each one is a WSGI call with a fixed
environ, under gevent's monkey patching as in the Gunicorn worker, so what differs
between configurations is the SDK's own work. Transactions go to the bench's
loopback sink; the SDK's sending is charged to the configuration that queued it.

    python bench/request_cost.py                    # a table, CPU us per request
    python bench/request_cost.py --json             # the same as one JSON line
    python bench/request_cost.py --profile 0.1      # cProfile of one configuration

`main()` patches the standard library for gevent before it imports the app, so it
runs in a process of its own; `measure_request_cost` starts that process.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# run as a script, Python puts bench/ first on the path: swap it for the repository
# root (bench) and backend/ (app), as pytest's pythonpath does
if sys.path[0] == str(Path(__file__).resolve().parent):
    sys.path[0:1] = [str(REPO), str(REPO / "backend")]

from bench.common import Spread  # noqa: E402 - stdlib only, safe before gevent

CONFIGS: dict[str, float | None] = {"off": None, "0": 0.0, "0.1": 0.1, "1.0": 1.0}
_WARM_UP = 300
_FLUSH_TIMEOUT = 10.0
_RUN_TIMEOUT = 300.0


def measure_request_cost(
    routes: dict[str, str], requests: int, rounds: int
) -> dict[str, Any]:
    """Per route and configuration: CPU us per request, and what Sentry adds to it.

    What it adds is taken against "off" within the same round, then summarised.
    """
    cost: dict[str, Any] = {"requests": requests, "rounds": rounds, "routes": {}}
    for name, path in routes.items():
        per_config = _run_self(path, requests, rounds)["cpu_us"]
        off = per_config["off"]
        cost["routes"][name] = {
            config: {
                "cpu_us": Spread.of(values).as_dict(),
                "added_us": Spread.of(
                    [v - o for v, o in zip(values, off, strict=True)]
                ).as_dict(),
            }
            for config, values in per_config.items()
        }
    return cost


def _run_self(route: str, requests: int, rounds: int) -> dict[str, Any]:
    """This script's --json figures for one route, from a process of its own."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--json", "--route", route]
    argv += ["--requests", str(requests), "--rounds", str(rounds)]
    result = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_RUN_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"request_cost.py exited {result.returncode}: "
            f"{result.stderr.strip()[-500:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    args = _parse()
    # the worker's order: gevent patches first, then the app and the SDK are imported
    from gevent import monkey

    monkey.patch_all()
    from bench.sink import DiscardSink

    with DiscardSink() as sink, tempfile.TemporaryDirectory() as tmp:
        bench = _InProcess(Path(tmp), sink.dsn(1), args.route)
        if args.profile is not None:
            bench.profile(args.profile, args.requests)
            return 0
        cost = bench.compare(args.requests, args.rounds)
    cost["route"] = args.route
    print(json.dumps(cost) if args.json else _table(cost))
    return 0


class _InProcess:
    """One app, its SDK client switched between configurations."""

    def __init__(self, workdir: Path, dsn: str, route: str) -> None:
        from app.factory import create_app
        from app.logs import configure_logging

        configure_logging("text", "WARNING")
        self.dsn = dsn
        self.app = create_app({"AGENTED_DB_PATH": str(workdir / "agented.db")})
        self.route = route
        self._seed()

    def compare(self, requests: int, rounds: int) -> dict[str, Any]:
        """Every configuration in turn, `rounds` times; CPU us per request each."""
        per_config: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for n in range(rounds):
            names = list(CONFIGS)
            for name in names[n % len(names) :] + names[: n % len(names)]:
                per_config[name].append(self._cpu_per_request(name, requests))
        self._switch(
            "off"
        )  # the last client sends its final reports while the sink runs
        medians = {k: sorted(v)[len(v) // 2] for k, v in per_config.items()}
        return {
            "requests": requests,
            "rounds": rounds,
            "cpu_us": per_config,
            "cpu_us_median": medians,
            "added_us_median": {k: v - medians["off"] for k, v in medians.items()},
        }

    def profile(self, config: str, requests: int) -> None:
        import cProfile
        import pstats

        self._switch(config)
        self._requests(_WARM_UP)
        profiler = cProfile.Profile()
        profiler.runcall(self._requests, requests)
        stats = pstats.Stats(profiler).sort_stats("cumulative")
        stats.print_stats("sentry_sdk|error_tracking", 30)
        self._switch("off")

    def _cpu_per_request(self, config: str, requests: int) -> float:
        self._switch(config)
        self._requests(_WARM_UP)
        self._flush()
        started = time.process_time()
        self._requests(requests)
        self._flush()
        return (time.process_time() - started) / requests * 1e6

    def _switch(self, config: str) -> None:
        import sentry_sdk

        from app.error_tracking import init_error_tracking
        from app.settings import SentrySettings

        client = sentry_sdk.get_client()
        if client.is_active():
            client.close(timeout=_FLUSH_TIMEOUT)
        sentry_sdk.get_global_scope().set_client(None)
        rate = CONFIGS[config]
        if rate is not None:
            settings = SentrySettings(self.dsn, rate, "bench", "agented@bench")
            init_error_tracking(settings)

    def _flush(self) -> None:
        import sentry_sdk

        sentry_sdk.flush(timeout=_FLUSH_TIMEOUT)

    def _requests(self, count: int) -> None:
        import gevent

        call = _wsgi_call(self.app, self.route)
        for _ in range(count):
            call()
            gevent.sleep(
                0
            )  # the SDK's sender runs when a request yields, as in a worker

    def _seed(self) -> None:
        """Executions for GET /admin/executions to list, as the overhead phase has."""
        store = self.app.extensions["agented"].executions
        for n in range(20):
            store.create("command", f"seed {n}", ["true"], None)


def _wsgi_call(app: Any, path: str) -> Callable[[], None]:
    def start_response(status: str, headers: list, exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(f"{path} answered {status}")

    def call() -> None:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "20000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "127.0.0.1:20000",
            "HTTP_USER_AGENT": "bench-loadgen",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        body = app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            getattr(body, "close", lambda: None)()

    return call


def _table(cost: dict[str, Any]) -> str:
    lines = [f"{cost['route']}: CPU us per request, {cost['rounds']} rounds"]
    for name, values in cost["cpu_us"].items():
        shown = " ".join(f"{v:.0f}" for v in values)
        added = cost["added_us_median"][name]
        lines.append(
            f"  {name:>4}: median {cost['cpu_us_median'][name]:.0f} "
            f"(+{added:.0f} over off)  runs: {shown}"
        )
    return "\n".join(lines)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", default="/health/liveness")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", choices=list(CONFIGS), default=None)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main())
