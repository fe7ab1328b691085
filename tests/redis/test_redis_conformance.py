"""The Redis driver meets every contract of the conformance suite.

The suite runs in this pytest process as :class:`TestRedisDriver` (one item per test, so ``-k``
selects and xdist spreads them); one subprocess smoke test keeps ``flowcraft conformance URL``
itself covered.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
from flowcraft_conformance import scenarios
from flowcraft_conformance.harness import Harness
from flowcraft_conformance.suite import DriverConformance
from flowcraft_conformance.target import Target

from flowcraft_core.protocols import Job
from flowcraft_redis import parse_url
from flowcraft_redis.driver import discard_prefix

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


def test_a_conformance_test_leaves_no_keys_behind(redis_server: str) -> None:
    """The harness discards every namespace it opened when the test ends: a suite run on a
    shared Redis once left ~66k keys with week-long TTLs, which slowed every KEYS scan of
    Dramatiq's on that database. Queue, context and coordination keys all go."""
    harness = Harness(Target.from_url(redis_server))
    namespace = harness.new_id()
    raw = redis.Redis.from_url(parse_url(redis_server).url)
    try:
        parts = harness.open(namespace)
        assert parts.queue is not None and parts.context is not None
        assert parts.coordination is not None
        harness.run(parts.coordination.set("k", "v", ttl=7 * 86400))
        harness.run(parts.context.set("run", "k", {"v": 1}))
        harness.run(parts.queue.enqueue(Job(run_id="run", node_id="n", digest="d"), delay=60))
        assert list(raw.scan_iter(match=f"{namespace}:*")), "nothing was written"
        harness.close()
        assert list(raw.scan_iter(match=f"{namespace}:*")) == []
    finally:
        raw.close()


def test_discarding_a_prefix_leaves_other_prefixes(redis_server: str) -> None:
    """MATCH takes a glob: a prefix with glob characters deletes its own keys only."""
    base = Harness.new_id("glob")
    mine, other = f"{base}*[x]", f"{base}-y-x"
    raw = redis.Redis.from_url(parse_url(redis_server).url)
    try:
        raw.set(f"{mine}:k", "1", ex=60)
        raw.set(f"{other}:k", "1", ex=60)
        query = urlencode({"prefix": mine})
        joiner = "&" if "?" in redis_server else "?"
        assert discard_prefix(parse_url(f"{redis_server}{joiner}{query}")) == 1
        assert raw.exists(f"{mine}:k") == 0
        assert raw.exists(f"{other}:k") == 1
    finally:
        raw.delete(f"{mine}:k", f"{other}:k")
        raw.close()
