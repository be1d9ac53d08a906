"""The real backend under Gunicorn's gevent worker, as a subprocess on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
_WORKER = re.compile(r"Booting worker with pid: (\d+)")


def _graceful_timeout() -> float:
    """graceful_timeout as backend/gunicorn.conf.py sets it; read, not imported,
    since importing the config validates this process's environment."""
    conf = (REPO / "backend" / "gunicorn.conf.py").read_text()
    found = re.search(r"^graceful_timeout = (\d+)", conf, re.MULTILINE)
    if found is None:
        raise RuntimeError("backend/gunicorn.conf.py sets no graceful_timeout")
    return float(found.group(1))


# how long Gunicorn lets a stopping worker finish before it kills it
GRACEFUL_TIMEOUT = _graceful_timeout()
# what a child needs from our environment; nothing of the developer's settings
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")


# servers told to quit at a test's teardown, waited for by `reap_quitting`
_QUITTING: list[GunicornServer] = []


def reap_quitting(timeout: float = 30.0) -> None:
    """Wait for every server `quit_later` was called on; SIGKILL past the deadline."""
    deadline = time.monotonic() + timeout
    while _QUITTING:
        server = _QUITTING.pop()
        server.stop(max(0.1, deadline - time.monotonic()), graceful=False)


class ServerFailed(RuntimeError):
    """The server did not come up; the message ends with its log."""


class GunicornServer:
    """`gunicorn -c backend/gunicorn.conf.py` on a free port, stopped on exit."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.log_path = workdir / "gunicorn.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k in _INHERITED},
            "GUNICORN_BIND": "127.0.0.1:0",
            "AGENTED_DB_PATH": str(workdir / "agented.db"),
            "AGENTED_ENV_FILE": str(workdir / "absent.env"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def __enter__(self) -> GunicornServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(graceful=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "backend/gunicorn.conf.py"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        try:
            self.port = int(self._wait_for_log(_LISTENING, deadline).group(1))
            self._wait_until_ready(deadline)
        except BaseException:
            # `with` never reaches __exit__ when __enter__ raises
            self.stop(graceful=False)
            raise

    def stop(self, timeout: float = 30.0, *, graceful: bool = True) -> int | None:
        """Stop and wait; SIGKILL past the deadline.

        graceful: SIGTERM, what a deploy sends: the worker finishes its requests,
        then exits (and the SDK flushes). Gunicorn's gevent worker looks at its
        flag once a second, so this takes ~1.3 s even when idle. Otherwise SIGQUIT:
        the worker exits at once, in ~0.4 s, and its atexit flush may be cut short
        with a traceback; only for teardown of tests that look neither at shutdown
        nor at the log it leaves.
        """
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.signal_stop(graceful=graceful)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def signal_stop(self, *, graceful: bool = True) -> None:
        """Ask the server to stop (as `stop` does) without waiting for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if graceful else signal.SIGQUIT)

    def quit_later(self) -> None:
        """SIGQUIT now; `reap_quitting` waits for the exit (~0.4 s) later on.

        For teardown of tests that look neither at shutdown nor at the log: the
        next test need not wait for this server to be gone.
        """
        self.signal_stop(graceful=False)
        _QUITTING.append(self)

    def timed_stop(self, timeout: float) -> tuple[int | None, float]:
        """A graceful stop: its exit code and how many seconds it took."""
        started = time.monotonic()
        exit_code = self.stop(timeout=timeout)
        return exit_code, time.monotonic() - started

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in _WORKER.findall(self.log())]

    def _wait_for_log(self, pattern: re.Pattern[str], deadline: float) -> re.Match[str]:
        while time.monotonic() < deadline:
            found = pattern.search(self.log())
            if found:
                return found
            self._fail_if_exited()
            time.sleep(0.05)
        raise ServerFailed(f"no {pattern.pattern!r} in time\n{self.log()}")

    def _wait_until_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self._fail_if_exited()
            try:
                if requests.get(f"{self.url}/health/readiness", timeout=2).ok:
                    return
            except requests.RequestException:  # not up yet, or slow to answer
                pass
            time.sleep(0.1)
        raise ServerFailed(f"/health/readiness never answered 200\n{self.log()}")

    def _fail_if_exited(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerFailed(
                f"gunicorn exited with {self.proc.returncode}\n{self.log()}"
            )
