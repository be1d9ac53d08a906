"""Trace each truth of the verification catalogue to the tests that prove it.

The catalogue (ini option ``truths_file``, default ``tests/truths.toml`` under the
rootdir) lists truths, each with an ``id``, a ``level`` (a registered marker such as
``sanity`` or ``proxy``) and a one-line ``statement``. A test claims truths with
``@pytest.mark.verifies("OBS02-T4", "L2-2")``; an id missing from the catalogue, or a
``verifies()`` naming none, is a collection error naming the test and the id. The
``record_figure`` fixture attaches a measured figure to a truth the test verifies,
e.g. ``record_figure("L2-1", "event stored after 0.05 s, limit 60 s")``.

At the end of the run every truth gets a status from its selected tests:

- PASS: at least one verifying test passed and none failed or errored;
- FAIL: a verifying test failed or errored (in set-up, call or teardown);
- NOT RUN: no verifying test ran to a result. Skipped, xfailed and deselected
  tests never count as proof.

The table is printed in the terminal summary and written to ``reports/truth-table.md``
and ``reports/truth-table.xml`` under the rootdir; figures come from passing tests only.

Which truths the run must prove (the enforcement rule):

- Selected levels come from ``-m``: a level is selected when the marker expression is
  true for a test carrying only that level's marker, evaluated with pytest's own
  expression evaluator. Without ``-m`` every level is selected; so ``-m sanity`` and
  ``-m "not proxy"`` select ``sanity`` only, ``-m proxy`` selects ``proxy`` only.
- Enforcement is on when the run covers the whole suite (no path arguments, or
  exactly the ``testpaths``) and no ``-k`` narrows it; ``-m`` only chooses the levels.
  Running a few files or a ``-k`` subset, with or without ``-m``, reports the table
  but demands nothing: ``pytest -m proxy -k burst`` is green when its test passes.
- ``--truths-enforce`` / ``--no-truths-enforce`` override that decision.

When enforcement is on, every truth of a selected level that is not PASS is reported
on its own line and the run exits with code 1, even if every test passed. In the XML a
truth gets a ``failure`` element when it is FAIL, or NOT RUN while demanded; and a
``skipped`` element when it is NOT RUN and not demanded.

All state lives on a ``TruthTable`` object registered in ``pytest_configure`` and kept
in ``config.stash``, so importing this module changes nothing. Figures travel in the
reports' ``user_properties``, but the test-to-truth map is built from in-process
collection, so runs under pytest-xdist are not supported: the controller would see no
verifying tests. Supporting it means sending each test's ids in its reports too.
"""

from __future__ import annotations

import argparse
import enum
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression

DEFAULT_TRUTHS_FILE = "tests/truths.toml"
REPORTS_DIR = "reports"
FIGURE_PREFIX = "truth-figure:"
MAX_LISTED_TESTS = 2
VERIFIES_MARKER = (
    "verifies(*ids): the truths of the verification catalogue this test proves"
)
COLUMNS = ("Truth", "Level", "Status", "Tests", "Figures")


class Status(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_RUN = "NOT RUN"


@dataclass(frozen=True)
class Truth:
    id: str
    level: str
    statement: str


@dataclass(frozen=True)
class TruthResult:
    truth: Truth
    status: Status
    tests: tuple[str, ...]
    figures: tuple[str, ...]
    demanded: bool

    @property
    def is_unmet(self) -> bool:
        """A demanded truth the run did not prove."""
        return self.demanded and self.status is not Status.PASS


# identity equality keeps the object hashable, as pluggy needs for a plugin
@dataclass(eq=False)
class TruthTable:
    """Collects verifying tests and their outcomes, then judges each truth."""

    truths: dict[str, Truth]
    catalogue: Path
    selected_levels: frozenset[str]
    enforce: bool
    rootpath: Path
    verifying: dict[str, tuple[str, ...]] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    figures: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    results: list[TruthResult] = field(default_factory=list)

    def problems(self, item: pytest.Item) -> list[str]:
        """Why the test's ``verifies`` marks cannot be traced; empty when they can."""
        marks = list(item.iter_markers("verifies"))
        if marks and not any(m.args for m in marks):
            return [f"{item.nodeid}: verifies() names no truth id"]
        return [
            f"{item.nodeid}: verifies unknown truth id {truth_id!r}"
            for truth_id in claimed_ids(item)
            if truth_id not in self.truths
        ]

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self, collector: pytest.Collector
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        items = [i for i in report.result if isinstance(i, pytest.Item)]
        problems = [line for item in items for line in self.problems(item)]

        # a typo in an id would otherwise leave a truth silently unproven
        if report.passed and problems:
            report.outcome = "failed"
            report.longrepr = "\n".join([*problems, f"catalogue: {self.catalogue}"])
            report.result = []
        return report

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            ids = claimed_ids(item)
            if ids:
                self.verifying[item.nodeid] = ids

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid not in self.verifying:
            return

        previous = self.outcomes.get(report.nodeid, "not run")
        self.outcomes[report.nodeid] = merge_outcome(previous, report)

        # each phase's report carries every figure recorded so far; keep the latest
        self.figures[report.nodeid] = figures_of(report.user_properties)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:
            return

        self.results = [self.judge(truth) for truth in self.truths.values()]
        write_reports(self.rootpath / REPORTS_DIR, self.results, self.scope_note())

        # interrupted or broken runs keep their own, more telling exit code
        exit_codes = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
        if session.exitstatus in exit_codes and any(r.is_unmet for r in self.results):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def scope_note(self) -> str:
        levels = ", ".join(sorted(self.selected_levels)) or "none"
        demand = "demanded" if self.enforce else "reported, not demanded"
        return f"Selected levels: {levels}; their truths are {demand}."

    def judge(self, truth: Truth) -> TruthResult:
        tests = [n for n, ids in self.verifying.items() if truth.id in ids]
        outcomes = [self.outcomes.get(n, "not run") for n in tests]
        passed = [n for n in tests if self.outcomes.get(n) == "passed"]
        figures = [
            text for n in passed for i, text in self.figures.get(n, []) if i == truth.id
        ]
        demanded = self.enforce and truth.level in self.selected_levels
        return TruthResult(
            truth=truth,
            status=status_of(outcomes),
            tests=tuple(tests),
            figures=tuple(figures),
            demanded=demanded,
        )

    def pytest_terminal_summary(
        self, terminalreporter: pytest.TerminalReporter
    ) -> None:
        if not self.results:
            return

        terminalreporter.section("truth table")
        for line in format_terminal_table(self.results):
            terminalreporter.write_line(line)
        reports = self.rootpath / REPORTS_DIR
        terminalreporter.write_line(f"written to {reports}/truth-table.{{md,xml}}")

        unmet = [r for r in self.results if r.is_unmet]
        demanded = [r for r in self.results if r.demanded]
        if unmet:
            levels = ", ".join(sorted(self.selected_levels))
            terminalreporter.write_line(
                f"the run fails: {len(unmet)} of {len(demanded)} truths of the"
                f" selected levels ({levels}) are not proven",
                red=True,
            )
        for result in unmet:
            terminalreporter.write_line(unmet_line(result), red=True)


def claimed_ids(item: pytest.Item) -> tuple[str, ...]:
    """Truth ids of every ``verifies`` mark on the test, its class and its module."""
    ids = [str(i) for mark in item.iter_markers("verifies") for i in mark.args]
    return tuple(dict.fromkeys(ids))


def merge_outcome(previous: str, report: pytest.TestReport) -> str:
    """Fold one phase's report into the test's outcome: failed > passed > skipped."""
    if previous == "failed" or report.failed:
        return "failed"
    if hasattr(report, "wasxfail"):
        # an xfail or a lenient xpass proves nothing either way
        return "skipped"
    if report.skipped:
        return "skipped"
    if report.when == "call":
        return "passed"
    return previous


def status_of(outcomes: Sequence[str]) -> Status:
    if "failed" in outcomes:
        return Status.FAIL
    if "passed" in outcomes:
        return Status.PASS
    return Status.NOT_RUN


def figures_of(properties: Iterable[tuple[str, object]]) -> list[tuple[str, str]]:
    return [
        (name.removeprefix(FIGURE_PREFIX), str(value))
        for name, value in properties
        if name.startswith(FIGURE_PREFIX)
    ]


def unmet_line(result: TruthResult) -> str:
    truth = result.truth
    if result.status is Status.FAIL:
        reason = "a verifying test failed"
    elif result.tests:
        reason = "no verifying test passed (skipped, xfailed or not reached)"
    else:
        reason = "no selected test verifies it"
    return f"truth {truth.id} ({truth.level}) {result.status}: {reason}"


def short_node_id(nodeid: str) -> str:
    """``tests/unit/test_x.py::test_a[1]`` becomes ``test_x.py::test_a[1]``."""
    path, sep, rest = nodeid.partition("::")
    return path.rsplit("/", 1)[-1] + sep + rest


def tests_cell(tests: Sequence[str]) -> str:
    if len(tests) > MAX_LISTED_TESTS:
        return f"{len(tests)} tests"
    return ", ".join(short_node_id(t) for t in tests) or "-"


def table_rows(results: Iterable[TruthResult]) -> list[tuple[str, ...]]:
    return [
        (
            r.truth.id,
            r.truth.level,
            str(r.status),
            tests_cell(r.tests),
            "; ".join(r.figures) or "-",
        )
        for r in results
    ]


def format_terminal_table(results: Sequence[TruthResult]) -> list[str]:
    rows = [COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


def markdown_table(results: Sequence[TruthResult], note: str) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table_rows(results)]
    return f"# Truth table\n\n{note}\n\n" + "\n".join(lines) + "\n"


def junit_tree(results: Sequence[TruthResult]) -> ET.ElementTree:
    suite = ET.Element("testsuite", name="truths", tests=str(len(results)))
    failures = skipped = 0
    for result in results:
        case = truth_testcase(suite, result)
        failures += case.find("failure") is not None
        skipped += case.find("skipped") is not None
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    return ET.ElementTree(suite)


def truth_testcase(suite: ET.Element, result: TruthResult) -> ET.Element:
    truth = result.truth
    case = ET.SubElement(suite, "testcase", classname=truth.level, name=truth.id)
    properties = ET.SubElement(case, "properties")
    ET.SubElement(properties, "property", name="statement", value=truth.statement)
    ET.SubElement(properties, "property", name="tests", value=" ".join(result.tests))

    if result.status is Status.FAIL or result.is_unmet:
        ET.SubElement(case, "failure", message=unmet_line(result))
    elif result.status is Status.NOT_RUN:
        ET.SubElement(case, "skipped", message="not run; its level was not demanded")

    if result.figures:
        ET.SubElement(case, "system-out").text = "\n".join(result.figures)
    return case


def write_reports(directory: Path, results: Sequence[TruthResult], note: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    markdown = markdown_table(results, note)
    (directory / "truth-table.md").write_text(markdown, "utf-8")
    tree = junit_tree(results)
    ET.indent(tree)
    tree.write(directory / "truth-table.xml", encoding="utf-8", xml_declaration=True)


def load_truths(path: Path, levels: Iterable[str]) -> dict[str, Truth]:
    """Read and check the catalogue; any defect is a usage error naming the file."""
    try:
        entries = tomllib.loads(path.read_text("utf-8")).get("truth", [])
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise pytest.UsageError(f"truths catalogue {path}: {error}") from error

    truths: dict[str, Truth] = {}
    for entry in entries:
        truth = parse_truth(path, entry, frozenset(levels))
        if truth.id in truths:
            raise pytest.UsageError(f"truths catalogue {path}: duplicate {truth.id}")
        truths[truth.id] = truth
    return truths


def parse_truth(path: Path, entry: object, levels: frozenset[str]) -> Truth:
    fields = ("id", "level", "statement")
    if not isinstance(entry, dict) or not all(
        isinstance(entry.get(f), str) and entry[f].strip() for f in fields
    ):
        raise pytest.UsageError(
            f"truths catalogue {path}: each [[truth]] needs id, level and statement;"
            f" got {entry!r}"
        )
    truth = Truth(entry["id"], entry["level"], entry["statement"].strip())
    if truth.level not in levels:
        raise pytest.UsageError(
            f"truths catalogue {path}: {truth.id} has level {truth.level!r},"
            f" which is not a registered marker"
        )
    return truth


def registered_markers(config: pytest.Config) -> set[str]:
    lines: list[str] = config.getini("markers")
    return {line.split(":")[0].split("(")[0].strip() for line in lines}


def selected_levels(markexpr: str, levels: Iterable[str]) -> frozenset[str]:
    """Levels whose lone marker satisfies the ``-m`` expression; all without one."""
    if not markexpr.strip():
        return frozenset(levels)

    expression = Expression.compile(markexpr)
    return frozenset(
        level for level in levels if expression.evaluate(only_marker(level))
    )


def only_marker(level: str) -> Callable[..., bool]:
    def matcher(name: str, /, **kwargs: object) -> bool:
        return name == level and not kwargs

    return matcher


def runs_whole_suite(config: pytest.Config) -> bool:
    """No path arguments (or exactly the testpaths) and no ``-k`` subset."""
    if config.option.keyword.strip():
        return False
    if config.args_source is not pytest.Config.ArgsSource.ARGS:
        return True

    testpaths: list[str] = config.getini("testpaths")
    given = {(config.invocation_params.dir / a).resolve() for a in config.args}
    return bool(testpaths) and given == {
        (config.rootpath / p).resolve() for p in testpaths
    }


def should_enforce(config: pytest.Config) -> bool:
    override: bool | None = config.getoption("truths_enforce")
    if override is not None:
        return override
    return runs_whole_suite(config)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "truths_file",
        "path of the truths catalogue, relative to the rootdir",
        default=DEFAULT_TRUTHS_FILE,
    )
    group = parser.getgroup("truth-table", "truth table")
    group.addoption(
        "--truths-enforce",
        action=argparse.BooleanOptionalAction,
        dest="truths_enforce",
        default=None,
        help="fail the run when a truth of a selected level is not PASS"
        " (default: only when no path or -k narrows the run)",
    )


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # keep the plugin usable where the project's ini does not declare the marker
    if "verifies" not in registered_markers(config):
        config.addinivalue_line("markers", VERIFIES_MARKER)

    path = config.rootpath / str(config.getini("truths_file"))
    truths = load_truths(path, registered_markers(config))
    table = TruthTable(
        truths=truths,
        catalogue=path,
        selected_levels=selected_levels(
            config.option.markexpr, {t.level for t in truths.values()}
        ),
        enforce=should_enforce(config),
        rootpath=config.rootpath,
    )
    config.stash[TABLE_KEY] = table
    config.pluginmanager.register(table, "truth-table")


TABLE_KEY = pytest.StashKey[TruthTable]()


@pytest.fixture
def record_figure(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Attach a measured figure to a truth this test verifies."""
    claimed = claimed_ids(request.node)

    def record(truth_id: str, figure: str) -> None:
        if truth_id not in claimed:
            raise ValueError(
                f"record_figure: this test does not verify {truth_id!r};"
                f" it verifies {list(claimed)}"
            )
        request.node.user_properties.append((FIGURE_PREFIX + truth_id, figure))

    return record
