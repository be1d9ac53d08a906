"""The targets the figures are held to, judged met, missed or not measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import spread

MET, MISSED, NOT_MEASURED = "met", "missed", "not measured"
# RSS is read in KiB; the target is in (decimal) megabytes
_RSS_LIMIT_KIB = 5_000_000 / 1024
# a generator shown not to be the bottleneck reaches at least this multiple of the
# fastest rate measured against the backend
GENERATOR_HEADROOM = 2.0


@dataclass(frozen=True)
class Verdict:
    """One target: what was asked, what was measured, and the judgement."""

    name: str
    target: str
    value: float | None
    shown: str
    status: str
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Every target, in the order of the report; validity checks last."""
    return [
        *_overhead(results.get("overhead")),
        *_delivery(results.get("delivery")),
        *_sse(results.get("sse")),
        *_suite(results.get("suite") or {}),
        *_validity(results),
    ]


def _check(
    name: str,
    target: str,
    value: float | None,
    passes: Callable[[float], bool],
    shown: str,
    note: str = "",
) -> Verdict:
    if value is None:
        return Verdict(name, target, None, "-", NOT_MEASURED, note)
    return Verdict(name, target, value, shown, MET if passes(value) else MISSED, note)


def _overhead(overhead: dict[str, Any] | None) -> list[Verdict]:
    verdicts = []
    for config, limit in (("0.1", 0.97), ("1.0", 0.90)):
        for route in ("liveness", "executions"):
            name = f"overhead {route}: req/s ratio at {config}"
            ratio = None
            if overhead and "summary" in overhead:
                ratio = overhead["summary"][route][config]["rps_ratio"]
            verdicts.append(
                _check(
                    name,
                    f">= {limit:.2f}",
                    ratio["median"] if ratio else None,
                    lambda v, limit=limit: v >= limit,
                    spread(ratio, "{:.2f}"),
                    _error_note(overhead),
                )
            )
    return verdicts


def _delivery(delivery: dict[str, Any] | None) -> list[Verdict]:
    verdicts = []
    for mode in ("eager", "background"):
        value = None
        if delivery and "modes" in delivery:
            value = delivery["modes"][mode]["p95_s"]
        verdicts.append(
            _check(
                f"delivery p95, {mode} digest",
                "< 1 s",
                value,
                lambda v: v < 1.0,
                f"{value:.2f} s" if value is not None else "-",
                _error_note(delivery),
            )
        )
    return verdicts


def _sse(sse: dict[str, Any] | None) -> list[Verdict]:
    measured = bool(sse and "runs" in sse)
    growth = sse["rss_growth_total_kib"] if measured else None
    transactions = sse["stream_transactions"] if measured else None
    note = _error_note(sse)
    return [
        _check(
            "SSE worker RSS growth",
            "< 5 MB",
            growth,
            lambda v: v < _RSS_LIMIT_KIB,
            f"{growth / 1024:+.1f} MiB" if growth is not None else "-",
            note,
        ),
        _check(
            "SSE transactions at the sink",
            "= 0",
            transactions,
            lambda v: v == 0,
            str(transactions),
            note,
        ),
    ]


def _suite(suite: dict[str, Any]) -> list[Verdict]:
    verdicts = []
    for marker, limit in (("sanity", 10.0), ("proxy", 90.0)):
        level = suite.get(marker)
        measured = bool(level and "seconds" in level)
        seconds = level["seconds"] if measured else None
        value = seconds["median"] if seconds else None
        note = _error_note(level) if level else "not measured this run: pass --suite"
        if measured and not level["all_passed"]:
            note = "some runs had failing tests"
        verdicts.append(
            _check(
                f"pytest -m {marker} wall time",
                f"< {limit:.0f} s",
                value,
                lambda v, limit=limit: v < limit,
                f"{spread(seconds, '{:.1f}')} s" if seconds else "-",
                note,
            )
        )
    return verdicts


def _validity(results: dict[str, Any]) -> list[Verdict]:
    """Checks that the figures mean what they claim; listed with the targets."""
    ceiling = (results.get("generator") or {}).get("ceiling_rps")
    overhead = results.get("overhead") or {}
    fastest = max(
        (run["rps"] for run in overhead.get("runs", [])),
        default=None,
    )
    headroom = ceiling / fastest if ceiling and fastest else None
    return [
        _check(
            "load generator not the bottleneck (ceiling / fastest backend rate)",
            f">= {GENERATOR_HEADROOM:.0f}x",
            headroom,
            lambda v: v >= GENERATOR_HEADROOM,
            f"{headroom:.1f}x" if headroom is not None else "-",
        )
    ]


def _error_note(phase: dict[str, Any] | None) -> str:
    if phase is None:
        return "not run"
    return f"failed: {phase['error']}" if "error" in phase else ""
