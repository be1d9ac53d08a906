"""Sessions: a conversation with one agent, one execution per message."""

from __future__ import annotations

import threading
from typing import Any

from app.agents import AGENTS, AgentError
from app.runner import ExecutionRunner
from app.store import ExecutionStore, SessionStore


class SessionConflict(Exception):
    """The session cannot take this action in its current state (a 409)."""


class SessionService:
    def __init__(
        self,
        sessions: SessionStore,
        executions: ExecutionStore,
        runner: ExecutionRunner,
    ) -> None:
        self.sessions = sessions
        self.executions = executions
        self.runner = runner
        self._send_lock = threading.Lock()

    def create(self, agent: str) -> dict[str, Any]:
        if agent not in AGENTS:
            raise AgentError(f"agent must be one of: {', '.join(AGENTS)}")
        if agent == "command" and not self.runner.agent_command:
            raise AgentError("agent 'command' needs AGENTED_AGENT_COMMAND to be set")
        return self.sessions.create(agent)

    def get(self, session_id: str) -> dict[str, Any] | None:
        session = self.sessions.get(session_id)
        if session is not None:
            session["busy"] = self._busy(session)
        return session

    def send(self, session: dict[str, Any], message: str) -> dict[str, Any]:
        """Run the session's agent with `message`; one run at a time."""
        # check and start as one step: two messages at once must not both run
        with self._send_lock:
            current = self.sessions.get(session["id"]) or session
            if current["status"] != "active":
                raise SessionConflict("the session is stopped")
            if self._busy(current):
                raise SessionConflict("the agent is still answering the last message")
            execution = self.runner.start(session["agent"], message, session["id"])
            self.sessions.update(session["id"], last_execution_id=execution["id"])
        return execution

    def output(self, session: dict[str, Any]) -> list[dict[str, Any]]:
        turns = []
        for execution_id in self.sessions.executions(session["id"]):
            execution = self.executions.get(execution_id) or {}
            lines = [text for _, text in self.executions.lines_after(execution_id)]
            turns.append(
                {
                    "execution_id": execution_id,
                    "message": execution.get("prompt"),
                    "status": execution.get("status"),
                    "exit_code": execution.get("exit_code"),
                    "lines": lines,
                }
            )
        return turns

    def stop(self, session: dict[str, Any]) -> dict[str, Any]:
        if session["last_execution_id"]:
            self.runner.cancel(session["last_execution_id"])
        self.sessions.update(session["id"], status="stopped")
        return self.get(session["id"]) or session

    def _busy(self, session: dict[str, Any]) -> bool:
        last = session.get("last_execution_id")
        return bool(last) and self.runner.is_running(last)
