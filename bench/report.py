"""The benchmark's results as a plain-text table for the terminal and as Markdown."""

from __future__ import annotations

from typing import Any

from bench.common import spread
from bench.overhead import CONFIGS, ROUTES
from bench.targets import MET, MISSED, NOT_MEASURED, Verdict

_STATUS = {MET: "met", MISSED: "MISSED"}


def text_report(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    sections = [
        _header(results),
        _overhead_text(results.get("overhead"), results.get("generator") or {}),
        _cost_text(results.get("cost")),
        _delivery_text(results.get("delivery")),
        _sse_text(results.get("sse")),
        _suite_text(results.get("suite") or {}),
        _targets_text(verdicts),
    ]
    return "\n\n".join(sections) + "\n"


def _header(results: dict[str, Any]) -> str:
    machine = results["machine"]
    return "\n".join(
        [
            f"Agented bench, {results['timestamp']}, "
            f"took {results['wall_seconds']:.0f} s",
            f"machine: {_machine_line(machine)}",
            f"other work on the machine: {machine['busy_cores_before']:.2f} cores "
            f"before the start, {_other_range(results)} during the phases "
            f"(of {machine['nproc']})",
            "figures: median [min, max] over the repeats; a ratio is taken against "
            '"off" in the same repeat, then summarised',
        ]
    )


def _other_range(results: dict[str, Any]) -> str:
    """The least and most CPU other processes used, averaged per phase."""
    phases = [results.get(n) for n in ("overhead", "cost", "delivery", "sse")]
    phases += list((results.get("suite") or {}).values())
    cores = [p["other_cores"] for p in phases if p and "other_cores" in p]
    if not cores:
        return "unknown"
    return f"{min(cores):.2f} to {max(cores):.2f} cores"


def _machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['nproc']} cores, {machine['cpu_model']}, "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, "
        f"Python {machine['python']}"
    )


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _overhead_text(overhead: dict[str, Any] | None, generator: dict[str, Any]) -> str:
    title = "1. Overhead: Gunicorn gevent (1 worker), loaded over loopback"
    if not overhead or "summary" not in overhead:
        return f"{title}\n  not measured: {_why(overhead)}"
    rows = [["route", "sentry", "req/s", "ratio", "p50 ms", "ratio", "p99 ms"]]
    rows[0] += ["ratio", "worker CPU us/req"]
    for route in ROUTES:
        for config in CONFIGS:
            cell = overhead["summary"][route][config]
            rows.append(
                [
                    route if config == "off" else "",
                    config,
                    spread(cell["rps"]),
                    _ratio(cell["rps_ratio"], config),
                    spread(cell["p50_ms"], "{:.1f}"),
                    _ratio(cell["p50_ms_ratio"], config),
                    spread(cell["p99_ms"]),
                    _ratio(cell["p99_ms_ratio"], config),
                    spread(cell["cpu_us"]),
                ]
            )
    lines = [title, *("  " + line for line in _table(rows))]
    lines += _overhead_notes(overhead, generator)
    lines.append(_other(overhead))
    return "\n".join(lines)


def _ratio(figure: dict[str, Any], config: str) -> str:
    # "off" against itself is 1 by definition; a spread there would only be noise
    return "1" if config == "off" else spread(figure, "{:.2f}")


def _overhead_notes(overhead: dict[str, Any], generator: dict[str, Any]) -> list[str]:
    summary = overhead["summary"]
    worker = max(c["worker_cpu_median"] for r in summary.values() for c in r.values())
    notes = [
        f"  load: {overhead['generator']}, {overhead['connections']} connections, "
        f"{overhead['repeats']} repeats x {overhead['seconds_per_run']:.0f} s per "
        "cell, configurations interleaved",
        f"  generator: ceiling {generator.get('ceiling_rps', 0):.0f} req/s against "
        "a do-nothing loopback server; used at most "
        f"{_max_generator_cpu(summary):.2f} core while the worker used up to "
        f"{worker:.2f}",
        "  other work on the machine during a load run: up to "
        f"{_max_other_cpu(summary):.2f} cores (0: both cores were ours)",
    ]
    for config, sink in overhead["sink"].items():
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(sink["discarded"].items()))
        notes.append(
            f"  sink, sentry {config}: {sink['transactions']} transactions received; "
            f"SDK dropped: {dropped or 'nothing'}"
        )
    return notes


def _max_other_cpu(summary: dict[str, Any]) -> float:
    return max(c["other_cpu_max"] for r in summary.values() for c in r.values())


def _cost_text(cost: dict[str, Any] | None) -> str:
    title = "1b. CPU per request in one process, no HTTP (what the SDK itself adds)"
    if not cost or "error" in cost:
        return f"{title}\n  not measured: {_why(cost)}"
    rows = [["route", "sentry", "CPU us/req", "added by Sentry, us/req"]]
    for route, configs in cost["routes"].items():
        for config, cell in configs.items():
            rows.append(
                [
                    route if config == "off" else "",
                    config,
                    spread(cell["cpu_us"]),
                    "" if config == "off" else spread(cell["added_us"]),
                ]
            )
    note = (
        f"  {cost['requests']} WSGI calls per cell under gevent's patching, "
        f"{cost['rounds']} rounds, configurations in turn in one process"
    )
    return "\n".join(
        [title, *("  " + line for line in _table(rows)), note, _other(cost)]
    )


def _max_generator_cpu(summary: dict[str, Any]) -> float:
    return max(c["generator_cpu_max"] for r in summary.values() for c in r.values())


def _delivery_text(delivery: dict[str, Any] | None) -> str:
    title = "2. Delivery: unhandled exception -> event retrievable on Bugsink"
    if not delivery or "error" in delivery:
        return f"{title}\n  not measured: {_why(delivery)}"
    rows = [["digest", "p50 s", "p95 s", "max s", "delivered", "missing"]]
    rows[0].append("cold start: first events, s")
    for mode, figures in delivery["modes"].items():
        rows.append(
            [
                mode,
                f"{figures['p50_s']:.2f}",
                f"{figures['p95_s']:.2f}",
                f"{figures['max_s']:.2f}",
                str(figures["delivered"]),
                str(figures["missing"]),
                " ".join(f"{v:.2f}" for v in figures["cold_start_s"]),
            ]
        )
    notes = [
        f"  {delivery['events']} errors per mode at {delivery['per_second']:.0f}/s; "
        f"lookup polled every {delivery['poll_interval_s']:.1f} s (the resolution); "
        f"Bugsink {delivery['bugsink_version']} started in "
        f"{delivery['bugsink_startup_s']:.0f} s"
    ]
    notes.append(_other(delivery))
    return "\n".join([title, *("  " + line for line in _table(rows)), *notes])


def _sse_text(sse: dict[str, Any] | None) -> str:
    title = "3. SSE: one execution to many subscribers, Sentry on at 1.0"
    if not sse or "error" in sse:
        return f"{title}\n  not measured: {_why(sse)}"
    first = sse["runs"][0]
    rows = [
        ["lines delivered/s (all subscribers)", spread(sse["lines_per_second"])],
        ["go -> every subscriber complete, s", spread(sse["seconds"], "{:.1f}")],
        [
            "go -> first line at a subscriber, s",
            spread(sse["first_line_seconds"], "{:.1f}"),
        ],
        [
            "/health/liveness worst latency meanwhile, ms",
            spread(sse["liveness_max_ms"]),
        ],
        ["worker CPU during the run, cores", spread(sse["worker_cpu"], "{:.2f}")],
        [
            "worker RSS before -> after, MiB",
            f"{sse['rss_before_kib'] / 1024:.1f} -> {sse['rss_after_kib'] / 1024:.1f}"
            f" ({sse['rss_growth_total_kib'] / 1024:+.1f})",
        ],
        ["stream transactions at the sink", str(sse["stream_transactions"])],
        ["every subscriber got every line", "yes" if sse["all_lines"] else "NO"],
    ]
    head = (
        f"  {first['lines']} lines x {first['subscribers']} subscribers, "
        f"{len(sse['runs'])} runs after a warm-up"
    )
    rows = [*("  " + line for line in _table(rows))]
    return "\n".join([title, head, *rows, _other(sse)])


def _suite_text(suite: dict[str, Any]) -> str:
    lines = ["4. Test suite wall time"]
    for marker in ("sanity", "proxy"):
        level = suite.get(marker)
        if level is None:
            lines.append(f"  pytest -m {marker}: not measured this run: pass --suite")
            continue
        if "error" in level:
            lines.append(f"  pytest -m {marker}: not measured: {level['error']}")
            continue
        summary = level["runs"][-1]["summary"]
        lines.append(
            f"  pytest -m {marker}: {spread(level['seconds'], '{:.1f}')} s "
            f"({len(level['runs'])} runs; last: {summary}; other work on the "
            f"machine: {level['other_cores']:.2f} cores)"
        )
    return "\n".join(lines)


def _targets_text(verdicts: list[Verdict]) -> str:
    rows = [["", "target", "measured", ""]]
    for v in verdicts:
        status = _STATUS.get(v.status, v.status)
        # a note replaces "not measured", which it explains
        shown = v.note if v.note and v.status == NOT_MEASURED else status
        if v.note and v.status != NOT_MEASURED:
            shown = f"{status}: {v.note}"
        rows.append([v.name, v.target, v.shown, shown])
    return "\n".join(["Targets", *("  " + line for line in _table(rows))])


def _other(phase: dict[str, Any]) -> str:
    return (
        f"  other work on the machine during this phase: {phase['other_cores']:.2f}"
        " cores on average"
    )


def _why(phase: dict[str, Any] | None) -> str:
    if phase is None:
        return "skipped"
    return str(phase.get("error", "unknown"))


def markdown_report(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    """The README's table: every target and the main figures, with the machine."""
    machine = results["machine"]
    date = results["timestamp"][:10]
    lines = [
        f"Measured {date} by `make bench` on {_machine_line(machine)}. Other work "
        f"on the machine used {_other_range(results)} during the phases.",
        "",
        "| Figure | Measured (median [min, max]) | Target | Status |",
        "|---|---|---|---|",
    ]
    lines += [_markdown_row(v) for v in verdicts]
    lines += ["", *_markdown_figures(results)]
    return "\n".join(lines) + "\n"


def _markdown_row(verdict: Verdict) -> str:
    status = _STATUS.get(verdict.status, verdict.status)
    if verdict.note:
        is_reason = verdict.status == NOT_MEASURED
        status = verdict.note if is_reason else f"{status}: {verdict.note}"
    return f"| {verdict.name} | {verdict.shown} | {verdict.target} | {status} |"


def _markdown_figures(results: dict[str, Any]) -> list[str]:
    overhead = results.get("overhead") or {}
    if "summary" not in overhead:
        return []
    lines = [
        "| Route | Sentry | req/s | ratio | p50 ms | ratio | p99 ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    columns = [
        ("rps", "{:.0f}"),
        ("rps_ratio", "{:.2f}"),
        ("p50_ms", "{:.1f}"),
        ("p50_ms_ratio", "{:.2f}"),
        ("p99_ms", "{:.1f}"),
        ("p99_ms_ratio", "{:.2f}"),
    ]
    for route in ROUTES:
        for config in CONFIGS:
            cell = overhead["summary"][route][config]
            cells = [
                _ratio(cell[key], config)
                if key.endswith("ratio")
                else spread(cell[key], fmt)
                for key, fmt in columns
            ]
            lines.append(f"| {route} | {config} | {' | '.join(cells)} |")
    return [*lines, "", *_markdown_cost(results.get("cost") or {})]


def _markdown_cost(cost: dict[str, Any]) -> list[str]:
    if "routes" not in cost:
        return []
    configs = [c for c in next(iter(cost["routes"].values())) if c != "off"]
    lines = [
        "| CPU us per request, in-process | off | "
        + " | ".join(f"added at {c}" for c in configs)
        + " |",
        "|---" * (len(configs) + 2) + "|",
    ]
    for route, cells in cost["routes"].items():
        added = [spread(cells[c]["added_us"]) for c in configs]
        lines.append(
            f"| {route} | {spread(cells['off']['cpu_us'])} | {' | '.join(added)} |"
        )
    return lines
