"""The truth table plugin judges each truth from its tests and enforces levels."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from textwrap import dedent

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.sanity

# a small catalogue: two sanity truths and one proxy truth
CATALOGUE = """
[[truth]]
id = "S-1"
level = "sanity"
statement = "The first sanity truth holds."

[[truth]]
id = "S-2"
level = "sanity"
statement = "The second sanity truth holds."

[[truth]]
id = "P-1"
level = "proxy"
statement = "The proxy truth holds."
"""

# like the project's ini, minus the verifies marker, which the plugin registers itself
INI = """
[pytest]
addopts = --strict-markers
markers =
    sanity: fast checks
    proxy: real servers
    slow: a marker that is not a level
truths_file = truths.toml
"""

# every truth proven by a passing test of its level
ALL_PROVEN = """
import pytest

@pytest.mark.sanity
@pytest.mark.verifies("S-1", "S-2")
def test_sanity_truths():
    pass

@pytest.mark.proxy
@pytest.mark.verifies("P-1")
def test_proxy_truth():
    pass
"""


@pytest.fixture
def suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """A throwaway project with the small catalogue and the plugin's ini options."""
    # installed plugins are not under test, and pytester re-imports them for every
    # in-process run (hypothesis alone costs two seconds a run)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeini(INI)
    (pytester.path / "truths.toml").write_text(CATALOGUE, "utf-8")
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "-p", "tests.support.truth_table", "-p", "no:cacheprovider", *args
    )


def statuses(pytester: pytest.Pytester) -> dict[str, str]:
    """Truth id to status, read back from the Markdown report."""
    text = (pytester.path / "reports" / "truth-table.md").read_text("utf-8")
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {row[0].removeprefix("| "): row[2] for row in rows[1:]}


def test_passing_verifier_proves_its_truths(suite: pytest.Pytester) -> None:
    suite.makepyfile(ALL_PROVEN)

    result = run(suite)

    assert result.ret == pytest.ExitCode.OK
    assert statuses(suite) == {"S-1": "PASS", "S-2": "PASS", "P-1": "PASS"}
    result.stdout.fnmatch_lines(["*= truth table =*", "S-1 *sanity *PASS *"])


def test_one_failing_verifier_fails_the_truth_despite_a_passing_one(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        ALL_PROVEN
        + dedent("""
            @pytest.mark.verifies("S-2")
            def test_broken():
                assert False
        """)
    )

    result = run(suite)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert statuses(suite) == {"S-1": "PASS", "S-2": "FAIL", "P-1": "PASS"}
    result.stdout.fnmatch_lines(["truth S-2 (sanity) FAIL: a verifying test failed"])


def test_error_in_a_verifier_fixture_fails_the_truth(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        ALL_PROVEN
        + dedent("""
            @pytest.fixture
            def broken():
                yield
                raise RuntimeError("teardown broke")

            @pytest.mark.verifies("P-1")
            def test_with_broken_teardown(broken):
                pass
        """)
    )

    run(suite)

    assert statuses(suite)["P-1"] == "FAIL"


@pytest.mark.parametrize(
    "decorator_or_call",
    [
        "@pytest.mark.skip(reason='off')\ndef test_s1():\n    pass",
        "def test_s1():\n    pytest.skip('off')",
        "@pytest.mark.xfail(reason='known')\ndef test_s1():\n    assert False",
        "@pytest.mark.xfail(reason='known')\ndef test_s1():\n    pass",
    ],
    ids=["skip-mark", "skip-call", "xfail", "lenient-xpass"],
)
def test_skipped_or_xfail_verifier_leaves_truth_not_run(
    suite: pytest.Pytester, decorator_or_call: str
) -> None:
    test = f"import pytest\n\n@pytest.mark.verifies('S-1')\n{decorator_or_call}\n"
    suite.makepyfile(test)

    result = run(suite, "--no-truths-enforce")

    assert result.ret == pytest.ExitCode.OK
    assert statuses(suite)["S-1"] == "NOT RUN"


def test_deselected_verifier_leaves_truth_not_run(suite: pytest.Pytester) -> None:
    suite.makepyfile(ALL_PROVEN)

    run(suite, "-k", "not proxy_truth")

    assert statuses(suite) == {"S-1": "PASS", "S-2": "PASS", "P-1": "NOT RUN"}


@pytest.mark.parametrize(
    ("claimed", "message"),
    [
        ('"S-1", "S-9"', "verifies unknown truth id 'S-9'"),
        ("", "verifies() names no truth id"),
    ],
    ids=["typo", "empty"],
)
def test_untraceable_claim_is_a_collection_error_naming_the_test(
    suite: pytest.Pytester, claimed: str, message: str
) -> None:
    suite.makepyfile(
        ALL_PROVEN
        + dedent(f"""
            @pytest.mark.verifies({claimed})
            def test_with_typo():
                pass
        """)
    )

    result = run(suite)

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting*", f"*::test_with_typo: {message}"])


@pytest.mark.parametrize(
    ("expression", "proven", "unproven_ignored"),
    [
        ("sanity", ["S-1", "S-2"], "P-1"),
        ("not proxy", ["S-1", "S-2"], "P-1"),
        ("proxy", ["P-1"], "S-1"),
        ("proxy and not slow", ["P-1"], "S-1"),
    ],
    ids=["sanity", "not-proxy", "proxy", "proxy-and-not-slow"],
)
def test_marker_expression_demands_only_the_levels_it_selects(
    suite: pytest.Pytester, expression: str, proven: list[str], unproven_ignored: str
) -> None:
    level = "proxy" if proven == ["P-1"] else "sanity"
    ids = ", ".join(repr(i) for i in proven)
    suite.makepyfile(
        f"import pytest\n\n@pytest.mark.{level}\n@pytest.mark.verifies({ids})\n"
        "def test_proves_its_level():\n    pass\n"
    )

    result = run(suite, "-m", expression)

    assert result.ret == pytest.ExitCode.OK
    assert statuses(suite)[unproven_ignored] == "NOT RUN"


def test_uncovered_truth_of_selected_level_fails_a_green_run(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.sanity
        @pytest.mark.verifies("S-1")
        def test_only_first():
            pass
        """
    )

    result = run(suite, "-m", "sanity")

    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "the run fails: 1 of 2 truths of the selected levels (sanity) are not*",
            "truth S-2 (sanity) NOT RUN: no selected test verifies it",
        ]
    )
    assert "truth P-1" not in result.stdout.str()


def test_whole_suite_run_demands_every_level(suite: pytest.Pytester) -> None:
    suite.makepyfile(ALL_PROVEN.replace('"P-1"', '"S-1"'))

    result = run(suite)

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["truth P-1 (proxy) NOT RUN: *"])


def test_run_of_chosen_files_reports_but_does_not_demand(
    suite: pytest.Pytester,
) -> None:
    path = suite.makepyfile(ALL_PROVEN.replace('"P-1"', '"S-1"'))

    result = run(suite, str(path))

    assert result.ret == pytest.ExitCode.OK
    assert statuses(suite)["P-1"] == "NOT RUN"


@pytest.mark.parametrize(
    "narrowing",
    [["-k", "only_first"], ["test_narrowed.py"]],
    ids=["keyword", "chosen-file"],
)
def test_level_narrowed_by_k_or_a_path_reports_but_does_not_demand(
    suite: pytest.Pytester, narrowing: list[str]
) -> None:
    suite.makepyfile(
        test_narrowed="""
        import pytest

        @pytest.mark.sanity
        @pytest.mark.verifies("S-1")
        def test_only_first():
            pass
        """
    )

    result = run(suite, "-m", "sanity", *narrowing)

    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    assert statuses(suite)["S-2"] == "NOT RUN"


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [
        (["test_override.py", "--truths-enforce"], pytest.ExitCode.TESTS_FAILED),
        (["-m", "sanity or proxy", "--no-truths-enforce"], pytest.ExitCode.OK),
    ],
    ids=["enforce-chosen-file", "no-enforce-with-m"],
)
def test_enforce_option_overrides_the_rule(
    suite: pytest.Pytester, args: list[str], exit_code: pytest.ExitCode
) -> None:
    suite.makepyfile(test_override=ALL_PROVEN.replace('"P-1"', '"S-1"'))

    result = run(suite, *args)

    assert result.ret == exit_code


def test_figures_of_passing_tests_appear_in_terminal_and_markdown(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        ALL_PROVEN
        + dedent("""
            @pytest.mark.verifies("P-1")
            def test_measures(record_figure):
                record_figure("P-1", "stored after 0.05 s, limit 60 s")

            @pytest.mark.verifies("S-1")
            def test_measures_then_fails(record_figure):
                record_figure("S-1", "figure of a failed test")
                assert False
        """)
    )

    result = run(suite)

    table = result.stdout.str().partition("= truth table =")[2]
    markdown = (suite.path / "reports" / "truth-table.md").read_text("utf-8")
    result.stdout.fnmatch_lines(["P-1 *PASS *stored after 0.05 s, limit 60 s"])
    assert "| stored after 0.05 s, limit 60 s |" in markdown
    assert "figure of a failed test" not in table + markdown


def test_figure_for_a_truth_the_test_does_not_verify_is_refused(
    suite: pytest.Pytester,
) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.verifies("S-1")
        def test_misattributed(record_figure):
            record_figure("S-2", "12 ms")
        """
    )

    result = run(suite, "--no-truths-enforce")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*this test does not verify 'S-2'*"])


def test_many_verifiers_are_shown_as_a_count(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        ALL_PROVEN
        + dedent("""
            @pytest.mark.verifies("S-1")
            @pytest.mark.parametrize("n", range(4))
            def test_each(n):
                pass
        """)
    )

    run(suite)

    markdown = (suite.path / "reports" / "truth-table.md").read_text("utf-8")
    assert "| S-1 | sanity | PASS | 5 tests |" in markdown


def test_xml_report_has_one_testcase_per_truth(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.sanity
        @pytest.mark.verifies("S-1")
        def test_first(record_figure):
            record_figure("S-1", "3 of 3 events")
        """
    )

    run(suite, "-m", "sanity")

    suite_element = ET.parse(suite.path / "reports" / "truth-table.xml").getroot()
    cases = {case.get("name"): case for case in suite_element.iter("testcase")}
    assert suite_element.get("name") == "truths"
    assert list(cases) == ["S-1", "S-2", "P-1"]
    assert cases["S-1"].findtext("system-out") == "3 of 3 events"
    assert cases["S-2"].find("failure") is not None
    assert cases["P-1"].find("skipped") is not None


def test_catalogue_level_must_be_a_registered_marker(suite: pytest.Pytester) -> None:
    (suite.path / "truths.toml").write_text(
        CATALOGUE.replace('level = "proxy"', 'level = "proxxy"'), "utf-8"
    )
    suite.makepyfile(ALL_PROVEN)

    result = run(suite)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*P-1 has level 'proxxy'*not a registered marker*"])
