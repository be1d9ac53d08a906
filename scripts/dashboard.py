"""Run a local Bugsink for Agented's errors until Ctrl-C: `python scripts/dashboard.py`.

Starts Bugsink on 127.0.0.1 in a new folder under `.dashboard/` (removed after a clean
stop, kept after a failure for its log), creates the project "agented-dev" and prints
the UI address, its login and the SENTRY_DSN line for `.env`. Each run starts empty,
so the DSN changes on each run.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # run as a file, so the repo is not on the path

from tests.support.bugsink import (  # noqa: E402
    BUGSINK_VERSION,
    BugsinkServer,
    BugsinkUnavailable,
)

DASHBOARD_DIR = REPO_ROOT / ".dashboard"
PROJECT_NAME = "agented-dev"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)"
    )
    return parser.parse_args(argv)


def interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds as Ctrl-C does, so the server's context manager stops Bugsink;
    # SIGINT is set too, since a shell starts background jobs with it ignored
    raise KeyboardInterrupt


def print_banner(server: BugsinkServer, dsn: str) -> None:
    user, password = server.login or ("-", "-")
    log = server.log_path.relative_to(REPO_ROOT)
    print(f"Bugsink {BUGSINK_VERSION} is running at {server.url}")
    print(f"  login: {user} / {password}")
    print(f"  log:   {log}")
    print(f"Paste into .env (project {PROJECT_NAME}):")
    print(f"SENTRY_DSN={dsn}")
    print("Ctrl-C stops it.", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)

    # a folder of its own per run, so a second dashboard never touches the first
    DASHBOARD_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bugsink-", dir=DASHBOARD_DIR))
    print(f"Starting Bugsink in {workdir.relative_to(REPO_ROOT)} ...", flush=True)

    try:
        with BugsinkServer(workdir, port=args.port) as server:
            project = server.create_project(PROJECT_NAME)
            print_banner(server, project.dsn)
            while True:
                server.ensure_running()
                time.sleep(1.0)
    except BugsinkUnavailable as error:
        print(f"Bugsink stopped or could not start: {error}", file=sys.stderr)
        print(f"Its folder is kept: {workdir.relative_to(REPO_ROOT)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    shutil.rmtree(workdir, ignore_errors=True)
    print("Bugsink stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
