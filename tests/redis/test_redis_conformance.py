"""The Redis driver meets every contract of the conformance suite.

The suite runs in this pytest process as :class:`TestRedisDriver` (one item per test, so ``-k``
selects and xdist spreads them); one subprocess smoke test keeps ``flowcraft conformance URL``
itself covered.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flowcraft_conformance import scenarios
from flowcraft_conformance.harness import Harness
from flowcraft_conformance.suite import DriverConformance

FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")
SMOKE = ("--only", "driver declaration", "--only", "signals")


class TestRedisDriver(DriverConformance):
    """``redis://`` through the installed driver plugin, on the session's Redis (database 15);
    the driver's ``isolation`` gives every test a key prefix of its own."""

    @pytest.fixture(autouse=True)
    def _on_the_session_redis(self, redis_server: str) -> None:
        # The session's Redis is known only once its fixture ran (it may start one).
        self.backend_url = redis_server

    def test_fused_run_state_matches_the_reference(self, conformance: Harness) -> None:
        """Redis offers a fused run state: the differential machine must run here, not skip."""
        try:
            super().test_fused_run_state_matches_the_reference(conformance)
        except pytest.skip.Exception as exc:
            pytest.fail(f"the run state machine skipped on Redis: {exc}")


def test_the_real_workflow_scenarios_run_here() -> None:
    """Not the stand-in that skips when the scenarios cannot be imported: every scenario under
    every fault, fused and composed, is an item of :class:`TestRedisDriver`."""
    assert issubclass(TestRedisDriver, scenarios.WorkflowScenarios)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_flowcraft_conformance_cli_on_redis(redis_server: str) -> None:
    result = subprocess.run(
        [FLOWCRAFT, "conformance", redis_server, *SMOKE],  # the session's Redis, database 15
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("conforms"), result.stdout[-2000:]
    for contract in ("driver declaration", "signals"):
        assert contract in result.stdout, result.stdout[-2000:]
    assert "failed" not in result.stdout
