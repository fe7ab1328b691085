"""Running the packaged suite without writing a test file: :func:`run_conformance` and the
``flowcraft conformance URL`` command.

The suite runs through ``pytest.main`` in this process, on a test class bound to the target
(:mod:`flowcraft_conformance._bound`, imported by a generated test module in a temporary
directory), with a hermetic pytest configuration (the project's own ``pytest.ini`` /
``pyproject.toml`` do not apply). Outcomes are collected per test and grouped
by contract.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click
import pytest

from flowcraft_core.errors import DriverError

from .target import Target

OutcomeName = Literal["passed", "failed", "skipped", "xfailed", "xpassed", "error"]

INI = """[pytest]
python_files = test_*.py
python_classes = Test
python_functions = test
"""


@dataclass(frozen=True)
class Outcome:
    """What happened to one test."""

    test: str
    contract: str
    outcome: OutcomeName
    reason: str = ""
    duration: float = 0.0
    nodeid: str = ""


@dataclass
class Report:
    """The outcome of a conformance run, test by test."""

    target: str
    outcomes: list[Outcome] = field(default_factory=list)
    exit_code: int = 0
    output: str = ""

    @property
    def ok(self) -> bool:
        """True when nothing failed (skips are fine) and pytest itself succeeded."""
        return self.exit_code == 0 and not self.failures

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome in ("failed", "error", "xpassed")]

    def by_contract(self) -> dict[str, list[Outcome]]:
        """Outcomes grouped by contract, in the suite's order."""
        groups: dict[str, list[Outcome]] = {}
        for outcome in self.outcomes:
            groups.setdefault(outcome.contract, []).append(outcome)
        return groups

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes:
            counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
        return counts


@dataclass(frozen=True)
class Binding:
    """What the bound test class runs against."""

    target: Target
    max_examples: int | None = None
    shrink: bool = True


_binding: Binding | None = None
_lock = threading.Lock()


def current_binding() -> Binding:
    if _binding is None:
        raise RuntimeError("flowcraft_conformance._bound runs only under run_conformance()")
    return _binding


@contextlib.contextmanager
def _bound_to(binding: Binding) -> Iterator[None]:
    global _binding
    if not _lock.acquire(blocking=False):
        raise RuntimeError("run_conformance() is already running in this process")
    try:
        _binding = binding
        yield
    finally:
        _binding = None
        _lock.release()


class _Collector:
    """A pytest plugin that records every test's outcome and contract."""

    def __init__(self, contracts: Sequence[str] | None) -> None:
        self.only = set(contracts) if contracts else None
        self.contract: dict[str, tuple[str, str]] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.errors: list[Outcome] = []

    @pytest.hookimpl
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        from .suite import contract_of

        kept: list[pytest.Item] = []
        dropped: list[pytest.Item] = []
        for item in items:
            cls = getattr(item, "cls", None)
            name = getattr(item, "originalname", item.name)
            contract = contract_of(cls, name) if cls is not None else "?"
            self.contract[item.nodeid] = (item.name, contract)
            (kept if self.only is None or contract in self.only else dropped).append(item)
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = sorted(kept, key=_suite_order)

    @pytest.hookimpl
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors.append(
                Outcome("collection", "collection", "error", _message(report), 0.0, report.nodeid)
            )

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        test, contract = self.contract.get(report.nodeid, (report.nodeid, "?"))
        previous = self.outcomes.get(report.nodeid)
        outcome: OutcomeName | None = None
        if report.when == "call":
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            else:
                outcome = "passed" if report.passed else "failed" if report.failed else "skipped"
        elif report.failed:
            outcome = "error"
        elif report.skipped and report.when == "setup":
            outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        if outcome is None or (previous is not None and previous.outcome in ("failed", "error")):
            return
        reason = "" if outcome == "passed" else _message(report)
        self.outcomes[report.nodeid] = Outcome(
            test, contract, outcome, reason, report.duration, report.nodeid
        )


def _suite_order(item: pytest.Item) -> int:
    """Tests run contract by contract, in the order of the umbrella class's bases."""
    from .suite import defining_class

    cls = getattr(item, "cls", None)
    if cls is None:
        return 0
    owner = defining_class(cls, getattr(item, "originalname", item.name))
    return cls.__mro__.index(owner) if owner is not None else 0


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    """A one-paragraph reason: the skip reason, xfail reason, or the failure's message."""
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail and report.skipped:
        return str(wasxfail)
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        message = str(crash.message)
        if message.startswith(("ExceptionGroup", "BaseExceptionGroup")):
            # Several distinct failures (Hypothesis reports each): name them all.
            found = re.findall(
                r"^E?\s*(?:\| )*(\w+(?:Error|Exception): .*)$", report.longreprtext, re.M
            )
            if found:
                return f"{message}: " + " | ".join(dict.fromkeys(found))
        return message
    return str(longrepr or "").strip().splitlines()[-1] if longrepr else ""


def run_conformance(
    target: str | Target,
    max_examples: int | None = None,
    *,
    contracts: Sequence[str] | None = None,
    shrink: bool = True,
    pytest_args: Sequence[str] = (),
) -> Report:
    """Run the whole suite on ``target`` (a backend URL, or a :class:`Target` for a driver
    built in code) and report every test's outcome by contract. ``max_examples`` raises the
    Hypothesis examples per state machine; ``contracts`` runs only those contracts; without
    ``shrink`` a failing state machine reports its first failing example unshrunk (faster).
    Raises ``DriverError`` for a URL no installed driver handles."""
    resolved = Target.from_url(target) if isinstance(target, str) else target
    collector = _Collector(contracts)
    output = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="flowcraft-conformance-") as tmp:
        (Path(tmp) / "pytest.ini").write_text(INI)
        module = Path(tmp) / "test_conformance.py"
        module.write_text(f"from {__package__}._bound import TestConformance\n")
        args = [
            str(module),
            "-c",
            str(Path(tmp) / "pytest.ini"),
            "--rootdir",
            tmp,
            "--import-mode=importlib",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
            "-W",
            "ignore::pytest.PytestAssertRewriteWarning",
            "-q",
            "--tb=short",
            "-rN",
            *pytest_args,
        ]
        with _bound_to(Binding(resolved, max_examples, shrink)), contextlib.redirect_stdout(output):
            code = pytest.main(args, plugins=[collector])
    return Report(
        target=resolved.name,
        outcomes=collector.errors + list(collector.outcomes.values()),
        exit_code=int(code),
        output=output.getvalue(),
    )


STYLES = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold red",
    "xpassed": "bold red",
    "skipped": "yellow",
    "xfailed": "yellow",
}


def _name(outcome: Outcome) -> str:
    """The test with its parameters, e.g. ``test_scenario[chain-duplicate]``."""
    params = outcome.nodeid.partition("[")[2]
    return f"{outcome.test}[{params}" if params else outcome.test


def render(report: Report, console: Any = None) -> None:
    """Print ``report`` as a table: contract, test, result, reason."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=160)
    table = Table(title=f"flowcraft conformance: {report.target}", show_lines=False)
    table.add_column("contract", style="bold")
    table.add_column("test", overflow="fold")
    table.add_column("result")
    table.add_column("reason", overflow="fold")
    for contract, outcomes in report.by_contract().items():
        # Passing tests collapse into one line per contract; anything else is listed.
        passed = [o for o in outcomes if o.outcome == "passed"]
        rows = [(f"{len(passed)} test(s)", "passed", "")] if passed else []
        rows += [(_name(o), o.outcome, o.reason) for o in outcomes if o.outcome != "passed"]
        for i, (name, outcome, reason) in enumerate(rows):
            style = STYLES.get(outcome, "")
            table.add_row(
                contract if i == 0 else "",
                name,
                f"[{style}]{outcome}[/{style}]",
                reason,
                end_section=i == len(rows) - 1,
            )
    console.print(table)
    counts = report.counts()
    summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    verdict = "[green]conforms[/green]" if report.ok else "[bold red]does not conform[/bold red]"
    console.print(f"{summary or 'no tests ran'} (pytest exit code {report.exit_code}): {verdict}")


@click.command("conformance")
@click.argument("url")
@click.option(
    "--max-examples",
    type=click.IntRange(min=1),
    default=None,
    help="Hypothesis examples per state machine (default 50).",
)
@click.option(
    "--only",
    "contracts",
    multiple=True,
    metavar="CONTRACT",
    help="Run only this contract (repeatable), e.g. --only 'queue delivery'.",
)
@click.option(
    "--no-shrink",
    is_flag=True,
    help="Report a failing state machine's first example without shrinking it (faster).",
)
@click.option("--show-output", is_flag=True, help="Also print pytest's own report.")
@click.pass_context
def conformance_command(
    ctx: click.Context,
    url: str,
    max_examples: int | None,
    contracts: tuple[str, ...],
    no_shrink: bool,
    show_output: bool,
) -> None:
    """Check the driver of URL against the flowcraft conformance suite.

    Exits 0 if no test failed (skips, with their reasons, are fine), 1 if any failed, and 2 if
    no installed driver handles URL (or an option is wrong).
    """
    from .suite import contracts as known_contracts

    unknown = sorted(set(contracts) - set(known_contracts()))
    if unknown:
        raise click.BadParameter(
            f"unknown contract(s) {', '.join(map(repr, unknown))}; the contracts are: "
            + ", ".join(map(repr, known_contracts())),
            param_hint="--only",
        )
    try:
        target = Target.from_url(url)
    except DriverError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(2)
    report = run_conformance(
        target, max_examples, contracts=contracts or None, shrink=not no_shrink
    )
    if show_output:
        click.echo(report.output)
    render(report)
    ctx.exit(0 if report.ok else 1)
