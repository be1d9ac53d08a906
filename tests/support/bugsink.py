"""A real Bugsink server (Sentry-compatible) on loopback, for proxy tests and dev use.

Bugsink pins its own Django and Gunicorn, so it runs from uv's tool environment and
never from the project's venv; this module itself is stdlib only and imports anywhere.

Every file the server writes (databases, ingest store, wake-up folder, log) lives in
the work folder the caller hands over; only uv's own cache is shared between runs.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

BUGSINK_VERSION = "2.6.2"

_TOOL_SPEC = f"bugsink=={BUGSINK_VERSION}"
_HOST = "127.0.0.1"
_API = "/api/canonical/0"
_HEALTH_PATH = "/health/ready"
_POLL_INTERVAL = 0.1
_REQUEST_TIMEOUT = 10.0
_STOP_GRACE = 10.0
_LOGIN_USER = "admin"

# variables of the caller's shell or venv that Bugsink's settings or Python would read
_FOREIGN_ENV_PREFIXES = ("PYTHON", "VIRTUAL_ENV", "DJANGO_", "SENTRY_", "GUNICORN_")
_FOREIGN_ENV_NAMES = ("PORT", "SECRET_KEY", "DATABASE_PATH", "DATABASE_URL")

_log = logging.getLogger(__name__)


class BugsinkUnavailable(RuntimeError):
    """Bugsink could not be installed or started; the message says why."""


@dataclass(frozen=True)
class Project:
    id: int
    name: str
    dsn: str


# Appended to the file `bugsink-create-conf --template=local` writes. The template
# keeps its single-user defaults; these lines only move every path into the work
# folder, turn off the phone-home ping and choose how events are digested.
# Setting names: bugsink/settings/default.py, bugsink/app_settings.py,
# snappea/settings.py in the bugsink 2.6.2 wheel.
_CONF_OVERRIDES = """

# --- written by tests/support/bugsink.py ---
ALLOWED_HOSTS = [{host!r}, "localhost"]
DATABASES["default"]["NAME"] = {db!r}
DATABASES["default"]["TEST"]["NAME"] = {test_db!r}
DATABASES["snappea"]["NAME"] = {snappea_db!r}
SNAPPEA = {{
    "TASK_ALWAYS_EAGER": {eager!r},
    "WAKEUP_CALLS_DIR": {wakeup_dir!r},
    "PID_FILE": {pid_file!r},
    "NUM_WORKERS": 2,
    "GRACEFUL_TIMEOUT": 5,
}}
BUGSINK["PHONEHOME"] = False
BUGSINK["INGEST_STORE_BASE_DIR"] = {ingest_dir!r}
"""


class BugsinkServer:
    """Bugsink served by its own Gunicorn on 127.0.0.1, with a full-access API token.

    With `eager_digest` (the local template's default) each event is digested inside
    its ingest request; without it the real background worker (`bugsink-runsnappea`)
    runs as a second process and digests from its queue.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        eager_digest: bool = True,
        log_path: Path | None = None,
        port: int = 0,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.eager_digest = eager_digest
        self.log_path = log_path or self.workdir / "bugsink.log"
        self.port = port
        self.url = ""
        self.login: tuple[str, str] | None = None
        self._token = ""
        self._team_id: str | None = None
        self._bin: Path | None = None
        self._log_file: IO[bytes] | None = None
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BugsinkServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------

    def start(self, timeout: float = 300.0) -> None:
        """Install (cached by uv), configure, migrate, serve; return once healthy."""
        deadline = time.monotonic() + timeout
        started_at = time.monotonic()
        self._prepare_workdir()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        atexit.register(self.stop)  # a safety net should a caller's teardown not run
        try:
            self._start_steps(deadline)
        except BugsinkUnavailable as error:
            self.stop()
            raise BugsinkUnavailable(f"{error} (its log: {self.log_path})") from error
        except BaseException:
            self.stop()
            raise
        _log.info(
            "bugsink ready url=%s eager_digest=%s startup_s=%.1f",
            self.url,
            self.eager_digest,
            time.monotonic() - started_at,
        )

    def stop(self) -> None:
        """Stop every process this server started; safe to call more than once."""
        for process in reversed(self._processes):
            _terminate(process)
        self._processes.clear()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        atexit.unregister(self.stop)

    def ensure_running(self) -> None:
        """Raise BugsinkUnavailable if a server process has exited."""
        for process in self._processes:
            if process.poll() is not None:
                raise BugsinkUnavailable(
                    f"{Path(str(process.args[0])).name} exited with "
                    f"{process.returncode}; see {self.log_path}"
                )

    def _start_steps(self, deadline: float) -> None:
        # uv installs on first use, later runs take it from its cache
        self._bin = _locate_tool_scripts(deadline)

        # holding the bound socket from here on means no other process can take the
        # port between choosing it and Gunicorn serving on it
        listener = _bind_listener(self.port)
        try:
            self.port = listener.getsockname()[1]
            self.url = f"http://{_HOST}:{self.port}"
            self._write_conf(deadline)
            self._migrate(deadline)
            self._create_login_and_token(deadline)
            self._serve(listener)
        finally:
            listener.close()  # Gunicorn has its own copy of the descriptor now

        if not self.eager_digest:
            self._spawn("bugsink-runsnappea")
        self._wait_until_healthy(deadline)

    def _prepare_workdir(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if (self.workdir / "db.sqlite3").exists():
            raise ValueError(f"{self.workdir} holds an earlier Bugsink; use a new one")
        (self.workdir / "bugsink_conf.py").unlink(missing_ok=True)

    def _write_conf(self, deadline: float) -> None:
        conf = self.workdir / "bugsink_conf.py"
        self._run(
            "bugsink-create-conf",
            "--template=local",
            f"--host={_HOST}",
            f"--port={self.port}",
            f"--output-file={conf}",
            deadline=deadline,
        )
        overrides = _CONF_OVERRIDES.format(
            host=_HOST,
            db=str(self.workdir / "db.sqlite3"),
            test_db=str(self.workdir / "test.sqlite3"),
            snappea_db=str(self.workdir / "snappea.sqlite3"),
            eager=self.eager_digest,
            wakeup_dir=str(self.workdir / "snappea.wakeup"),
            pid_file=str(self.workdir / "snappea.pid"),
            ingest_dir=str(self.workdir / "ingestion"),
        )
        with conf.open("a", encoding="utf-8") as file:
            file.write(overrides)

    def _migrate(self, deadline: float) -> None:
        # two SQLite files, so the two migrations can run side by side;
        # --skip-checks: the system checks import every URL conf, ~2 s per command
        self._run_together(
            [
                ("bugsink-manage", "migrate", "--skip-checks"),
                (
                    "bugsink-manage",
                    "migrate",
                    "snappea",
                    "--database=snappea",
                    "--skip-checks",
                ),
            ],
            deadline=deadline,
        )

    def _create_login_and_token(self, deadline: float) -> None:
        password = secrets.token_urlsafe(12)
        superuser = self._popen(
            "bugsink-manage",
            "createsuperuser",
            "--noinput",
            f"--username={_LOGIN_USER}",
            "--email=admin@localhost",
            "--skip-checks",
            extra_env={"DJANGO_SUPERUSER_PASSWORD": password},
        )
        token = self._popen(
            "bugsink-manage", "create_auth_token", "--skip-checks", capture=True
        )
        try:
            _wait_ok(superuser, deadline, "createsuperuser")
            # the token is a secret: it goes to this object, never to the log
            self._token = _wait_ok(token, deadline, "create_auth_token").strip()
        finally:
            _terminate(token)
        self.login = (_LOGIN_USER, password)

    def _serve(self, listener: socket.socket) -> None:
        fd = listener.fileno()
        self._spawn(
            "gunicorn",
            f"--bind=fd://{fd}",
            "--workers=2",
            "--timeout=30",
            "--graceful-timeout=5",
            "--access-logfile=-",
            # Gunicorn 26 otherwise opens a control socket in $HOME/.gunicorn
            "--no-control-socket",
            f"--chdir={self.workdir}",
            "bugsink.wsgi",
            pass_fds=(fd,),
        )

    def _wait_until_healthy(self, deadline: float) -> None:
        while True:
            self.ensure_running()
            try:
                with urllib.request.urlopen(
                    self.url + _HEALTH_PATH, timeout=_REQUEST_TIMEOUT
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise BugsinkUnavailable(
                    f"Bugsink not healthy at {self.url}{_HEALTH_PATH} before the "
                    f"deadline; see {self.log_path}"
                )
            time.sleep(_POLL_INTERVAL)

    # -- processes -------------------------------------------------------------

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_FOREIGN_ENV_PREFIXES)
            and name not in _FOREIGN_ENV_NAMES
        }
        env["DJANGO_SETTINGS_MODULE"] = "bugsink_conf"
        env["PYTHONUNBUFFERED"] = "1"
        # left out on purpose: PYTHONDONTWRITEBYTECODE. uv's tool environment has no
        # .pyc files, and compiling Django's sources on every command costs ~4 s;
        # this way each module is compiled once, into uv's cache.
        env.update(extra or {})
        return env

    def _popen(
        self,
        script: str,
        *args: str,
        capture: bool = False,
        extra_env: dict[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> subprocess.Popen[bytes]:
        if self._bin is None or self._log_file is None:
            raise RuntimeError("BugsinkServer.start() has not run")
        self._log_file.write(f"--- {script} {' '.join(args)}\n".encode())
        self._log_file.flush()
        return subprocess.Popen(
            [str(self._bin / script), *args],
            cwd=self.workdir,
            env=self._env(extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else self._log_file,
            stderr=self._log_file,
            pass_fds=pass_fds,
            # its own process group, so a stop reaches Gunicorn's workers too
            start_new_session=True,
        )

    def _spawn(self, script: str, *args: str, pass_fds: tuple[int, ...] = ()) -> None:
        self._processes.append(self._popen(script, *args, pass_fds=pass_fds))

    def _run(self, script: str, *args: str, deadline: float) -> str:
        return _wait_ok(self._popen(script, *args), deadline, script)

    def _run_together(
        self, commands: list[tuple[str, ...]], *, deadline: float
    ) -> None:
        processes = [self._popen(*command) for command in commands]
        try:
            for process, command in zip(processes, commands, strict=True):
                _wait_ok(process, deadline, " ".join(command[:2]))
        finally:
            for process in processes:
                _terminate(process)

    # -- REST API --------------------------------------------------------------

    def create_project(self, name: str) -> Project:
        """Create a project (in the one team) and return it with its DSN."""
        body = {
            "team": self._team(),
            "name": name,
            # no alert e-mails: the local template only prints them anyway
            "alert_on_new_issue": False,
            "alert_on_regression": False,
            "alert_on_unmute": False,
        }
        created = self._api("POST", "/projects/", body)
        project = self._api("GET", f"/projects/{int(created['id'])}/")
        return Project(id=project["id"], name=project["name"], dsn=project["dsn"])

    def wait_for_event(
        self, project: Project, event_id: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """The stored event (with its `data` as sent) once Bugsink has digested it."""
        query = urllib.parse.urlencode({"project": project.id, "event_id": event_id})
        path = f"/events/lookup/?{query}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._api("GET", path)
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(self._missing_event_message(project, event_id))
            time.sleep(_POLL_INTERVAL)

    def issues(self, project: Project) -> list[dict[str, Any]]:
        """The project's issues, oldest first; `digested_event_count` is per issue."""
        query = urllib.parse.urlencode({"project": project.id, "sort": "digest_order"})
        return self._api_pages(f"/issues/?{query}")

    def events(self, project: Project) -> list[dict[str, Any]]:
        """Every stored event of the project, issue by issue, without `data`.

        The API lists events per issue only, so this asks once per issue.
        """
        events: list[dict[str, Any]] = []
        for issue in self.issues(project):
            query = urllib.parse.urlencode({"issue": issue["id"], "order": "asc"})
            events.extend(self._api_pages(f"/events/?{query}"))
        return events

    def _team(self) -> str:
        if self._team_id is None:
            teams = self._api_pages("/teams/")
            team = (
                teams[0] if teams else self._api("POST", "/teams/", {"name": "agented"})
            )
            self._team_id = str(team["id"])
        return self._team_id

    def _missing_event_message(self, project: Project, event_id: str) -> str:
        try:
            stored = len(self.events(project))
        except (urllib.error.URLError, OSError) as error:
            stored = f"unknown ({error})"
        return (
            f"event {event_id} not in Bugsink project {project.id} ({project.name}) "
            f"in time; the project holds {stored} events; "
            f"eager_digest={self.eager_digest}; server log: {self.log_path}"
        )

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request(method, self.url + _API + path, body)

    def _api_pages(self, path: str) -> list[dict[str, Any]]:
        """Every result of a cursor-paginated list, following its `next` links."""
        results: list[dict[str, Any]] = []
        url: str | None = self.url + _API + path
        while url:
            page = self._request("GET", url)
            results.extend(page["results"])
            url = page["next"]
            if url and not url.startswith(self.url + "/"):
                raise ValueError(f"Bugsink pointed pagination off this server: {url}")
        return results

    def _request(
        self, method: str, url: str, body: dict[str, Any] | None = None
    ) -> Any:
        if not self.url:
            raise RuntimeError("BugsinkServer is not started")
        request = urllib.request.Request(
            url,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=_REQUEST_TIMEOUT) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            # Bugsink says what was wrong in the body; keep it in the message
            error.msg = f"{error.msg} for {method} {url}: {error.read()[:500]!r}"
            raise


def find_uv() -> str | None:
    """uv: the one running us (`uv run` and the Makefile set $UV), else PATH, else
    the copy `make setup` puts in .tools/ when the machine has none."""
    for candidate in (
        os.environ.get("UV"),
        shutil.which("uv"),
        str(Path(__file__).resolve().parents[2] / ".tools" / "bin" / "uv"),
    ):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    return None


def _locate_tool_scripts(deadline: float) -> Path:
    """The scripts folder of uv's environment for Bugsink, installing it if needed.

    The later commands run from that folder directly: each `uv tool run` asks the
    package index again (~1.5 s here), and uv would stand between a stop signal and
    the server it should reach.
    """
    uv = find_uv()
    if uv is None:
        raise BugsinkUnavailable(
            "uv was not found ($UV, PATH or .tools/bin); it installs Bugsink"
        )
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    command = [uv, "tool", "run", "--from", _TOOL_SPEC, "python", "-c"]
    command.append("import sysconfig; print(sysconfig.get_path('scripts'))")
    try:
        result = subprocess.run(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=max(deadline - time.monotonic(), 1.0),
        )
    except subprocess.TimeoutExpired as error:
        raise BugsinkUnavailable(f"installing {_TOOL_SPEC} timed out") from error
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-3:]
        raise BugsinkUnavailable(f"uv could not install {_TOOL_SPEC}: {detail}")
    return Path(result.stdout.strip().splitlines()[-1])


def _bind_listener(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR only lets a fixed port be taken again while old connections
    # linger in TIME_WAIT; it does not let two live servers share a port on Linux
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((_HOST, port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise BugsinkUnavailable(f"cannot listen on {_HOST}:{port}: {error}") from error
    return listener


def _wait_ok(process: subprocess.Popen[bytes], deadline: float, what: str) -> str:
    """Wait for a set-up command; its captured stdout, if any."""
    try:
        stdout, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired as error:
        _terminate(process)
        raise BugsinkUnavailable(f"Bugsink {what} did not finish in time") from error
    if process.returncode != 0:
        raise BugsinkUnavailable(
            f"Bugsink {what} failed with exit code {process.returncode}"
        )
    return (stdout or b"").decode()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to the whole process group once the grace period ends."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_GRACE)
    except subprocess.TimeoutExpired:
        # the leader is not reaped yet, so its group id cannot have been reused
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=_STOP_GRACE)
