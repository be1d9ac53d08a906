"""Agent command lines: the argv each backend runs, never a shell string."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.agents import DEMO_AGENT, AgentError, build_command

pytestmark = pytest.mark.sanity

HOSTILE_PROMPT = "hi; rm -rf / && echo $(whoami) `id` | tee x > y 'q' \"dq\""
# an argv element cannot hold NUL; everything else is fair game for a prompt
prompts = st.text(alphabet=st.characters(blacklist_characters="\x00"), min_size=1)


@pytest.mark.parametrize(
    ("agent", "flags"),
    [
        ("claude", ["claude", "--print", "--output-format", "text"]),
        ("codex", ["codex", "exec", "--skip-git-repo-check"]),
    ],
)
def test_cli_agents_run_non_interactively(agent: str, flags: list[str]) -> None:
    argv = build_command(agent, "PROMPT", None)

    assert argv[: len(flags)] == flags
    assert argv[-2:] == ["--", "PROMPT"]


def test_gemini_takes_the_prompt_glued_to_its_option() -> None:
    """`--prompt=VALUE` keeps a prompt that starts with '-' the option's value."""
    assert build_command("gemini", "-x PROMPT", None) == [
        "gemini",
        "--prompt=-x PROMPT",
    ]


def test_demo_agent_runs_with_this_interpreter_unbuffered() -> None:
    argv = build_command("demo", "hello", None)

    assert argv == [sys.executable, "-u", str(DEMO_AGENT), "--", "hello"]
    assert DEMO_AGENT.is_file()


@pytest.mark.parametrize("agent", ["claude", "codex", "gemini", "demo"])
def test_hostile_prompt_is_one_argv_element(agent: str) -> None:
    argv = build_command(agent, HOSTILE_PROMPT, None)

    assert argv[-1].removeprefix("--prompt=") == HOSTILE_PROMPT
    assert sum(HOSTILE_PROMPT in element for element in argv) == 1


@pytest.mark.parametrize("agent", ["claude", "codex"])
def test_prompt_that_looks_like_an_option_follows_end_of_options(agent: str) -> None:
    """A prompt starting with '-' must not be parsed as a flag of the agent's CLI.

    POSIX utility convention (guideline 10): '--' ends the options, so what follows
    is an operand even when it starts with '-'. The demo agent already does this.
    """
    prompt = "--dangerously-skip-permissions"

    argv = build_command(agent, prompt, None)

    assert argv[-2:] == ["--", prompt]


def test_template_substitutes_prompt_inside_a_word() -> None:
    argv = build_command("command", "do it", "my-agent --ask={prompt} --quiet")

    assert argv == ["my-agent", "--ask=do it", "--quiet"]


def test_template_without_placeholder_gets_prompt_appended() -> None:
    argv = build_command("command", "do it", "my-agent --quiet")

    assert argv == ["my-agent", "--quiet", "do it"]


def test_template_words_are_split_like_a_shell_but_not_run_by_one() -> None:
    argv = build_command("command", HOSTILE_PROMPT, "'/opt/my agent' -x '{prompt}'")

    assert argv == ["/opt/my agent", "-x", HOSTILE_PROMPT]


@given(prompt=prompts)
def test_any_prompt_survives_template_substitution_unchanged(prompt: str) -> None:
    assert build_command("command", prompt, "agent {prompt}") == ["agent", prompt]
    assert build_command("command", prompt, "agent")[-1] == prompt


@given(prompt=prompts)
def test_any_prompt_reaches_cli_agents_unchanged(prompt: str) -> None:
    for agent in ("claude", "codex", "demo"):
        assert build_command(agent, prompt, None)[-2:] == ["--", prompt]
    assert build_command("gemini", prompt, None)[-1] == f"--prompt={prompt}"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        (None, "needs AGENTED_AGENT_COMMAND"),
        ("", "needs AGENTED_AGENT_COMMAND"),
        ("   ", "is empty"),
        ("agent 'unclosed", "cannot be parsed"),
        ('agent "unclosed', "cannot be parsed"),
        ("agent trailing\\", "cannot be parsed"),
    ],
    ids=["missing", "blank", "spaces", "open-single-quote", "open-double-quote", "bs"],
)
def test_bad_command_template_is_an_agent_error(
    template: str | None, problem: str
) -> None:
    with pytest.raises(AgentError, match=problem):
        build_command("command", "p", template)


@pytest.mark.parametrize("agent", ["", "Claude", "bash", "sh -c", "demo "])
def test_unknown_agent_is_an_agent_error_naming_the_choices(agent: str) -> None:
    with pytest.raises(AgentError, match="claude, codex, gemini, command, demo"):
        build_command(agent, "p", "template")
