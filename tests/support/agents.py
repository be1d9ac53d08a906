"""Quick real agents for tests, and a check that their threads do not outlive one."""

from __future__ import annotations

import shlex
import sys
import threading
import time

# the runner's threads for one execution: its output pump, its watch, its kill timer
RUNNER_THREADS = ("(_pump)", "(_watch)", "(_kill_after_grace)")

# prints two lines; the prompt "hang" keeps it running, "fail" exits with 3
AGENT_CODE = """
import sys, time
prompt = sys.argv[1]
print("echo: " + prompt, flush=True)
if prompt == "hang":
    time.sleep(30)
print("done", flush=True)
sys.exit(3 if prompt == "fail" else 0)
"""
QUICK_AGENT = f"{shlex.quote(sys.executable)} -c {shlex.quote(AGENT_CODE)}"
# app settings for route tests that run it: heartbeats quick enough to be seen
QUICK_AGENT_SETTINGS = {
    "AGENTED_AGENT_COMMAND": QUICK_AGENT,
    "AGENTED_SSE_HEARTBEAT": "0.2",
}


def join_runner_threads(timeout: float) -> list[str]:
    """Wait for the runner's threads to end; the names of those still running."""
    deadline = time.monotonic() + timeout
    threads = [t for t in threading.enumerate() if t.name.endswith(RUNNER_THREADS)]
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]
