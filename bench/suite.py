"""Wall time of the test suite's levels, each run as `make sanity` / `make proxy` would.

pytest runs from the project's venv in the repository root; the truth-table plugin
is blocked so a timing run does not overwrite reports/ from someone's last
`make verify`, and the cache provider so it leaves no state for the next run.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Spread

REPO = Path(__file__).resolve().parents[1]
TIMEOUTS = {"sanity": 300.0, "proxy": 900.0}
_SUMMARY = re.compile(r"^=*\s*(\d+ (passed|failed|error).*?) in [\d.]+s", re.MULTILINE)


def time_level(marker: str, repeats: int) -> dict[str, Any]:
    """Run `pytest -m marker` `repeats` times; wall times and pytest's summaries."""
    runs = [_one_run(marker) for _ in range(repeats)]
    return {
        "marker": marker,
        "command": " ".join(_argv(marker)[1:]),
        "seconds": Spread.of([r["seconds"] for r in runs]).as_dict(),
        "all_passed": all(r["exit_code"] == 0 for r in runs),
        "runs": runs,
    }


def _argv(marker: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        marker,
        "-q",
        "-p",
        "no:truth-table",
        "-p",
        "no:cacheprovider",
    ]


def _one_run(marker: str) -> dict[str, Any]:
    started = time.monotonic()
    result = subprocess.run(
        _argv(marker),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUTS[marker],
        check=False,
    )
    seconds = time.monotonic() - started
    found = _SUMMARY.search(result.stdout)
    return {
        "seconds": seconds,
        "exit_code": result.returncode,
        "summary": found.group(1) if found else result.stdout.strip()[-200:],
    }
