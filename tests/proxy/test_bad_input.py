"""Bad input at the process level: environment values and raw HTTP requests.

The settings table in tests/unit/test_config_validation.py proves what `Settings`
refuses; here both real entry points run as subprocesses, so what an operator sees
is checked end to end: one line, a non-zero exit, no traceback, no worker started,
no secret echoed.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.fault_sink import FaultSink
from tests.support.selection import selected_users
from tests.support.servers import REPO, GunicornServer

pytestmark = pytest.mark.proxy

DSN_KEY = "5ec7e7c0ffee5ec7e7c0ffee5ec7e7c0"
DSN_SECRET = "b0a710adb0a710adb0a710adb0a710ad"
SECRETS = (DSN_KEY, DSN_SECRET)
# a refused start-up takes well under a second; a started server never exits alone
EXIT_TIMEOUT = 20.0
PARALLEL_PROCESSES = 4
ENTRY_POINTS = {
    "run.py": [sys.executable, "backend/run.py", "--port", "0"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "-c", "backend/gunicorn.conf.py"],
}


@dataclass(frozen=True)
class BadValue:
    id: str
    name: str
    value: str


# {tmp} is a folder holding "plain-file" (a file) and "not-sqlite.db" (text);
# every DSN names loopback, in case one is accepted after all
BAD_VALUES = [
    BadValue("dsn-no-project", "SENTRY_DSN", f"http://{DSN_KEY}@127.0.0.1:9"),
    BadValue("dsn-ftp", "SENTRY_DSN", f"ftp://{DSN_KEY}@127.0.0.1:9/1"),
    BadValue("dsn-port", "SENTRY_DSN", f"http://{DSN_KEY}@127.0.0.1:99999/1"),
    BadValue(
        "dsn-with-secret",
        "SENTRY_DSN",
        f"http://{DSN_KEY}:{DSN_SECRET}@127.0.0.1:9/project",
    ),
    BadValue("dsn-quoted", "SENTRY_DSN", f'"http://{DSN_KEY}@127.0.0.1:9/1"'),
    BadValue("dsn-no-scheme", "SENTRY_DSN", f"{DSN_KEY}@127.0.0.1:9/1"),
    BadValue("dsn-one-slash", "SENTRY_DSN", f"http:/{DSN_KEY}@127.0.0.1:9/1"),
    BadValue("dsn-superscript-id", "SENTRY_DSN", f"http://{DSN_KEY}@127.0.0.1:9/²"),
    BadValue("rate-above-one", "SENTRY_TRACES_SAMPLE_RATE", "1.01"),
    BadValue("rate-words", "SENTRY_TRACES_SAMPLE_RATE", "ten percent"),
    BadValue("rate-minus-inf", "SENTRY_TRACES_SAMPLE_RATE", "-inf"),
    BadValue("env-space", "SENTRY_ENVIRONMENT", "prod env"),
    BadValue("env-too-long", "SENTRY_ENVIRONMENT", "e" * 201),
    BadValue("release-escape", "SENTRY_RELEASE", "rel\x1b[31m"),
    BadValue("release-space", "SENTRY_RELEASE", "1.0 beta"),
    BadValue("log-format-yaml", "LOG_FORMAT", "yaml"),
    BadValue("log-format-list", "LOG_FORMAT", "json,text"),
    BadValue("log-level-word", "LOG_LEVEL", "verbose"),
    BadValue("log-level-number", "LOG_LEVEL", "10"),
    BadValue("bind-no-port", "GUNICORN_BIND", "127.0.0.1"),
    BadValue("bind-port-range", "GUNICORN_BIND", "localhost:65536"),
    BadValue("bind-all-v4", "GUNICORN_BIND", "0.0.0.0:0"),
    BadValue("bind-all-v6", "GUNICORN_BIND", "[::]:0"),
    BadValue("bind-list", "GUNICORN_BIND", "127.0.0.1:0,0.0.0.0:0"),
    BadValue("db-root-dir", "AGENTED_DB_PATH", "/"),
    BadValue("db-under-file", "AGENTED_DB_PATH", "{tmp}/plain-file/agented.db"),
    BadValue("db-not-sqlite", "AGENTED_DB_PATH", "{tmp}/not-sqlite.db"),
    BadValue("db-name-too-long", "AGENTED_DB_PATH", "{tmp}/" + "n" * 300),
    BadValue("db-device", "AGENTED_DB_PATH", "/dev/null"),
    BadValue("db-foreign", "AGENTED_DB_PATH", "{tmp}/foreign.db"),
    BadValue("dsn-fullwidth-slash", "SENTRY_DSN", f"http://{DSN_KEY}@h\uff0fx/1"),
    BadValue(
        "dsn-query-key", "SENTRY_DSN", f"http://127.0.0.1:9/1?sentry_key={DSN_KEY}"
    ),
    BadValue("bind-superscript-port", "GUNICORN_BIND", "127.0.0.1:\u00b2"),
    BadValue("gunicorn-log-level", "GUNICORN_LOG_LEVEL", "bogus"),
]
CASES = [(bad, entry) for bad in BAD_VALUES for entry in ENTRY_POINTS]


@dataclass(frozen=True)
class Exit:
    code: int | None
    output: str
    killed: bool

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


def run_until_exit(command: list[str], env: dict[str, str]) -> Exit:
    """Run an entry point; terminate it if it is still up after EXIT_TIMEOUT."""
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = proc.communicate(timeout=EXIT_TIMEOUT)
        killed = False
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate(timeout=10)
        killed = True
    return Exit(proc.returncode, output.decode("utf-8", "replace"), killed)


@pytest.fixture(scope="module")
def bad_value_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-values")
    (folder / "plain-file").write_text("a file, not a folder\n")
    (folder / "not-sqlite.db").write_text("this is not a database\n" * 50)
    with sqlite3.connect(folder / "foreign.db") as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()
    return folder


@pytest.fixture(scope="module")
def exits(
    bad_value_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Exit]:
    """Every bad value through both entry points, a few processes at a time."""
    jobs = {}
    for bad in BAD_VALUES:
        workdir = tmp_path_factory.mktemp(bad.id)
        value = bad.value.replace("{tmp}", str(bad_value_folder))
        env = {**GunicornServer(workdir).env, bad.name: value}
        for entry, command in ENTRY_POINTS.items():
            jobs[bad.id, entry] = (command, env)
    with ThreadPoolExecutor(PARALLEL_PROCESSES) as pool:
        futures = {key: pool.submit(run_until_exit, *job) for key, job in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


@pytest.mark.verifies("F-6")
@pytest.mark.parametrize(
    ("bad", "entry"), CASES, ids=[f"{bad.id}-{entry}" for bad, entry in CASES]
)
def test_bad_environment_value_stops_start_up_with_one_line(
    exits: dict[tuple[str, str], Exit], bad: BadValue, entry: str
) -> None:
    result = exits[bad.id, entry]

    assert not result.killed, f"still running after {EXIT_TIMEOUT} s:\n{result.output}"
    assert result.code != 0
    assert "Traceback" not in result.output, result.output
    assert "Booting worker" not in result.output
    assert len(result.lines) == 1, result.output
    assert result.lines[0].startswith(f"agented: configuration error: {bad.name}")
    for secret in SECRETS:
        assert secret not in result.output


@pytest.mark.verifies("F-10")
def test_dev_server_refuses_a_non_loopback_host_without_a_key(tmp_path: Path) -> None:
    env = GunicornServer(tmp_path).env
    command = [sys.executable, "backend/run.py", "--host", "0.0.0.0", "--port", "0"]

    result = run_until_exit(command, env)

    # the host is an argument, checked after start-up has logged its own lines
    assert not result.killed
    assert result.code == 3
    assert result.lines[-1] == (
        "agented: configuration error: --host 0.0.0.0 is not loopback and "
        "AGENTED_API_KEY is not set"
    )
    assert "Running on" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.verifies("F-10")
@pytest.mark.parametrize("bad_id", ["bind-all-v4", "bind-all-v6", "bind-list"])
def test_gunicorn_refuses_a_non_loopback_bind_without_a_key(
    exits: dict[tuple[str, str], Exit], bad_id: str
) -> None:
    result = exits[bad_id, "gunicorn"]

    assert result.code == 2
    assert "not a loopback address and AGENTED_API_KEY is not set" in result.output
    assert "Listening at" not in result.output


@dataclass(frozen=True)
class RawCase:
    id: str
    request: bytes
    status: int | None
    from_app: bool


_END = b"Host: 127.0.0.1\r\nX-Request-ID: raw-bad-input\r\nConnection: close\r\n\r\n"
RAW_CASES = [
    RawCase(
        "non-utf8-path",
        b"GET /admin/executions/\xff\xfe HTTP/1.1\r\n" + _END,
        400,
        False,
    ),
    RawCase("non-utf8-root", b"GET /\xc3\x28/\xa0 HTTP/1.1\r\n" + _END, 400, False),
    RawCase("nul-in-path", b"GET /admin/\x00x HTTP/1.1\r\n" + _END, 400, False),
    RawCase(
        "path-4kb",
        b"GET /admin/executions/" + b"x" * 3900 + b" HTTP/1.1\r\n" + _END,
        404,
        True,
    ),
    # Gunicorn's limit_request_line (4094): answered before the app sees it
    RawCase("path-8kb", b"GET /" + b"a" * 8192 + b" HTTP/1.1\r\n" + _END, 414, False),
    RawCase(
        "header-9kb",
        b"GET /health/liveness HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n" + _END,
        431,
        False,
    ),
    RawCase(
        "150-headers",
        b"GET /health/liveness HTTP/1.1\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(150))
        + _END,
        431,
        False,
    ),
    RawCase(
        "non-utf8-header",
        b"GET /health/liveness HTTP/1.1\r\nX-Name: \xff\xfe\r\n" + _END,
        200,
        True,
    ),
    RawCase(
        "bad-content-length",
        b"POST /admin/executions HTTP/1.1\r\nContent-Length: abc\r\n" + _END,
        400,
        False,
    ),
    RawCase(
        "bad-chunk-size",
        b"POST /admin/executions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: application/json\r\n" + _END + b"zz\r\nabc\r\n0\r\n\r\n",
        400,
        True,
    ),
    RawCase(
        "tls-client-hello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
        None,
        False,
    ),
]


@dataclass
class RawRun:
    """What the real server answered to each raw request, and how it fared."""

    answers: dict[str, bytes]
    pid_before: int
    pid_after: int
    health_after: int
    control_status: int
    worker_pids: list[int]
    log: str
    events: list[str]


def send_raw(port: int, data: bytes) -> bytes:
    """Write raw bytes, read until the server closes (or 10 s pass)."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        for _ in range(1000):
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            received += chunk
    return received


def send_raw_requests(workdir: Path) -> RawRun:
    with FaultSink() as sink:
        env = {"AGENTED_DEBUG_ROUTES": "1", "SENTRY_DSN": sink.dsn}
        with GunicornServer(workdir, env) as server:
            runtime = f"{server.url}/admin/debug/runtime"
            pid_before = requests.get(runtime, timeout=10).json()["pid"]
            # at once: a greeting that is not HTTP waits out the keep-alive timeout
            with ThreadPoolExecutor(len(RAW_CASES)) as pool:
                replies = pool.map(
                    send_raw,
                    [server.port] * len(RAW_CASES),
                    [c.request for c in RAW_CASES],
                )
                answers = {
                    case.id: reply
                    for case, reply in zip(RAW_CASES, replies, strict=True)
                }
            pid_after = requests.get(runtime, timeout=10).json()["pid"]
            # keep the status, not the response: until the response is freed its
            # socket stays open, and a graceful stop waits out the keep-alive
            liveness = f"{server.url}/health/liveness"
            health_after = requests.get(liveness, timeout=10).status_code
            # the control: one real error, so a sink that hears nothing cannot pass
            raised = f"{server.url}/admin/debug/raise"
            control_status = requests.post(raised, timeout=10).status_code
            server.stop()
        events = [e["exception"]["values"][-1]["type"] for e in sink.errors]
    return RawRun(
        answers,
        pid_before,
        pid_after,
        health_after,
        control_status,
        server.worker_pids(),
        server.log(),
        events,
    )


@pytest.fixture(scope="module", autouse=True)
def raw_run_started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Future[RawRun] | None]:
    """The raw requests, started with the module when any test here reads them.

    Their run is mostly waiting (a greeting that is not HTTP waits out the
    keep-alive, then a graceful stop), which the environment matrix fills.
    """
    if not selected_users(request, "raw_run"):
        yield None
        return
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit(send_raw_requests, tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def raw_run(raw_run_started: Future[RawRun] | None) -> RawRun:
    assert raw_run_started is not None
    return raw_run_started.result()


@pytest.mark.verifies("F-8")
@pytest.mark.parametrize("case", RAW_CASES, ids=[c.id for c in RAW_CASES])
def test_raw_bad_request_gets_a_client_error(raw_run: RawRun, case: RawCase) -> None:
    head, _, body = raw_run.answers[case.id].partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)

    if case.status is None:
        assert raw_run.answers[case.id] == b"", "a non-HTTP greeting gets no answer"
        return
    assert lines[0].split(" ")[1] == str(case.status), lines[0]
    if case.from_app:
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Request-ID"] == "raw-bad-input"
    assert b"Traceback" not in body


@pytest.mark.verifies("F-8")
def test_raw_bad_requests_leave_the_worker_up_and_send_no_event(
    raw_run: RawRun,
) -> None:
    assert raw_run.pid_after == raw_run.pid_before
    assert raw_run.worker_pids == [raw_run.pid_before]
    assert raw_run.health_after == 200
    # only the control error made an event and a traceback
    assert raw_run.control_status == 500
    assert raw_run.events == ["DeliberateError"]
    assert raw_run.log.count("Traceback (most recent call last)") == 1
    assert raw_run.log.count("DeliberateError: deliberate failure") == 1
