"""Persistence of executions, their output lines and sessions."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from app.db import Database

RUNNING_STATES = ("queued", "running")
TERMINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out", "interrupted")


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


class ExecutionStore:
    """Rows of `executions` and `output_lines`, as plain dicts."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, agent: str, prompt: str, command: list[str], session_id: str | None
    ) -> dict[str, Any]:
        row = {
            "id": uuid.uuid4().hex,
            "session_id": session_id,
            "agent": agent,
            "prompt": prompt,
            "command": json.dumps(command),
            "status": "queued",
            "created_at": time.time(),
        }
        with self.db.connect() as conn:
            conn.execute(
                "INSERT INTO executions (id, session_id, agent, prompt, command,"
                " status, created_at) VALUES (:id, :session_id, :agent, :prompt,"
                " :command, :status, :created_at)",
                row,
            )
        return self.get(row["id"]) or {}

    def get(self, execution_id: str) -> dict[str, Any] | None:
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT * FROM executions WHERE id = ?", (execution_id,)
            ).fetchone()
        return None if row is None else _execution(row)

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM executions ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_execution(r) for r in rows]

    def update(self, execution_id: str, **fields: Any) -> None:
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        with self.db.connect() as conn:
            conn.execute(
                f"UPDATE executions SET {assignments} WHERE id = :id",
                {**fields, "id": execution_id},
            )

    def finish(
        self, execution_id: str, status: str, exit_code: int | None, error: str | None
    ) -> bool:
        """Record the final status unless one is recorded already; True if it was."""
        with self.db.connect() as conn:
            cur = conn.execute(
                "UPDATE executions SET status = ?, exit_code = ?, error = ?,"
                " finished_at = ? WHERE id = ? AND status IN ('queued', 'running')",
                (status, exit_code, error, time.time(), execution_id),
            )
        return cur.rowcount == 1

    def line_count(self, execution_id: str) -> int:
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM output_lines WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
        return int(row[0])

    def append_line(self, execution_id: str, seq: int, text: str) -> None:
        self.append_lines(execution_id, seq, [text])

    def append_lines(self, execution_id: str, first_seq: int, texts: list[str]) -> None:
        """Store lines numbered from `first_seq`, in one transaction."""
        now = time.time()
        with self.db.connect() as conn:
            conn.executemany(
                "INSERT INTO output_lines (execution_id, seq, text, created_at)"
                " VALUES (?, ?, ?, ?)",
                [
                    (execution_id, first_seq + offset, text, now)
                    for offset, text in enumerate(texts)
                ],
            )

    def lines_after(
        self, execution_id: str, after_seq: int = 0
    ) -> list[tuple[int, str]]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT seq, text FROM output_lines WHERE execution_id = ? AND seq > ?"
                " ORDER BY seq",
                (execution_id, after_seq),
            ).fetchall()
        return [(r["seq"], r["text"]) for r in rows]

    def interrupt_unfinished(self) -> int:
        """Mark executions a previous process left running as interrupted."""
        with self.db.connect() as conn:
            cur = conn.execute(
                "UPDATE executions SET status = 'interrupted', finished_at = ?"
                " WHERE status IN ('queued', 'running')",
                (time.time(),),
            )
        return cur.rowcount


class SessionStore:
    """Rows of `sessions`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, agent: str) -> dict[str, Any]:
        now = time.time()
        row = {"id": uuid.uuid4().hex, "agent": agent, "now": now}
        with self.db.connect() as conn:
            conn.execute(
                "INSERT INTO sessions (id, agent, status, created_at, updated_at)"
                " VALUES (:id, :agent, 'active', :now, :now)",
                row,
            )
        return self.get(row["id"]) or {}

    def get(self, session_id: str) -> dict[str, Any] | None:
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT * FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None else _session(row)

    def update(self, session_id: str, **fields: Any) -> None:
        fields["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        with self.db.connect() as conn:
            conn.execute(
                f"UPDATE sessions SET {assignments} WHERE id = :id",
                {**fields, "id": session_id},
            )

    def executions(self, session_id: str) -> list[str]:
        with self.db.connect() as conn:
            rows = conn.execute(
                "SELECT id FROM executions WHERE session_id = ? ORDER BY created_at",
                (session_id,),
            ).fetchall()
        return [r["id"] for r in rows]


def _execution(row: Any) -> dict[str, Any]:
    data = dict(row)
    data["command"] = json.loads(data["command"])
    for key in ("created_at", "started_at", "finished_at"):
        data[key] = iso(data[key])
    return data


def _session(row: Any) -> dict[str, Any]:
    data = dict(row)
    for key in ("created_at", "updated_at"):
        data[key] = iso(data[key])
    return data
