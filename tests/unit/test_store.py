"""SQLite persistence of executions, output lines and sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.db import Database
from app.factory import create_app
from app.store import RUNNING_STATES, TERMINAL_STATES, ExecutionStore, SessionStore

pytestmark = pytest.mark.sanity


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(tmp_path / "nested" / "agented.db")
    database.init_schema()
    return database


@pytest.fixture
def store(db: Database) -> ExecutionStore:
    return ExecutionStore(db)


def _execution_in(store: ExecutionStore, status: str) -> str:
    execution_id = store.create("demo", f"prompt {status}", ["agent", "p"], None)["id"]
    store.update(execution_id, status=status)
    return execution_id


def test_interrupt_unfinished_marks_only_queued_and_running(
    store: ExecutionStore,
) -> None:
    ids = {status: _execution_in(store, status) for status in RUNNING_STATES}
    finished = {status: _execution_in(store, status) for status in TERMINAL_STATES}

    count = store.interrupt_unfinished()

    assert count == len(RUNNING_STATES)
    for execution_id in ids.values():
        row = store.get(execution_id)
        assert row is not None
        assert row["status"] == "interrupted"
        assert row["finished_at"] is not None
    for status, execution_id in finished.items():
        row = store.get(execution_id)
        assert row is not None
        assert row["status"] == status
        assert row["finished_at"] is None


def test_interrupt_unfinished_with_nothing_running_changes_nothing(
    store: ExecutionStore,
) -> None:
    execution_id = _execution_in(store, "succeeded")

    assert store.interrupt_unfinished() == 0
    assert store.interrupt_unfinished() == 0
    assert (store.get(execution_id) or {})["status"] == "succeeded"


def test_new_app_interrupts_what_a_previous_process_left_running(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "agented.db"
    create_app({"AGENTED_DB_PATH": str(db_path)})
    store = ExecutionStore(Database(db_path))
    left_running = _execution_in(store, "running")

    create_app({"AGENTED_DB_PATH": str(db_path)})

    assert (store.get(left_running) or {})["status"] == "interrupted"


def test_created_execution_is_queued_with_its_argv_round_tripped(
    store: ExecutionStore,
) -> None:
    argv = ["agent", "--flag", "a prompt; with $(shell) bits"]

    row = store.create("command", "a prompt", argv, None)

    assert row["status"] == "queued"
    assert row["command"] == argv
    assert row["created_at"].endswith("+00:00")
    assert row["started_at"] is None


def test_lines_come_back_in_seq_order_after_the_given_seq(
    store: ExecutionStore,
) -> None:
    execution_id = _execution_in(store, "running")
    for seq in (3, 1, 2):
        store.append_line(execution_id, seq, f"line {seq}")

    assert store.lines_after(execution_id) == [
        (1, "line 1"),
        (2, "line 2"),
        (3, "line 3"),
    ]
    assert store.lines_after(execution_id, 2) == [(3, "line 3")]
    assert store.lines_after(execution_id, 3) == []


def test_list_returns_newest_first(store: ExecutionStore) -> None:
    first = _execution_in(store, "succeeded")
    second = _execution_in(store, "failed")

    assert [row["id"] for row in store.list()] == [second, first]
    assert [row["id"] for row in store.list(limit=1)] == [second]


def test_get_of_unknown_id_is_none(db: Database) -> None:
    assert ExecutionStore(db).get("nope") is None
    assert SessionStore(db).get("nope") is None


def test_session_lists_its_executions_in_creation_order(db: Database) -> None:
    sessions, store = SessionStore(db), ExecutionStore(db)
    session = sessions.create("demo")
    first = store.create("demo", "one", ["a"], session["id"])["id"]
    second = store.create("demo", "two", ["a"], session["id"])["id"]
    store.create("demo", "elsewhere", ["a"], None)

    assert session["status"] == "active"
    assert session["last_execution_id"] is None
    assert sessions.executions(session["id"]) == [first, second]
