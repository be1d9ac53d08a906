"""SQLite storage: one short-lived connection per unit of work, WAL journal."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_execution_id TEXT
);
CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    session_id TEXT REFERENCES sessions(id),
    agent TEXT NOT NULL,
    prompt TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS executions_by_session ON executions(session_id, created_at);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions(status);
CREATE TABLE IF NOT EXISTS output_lines (
    execution_id TEXT NOT NULL REFERENCES executions(id),
    seq INTEGER NOT NULL,
    text TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (execution_id, seq)
);
"""


class Database:
    """Opens connections to one SQLite file; safe to share across threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def init_schema(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._open()
        try:
            # WAL lets SSE readers replay output while the pump thread writes it
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        finally:
            conn.close()

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success, rolls back on error, then closes."""
        conn = self._open()
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def ping(self) -> None:
        with self.connect() as conn:
            conn.execute("SELECT 1 FROM executions LIMIT 1").fetchall()
