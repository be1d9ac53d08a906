"""The real server under Gunicorn's gevent worker streams an execution over SSE."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.servers import GunicornServer
from tests.support.sse import read_until_complete

DEADLINE = 30.0
LINES = [f"line {n}" for n in range(1, 6)]
# prints LINES with pauses, so the stream has to follow them live
AGENT_CODE = (
    "import time\n"
    f"for line in {LINES!r}:\n"
    "    print(line, flush=True)\n"
    "    time.sleep(0.05)\n"
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GunicornServer]:
    """Gunicorn on a port it picked; stopped, and its log printed, however it ends.

    pytest shows a test's captured output only when it fails, so the log printed at
    teardown appears exactly when someone needs it.
    """
    env = {
        "AGENTED_AGENT_COMMAND": f"{shlex.quote(sys.executable)} -c "
        + shlex.quote(AGENT_CODE),
        "AGENTED_DEBUG_ROUTES": "1",
        "AGENTED_SSE_HEARTBEAT": "1",
    }
    gunicorn = GunicornServer(tmp_path / "server", env=env)
    try:
        gunicorn.start(timeout=DEADLINE)
        yield gunicorn
    finally:
        gunicorn.stop(timeout=DEADLINE, graceful=False)
        print(f"--- gunicorn log ({gunicorn.log_path}) ---\n{gunicorn.log()}")


def read_events(response: requests.Response) -> list[dict[str, Any]]:
    """SSE events up to `complete`; each read and the whole stream have a deadline."""
    lines = response.iter_lines(decode_unicode=True)
    return read_until_complete((line + "\n" for line in lines), DEADLINE)


@pytest.mark.proxy
def test_gevent_worker_streams_execution_lines_in_order_to_complete(
    server: GunicornServer,
) -> None:
    created = requests.post(
        f"{server.url}/admin/executions",
        json={"agent": "command", "prompt": "go"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    execution_id = created.json()["id"]

    with requests.get(
        f"{server.url}/admin/executions/{execution_id}/stream",
        stream=True,
        timeout=(5, 5),
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["X-Accel-Buffering"] == "no"
        events = read_events(response)
    runtime = requests.get(f"{server.url}/admin/debug/runtime", timeout=10).json()

    logs = [e for e in events if e.get("event") == "log"]
    assert [e["data"]["line"] for e in logs] == LINES
    assert [e["id"] for e in logs] == [str(n) for n in range(1, len(LINES) + 1)]
    assert events[-1]["data"] == {
        "id": execution_id,
        "status": "succeeded",
        "exit_code": 0,
        "lines": len(LINES),
    }
    assert "Using worker: gevent" in server.log()
    assert runtime["gevent_patched"] is True
    assert runtime["pid"] in server.worker_pids()
    assert "Traceback" not in server.log()
