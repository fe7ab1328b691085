"""Workflows across real ``flowcraft worker`` processes on one SQLite file and on PostgreSQL:
many fan-in runs at once, and a worker killed outright mid-run.

The workers run the Redis tests' ``proc_nodes:registry``, which logs every node execution, so
the tests count how often each node's code ran.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
import services
from procs import (
    SLOW_FLOW,
    Procs,
    StepNode,
    read_log,
    results,
    starts_per_node,
    step_blueprint,
    step_outputs,
)

from flowcraft_core import Client, open_backends
from flowcraft_core.engine.keys import OUTPUT_PREFIX
from flowcraft_sql import SQLContextStore

#: a fan-out of three joined by an ``all`` join.
FAN_IN = (
    StepNode("split", 1),
    StepNode("a", 10, ("split",)),
    StepNode("b", 20, ("split",)),
    StepNode("c", 30, ("split",)),
    StepNode("merge", 0, ("a", "b", "c")),
)


def url_for(family: str, tmp_path: Path, **params: str) -> str:
    services.require(family)
    if family == "sqlite":
        return services.with_query(f"sqlite:///{tmp_path}/runs.db", **params)
    return services.server_url(family, ns=f"p{uuid.uuid4().hex[:12]}", **params)


async def committed(url: str, run_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(run, node) pairs whose output is committed in the database now."""
    store = SQLContextStore(url)
    try:
        found = await asyncio.gather(*(store.get_all(r) for r in run_ids))
    finally:
        await store.close()
    return {
        (run_id, key[len(OUTPUT_PREFIX) :])
        for run_id, values in zip(run_ids, found, strict=True)
        for key in values
        if key.startswith(OUTPUT_PREFIX)
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_three_processes_on_one_sqlite_file_run_200_fan_in_runs_exactly(
    tmp_path: Path,
) -> None:
    url = url_for("sqlite", tmp_path)
    log = tmp_path / "exec.log"
    flow = step_blueprint("fan-in", FAN_IN)
    with Procs(tmp_path, log) as procs:
        for _ in range(3):
            procs.worker(url, concurrency=4, ready=False)
        for proc in procs.procs:
            proc.wait_ready()
        client = Client(open_backends(url))
        try:
            started = time.monotonic()
            run_ids = await asyncio.gather(*(client.start(flow, {"x": x}) for x in range(200)))
            got = await results(client, run_ids, 240)
            elapsed = time.monotonic() - started
        finally:
            await client.close()
        print(f"200 fan-in runs on 3 processes sharing one SQLite file in {elapsed:.1f} s")
        assert all(p.popen.poll() is None for p in procs.procs), procs.stderr()
        assert "locked" not in procs.stderr().lower(), procs.stderr()

    for x, result in enumerate(got):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(FAN_IN, x)
    per_node = starts_per_node(read_log(log))
    assert per_node == Counter({(r, n.id): 1 for r in run_ids for n in FAN_IN})
    assert len({e.pid for e in read_log(log)}) == 3  # every process took part


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("family", ["sqlite", "postgresql"])
async def test_a_sigkilled_worker_loses_nothing_and_repeats_only_what_was_in_flight(
    family: str, tmp_path: Path
) -> None:
    # A short lease: the victim's jobs come back 2 s after it dies.
    url = url_for(family, tmp_path, lease="2")
    log = tmp_path / "exec.log"
    flow = step_blueprint("slow", SLOW_FLOW, delay=0.4)
    concurrency = 4

    with Procs(tmp_path, log) as procs:
        victim = procs.worker(url, concurrency=concurrency, ready=False)
        survivor = procs.worker(url, concurrency=concurrency, ready=False)
        victim.wait_ready()
        survivor.wait_ready()
        client = Client(open_backends(url))
        try:
            run_ids = [await client.start(flow, {"x": x}) for x in range(20)]
            deadline = time.monotonic() + 60
            while True:
                entries = read_log(log)
                ended = sum(1 for e in entries if e.phase == "end")
                mine = [e for e in entries if e.pid == victim.pid]
                open_ = {(e.run, e.node) for e in mine if e.phase == "start"} - {
                    (e.run, e.node) for e in mine if e.phase == "end"
                }
                if ended >= 12 and len(open_) >= 2:
                    break
                assert time.monotonic() < deadline, "the victim never had nodes in flight"
                await asyncio.sleep(0.02)
            victim.signal(signal.SIGKILL)
            assert victim.wait(10) == -signal.SIGKILL
            at_kill = await committed(url, run_ids)
            started_by_victim = {
                (e.run, e.node) for e in read_log(log) if e.pid == victim.pid and e.phase == "start"
            }
            in_flight = started_by_victim - at_kill
            assert in_flight, "the kill hit no node in flight"
            assert len(in_flight) <= concurrency
            got = await results(client, run_ids, 120)
        finally:
            await client.close()
        assert survivor.popen.poll() is None, procs.stderr()

    for x, result in enumerate(got):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(SLOW_FLOW, x)
    per_node = starts_per_node(read_log(log))
    assert set(per_node) == {(r, n.id) for r in run_ids for n in SLOW_FLOW}
    repeated = {key: n for key, n in per_node.items() if n != 1}
    # Exactly the nodes the kill caught between starting and committing ran again, once more.
    assert set(repeated) == in_flight, repeated
    assert all(n == 2 for n in repeated.values()), repeated
    # A node committed at the kill never ran again.
    assert all(per_node[key] == 1 for key in at_kill)
