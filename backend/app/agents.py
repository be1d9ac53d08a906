"""Command lines for the agent backends an execution can run."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

DEMO_AGENT = Path(__file__).with_name("demo_agent.py")
AGENTS = ("claude", "codex", "gemini", "command", "demo")


class AgentError(ValueError):
    """The request asked for an agent that cannot be built; a 400 for the client."""


def build_command(agent: str, prompt: str, command_template: str | None) -> list[str]:
    """The argv for `agent` with `prompt`; never goes through a shell."""
    # "--" ends the options: a prompt starting with "-" stays a prompt
    if agent == "claude":
        return ["claude", "--print", "--output-format", "text", "--", prompt]
    if agent == "codex":
        return ["codex", "exec", "--skip-git-repo-check", "--", prompt]
    if agent == "gemini":
        return ["gemini", f"--prompt={prompt}"]
    if agent == "demo":
        return [sys.executable, "-u", str(DEMO_AGENT), "--", prompt]
    if agent == "command":
        return _from_template(command_template, prompt)
    raise AgentError(f"agent must be one of: {', '.join(AGENTS)}")


def _from_template(template: str | None, prompt: str) -> list[str]:
    if not template:
        raise AgentError("agent 'command' needs AGENTED_AGENT_COMMAND to be set")
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise AgentError(f"AGENTED_AGENT_COMMAND cannot be parsed: {exc}") from exc
    if not words:
        raise AgentError("AGENTED_AGENT_COMMAND is empty")
    if not any("{prompt}" in w for w in words):
        return [*words, prompt]
    return [w.replace("{prompt}", prompt) for w in words]
