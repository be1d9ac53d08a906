"""Fixtures every unit test gets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.agents import join_runner_threads

THREAD_DEADLINE = 5.0


@pytest.fixture(autouse=True)
def runner_threads_finish() -> Iterator[None]:
    """Torn down after the app's shutdown: every agent's threads have ended, so no
    test's executions run on into the next."""
    yield
    alive = join_runner_threads(THREAD_DEADLINE)
    assert not alive, f"runner threads still running: {alive}"
