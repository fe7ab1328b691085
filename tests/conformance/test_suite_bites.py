"""The conformance suite bites: each deliberately broken driver fails the contract it breaks.

Each broken driver runs through :func:`run_conformance` (the same path as
``flowcraft conformance``), limited to the contract it must fail, without shrinking.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from broken_drivers import BROKEN, Broken
from click.testing import CliRunner
from flowcraft_conformance.harness import ENV_PROFILE, MACHINE_EXAMPLES
from flowcraft_conformance.runner import conformance_command, run_conformance
from flowcraft_conformance.target import DriverParts, Target
from hypothesis import settings

from flowcraft_memory import MemoryContextStore, MemoryCoordinationStore, MemoryQueue


@pytest.fixture
def no_example_database() -> Iterator[None]:
    """Hypothesis without its example database: a breakage an earlier run found must be found
    again, not replayed from the database (a fresh clone has none)."""
    profile = os.environ[ENV_PROFILE]
    settings.register_profile("suite-bites", settings.get_profile(profile), database=None)
    settings.load_profile("suite-bites")
    try:
        yield
    finally:
        settings.load_profile(profile)


@pytest.mark.parametrize("broken", BROKEN, ids=[b.name for b in BROKEN])
def test_suite_fails_the_broken_driver(broken: Broken, no_example_database: None) -> None:
    # One run at the examples `flowcraft conformance` runs: every broken driver must fail it.
    report = run_conformance(
        broken.target(), MACHINE_EXAMPLES["ci"], contracts=[broken.contract], shrink=False
    )
    assert not report.ok, f"{broken.name} passed the {broken.contract!r} contract"
    assert report.failures, report.output
    for failure in report.failures:
        assert failure.contract == broken.contract, failure
        assert failure.outcome == "failed", failure
        assert failure.reason, failure


def test_a_missing_capability_skips_with_its_reason() -> None:
    target = Target.from_factory(
        lambda ns: DriverParts(MemoryQueue(), MemoryContextStore(), MemoryCoordinationStore()),
        name="no capabilities",
        capabilities={},
    )
    report = run_conformance(target, contracts=["queue delays", "queue redelivery"])
    assert report.ok, report.output
    assert report.outcomes and all(o.outcome == "skipped" for o in report.outcomes), report
    reasons = {o.contract: o.reason for o in report.outcomes}
    assert "lacks capability 'delays'" in reasons["queue delays"]
    assert "lacks capability 'redelivery_after_crash_s'" in reasons["queue redelivery"]


def test_a_component_not_provided_skips_its_contracts() -> None:
    target = Target.from_factory(
        lambda ns: DriverParts(context=MemoryContextStore()),
        name="context only",
        capabilities={"ttl": True},
        provides=("context",),
    )
    report = run_conformance(target, contracts=["context store", "queue delivery", "signals"])
    assert report.ok, report.output
    by_contract = report.by_contract()
    assert {o.outcome for o in by_contract["context store"]} == {"passed"}
    for contract in ("queue delivery", "signals"):
        assert {o.outcome for o in by_contract[contract]} == {"skipped"}
        assert all("does not provide a" in o.reason for o in by_contract[contract])


def test_cli_reports_a_table_and_exit_code() -> None:
    result = CliRunner().invoke(
        conformance_command, ["memory://", "--only", "signals", "--only", "driver declaration"]
    )
    assert result.exit_code == 0, result.output
    assert "signals" in result.output and "driver declaration" in result.output
    assert "passed" in result.output and "test(s)" in result.output  # passes are grouped
    assert "conforms" in result.output


def test_cli_exit_code_2_for_an_unknown_scheme() -> None:
    result = CliRunner().invoke(conformance_command, ["memroy://"])
    assert result.exit_code == 2
    assert "memory" in result.output  # the suggestion


def test_cli_exit_code_1_when_a_test_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = next(b for b in BROKEN if b.contract == "queue redelivery")
    monkeypatch.setattr(Target, "from_url", staticmethod(lambda url, **kw: broken.target()))
    result = CliRunner().invoke(conformance_command, ["memory://", "--only", "queue redelivery"])
    assert result.exit_code == 1, result.output
    assert "does not conform" in result.output


def test_cli_rejects_an_unknown_contract() -> None:
    result = CliRunner().invoke(conformance_command, ["memory://", "--only", "queues"])
    assert result.exit_code == 2
    assert "'queue delivery'" in result.output
