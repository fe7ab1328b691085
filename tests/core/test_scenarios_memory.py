"""The conformance scenarios on the in-memory driver: under the suite's own faults (a duplicating
queue wrapper, crashes at each engine checkpoint) and under the memory queue's fault injection
(every job delivered twice; every delivery 'crashing' once before its acknowledgement)."""

from __future__ import annotations

import pytest
from flowcraft_conformance.scenarios import (
    FAULTS,
    SCENARIOS,
    Scenario,
    expected_calls,
    run_scenario,
    verify,
)

from flowcraft_core import open_backends
from flowcraft_memory import Faults, MemoryQueue

from .helpers import unique_url


def _ids(scenario: Scenario) -> str:
    return scenario.name


def test_the_suite_covers_every_fault_and_scenario() -> None:
    # The parametrisation below is only as strong as these lists.
    assert set(FAULTS) == {
        "none",
        "duplicate",
        "crash:loaded",
        "crash:executed",
        "crash:completed",
        "crash:enqueued",
    }
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS) >= 12


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids)
async def test_scenario_under_conformance_fault(scenario: Scenario, fault: str) -> None:
    backends = open_backends(unique_url())
    result, calls = await run_scenario(scenario, backends, fault=fault)
    verify(scenario, fault, result, calls)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids)
async def test_scenario_with_every_delivery_duplicated(scenario: Scenario) -> None:
    backends = open_backends(unique_url())
    queue = backends.queue
    assert isinstance(queue, MemoryQueue)
    queue.faults = Faults.duplicate_all()
    result, calls = await run_scenario(scenario, backends)
    verify(scenario, "duplicate", result, calls)
    # The fault really struck: every enqueue (at least the start jobs) was delivered twice.
    assert queue.faults.duplicated == queue.enqueued >= 1


@pytest.mark.parametrize("scenario", SCENARIOS, ids=_ids)
async def test_scenario_with_each_delivery_crashing_before_ack(scenario: Scenario) -> None:
    backends = open_backends(unique_url())
    queue = backends.queue
    assert isinstance(queue, MemoryQueue)
    queue.faults = Faults.crash_each_once()
    result, calls = await run_scenario(scenario, backends)
    verify(scenario, "crash_before_ack", result, calls)
    # The crash comes after the handler committed, so no node's code runs again.
    assert calls == scenario.calls
    assert calls == expected_calls(scenario, "none")
    assert queue.faults.crashed >= 1
