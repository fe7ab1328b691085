"""A worker SIGKILLed in the middle of a 1,000-item batch and of a 100-iteration loop, with real
worker processes on Redis: both runs complete exactly and no committed node instance runs
again (only the instances in flight at the kill run a second time)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from procs import Procs, read_log, results, starts_per_node

from flowcraft_core import Blueprint, Client, open_backends
from flowcraft_redis import parse_url

pytestmark = pytest.mark.slow  # real worker processes, SIGKILL

ITEMS = 1000
ITERATIONS = 100

BATCH = Blueprint.from_dict(
    {
        "id": "kill-batch",
        "nodes": [
            {
                "id": "b_scatter",
                "uses": "batch-scatter",
                "inputs": "items",
                "params": {"workerUsesKey": "item", "gatherNodeId": "b_gather", "chunkSize": 16},
            },
            {"id": "b_gather", "uses": "batch-gather", "params": {"outputKey": "out"}},
        ],
        "edges": [{"source": "b_scatter", "target": "b_gather"}],
    }
)
LOOP = Blueprint.from_dict(
    {
        "id": "kill-loop",
        "nodes": [
            {"id": "enter", "uses": "echo_instance"},
            {"id": "t1", "uses": "tick"},
            {"id": "t2", "uses": "echo_instance"},
            {
                "id": "L",
                "uses": "loop-controller",
                "params": {"condition": f"n < {ITERATIONS}"},
                "config": {"joinStrategy": "any"},
            },
        ],
        "edges": [
            {"source": "enter", "target": "L"},
            {"source": "t1", "target": "t2"},
            {"source": "t2", "target": "L"},
            {"source": "L", "target": "t1", "action": "continue"},
        ],
    }
)


def committed_instances(url: str, run_ids: list[str]) -> set[tuple[str, str]]:
    """(run, ``node#instance``) of every node instance whose output is committed now."""
    settings = parse_url(url)
    client = redis.Redis.from_url(settings.url, decode_responses=True)
    try:
        found = {r: client.hkeys(f"{settings.prefix}:ctx:{r}") for r in run_ids}
    finally:
        client.close()
    out = set()
    for run_id, fields in found.items():
        for key in fields:
            if key.startswith("_outputs#"):
                instance, _, node = key[len("_outputs#") :].partition(".")
                out.add((run_id, f"{node}#{instance}"))
            elif key.startswith("_outputs."):
                out.add((run_id, f"{key[len('_outputs.') :]}#0"))
    return out


@pytest.mark.timeout(300)
async def test_sigkill_in_a_batch_and_a_loop_completes_both_exactly(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    log = tmp_path / "exec.log"
    with Procs(tmp_path, log) as procs:
        victim = procs.worker(url, concurrency=4, ready=False)
        survivor = procs.worker(url, concurrency=4, ready=False)
        victim.wait_ready()
        survivor.wait_ready()
        client = Client(open_backends(url))
        try:
            batch = await client.start(BATCH, None, context={"items": list(range(ITEMS))})
            loop = await client.start(LOOP, None, context={"n": 0})
            run_ids = [batch, loop]
            deadline = time.monotonic() + 60
            while True:
                entries = read_log(log)
                items_done = sum(1 for e in entries if e.run == batch and e.phase == "end")
                ticks = sum(1 for e in entries if e.run == loop and e.phase == "end")
                mine = [e for e in entries if e.pid == victim.pid]
                open_ = {(e.run, e.node) for e in mine if e.phase == "start"} - {
                    (e.run, e.node) for e in mine if e.phase == "end"
                }
                if items_done >= 100 and ticks >= 20 and open_:
                    break
                assert time.monotonic() < deadline, "the kill never found the runs mid-way"
                await asyncio.sleep(0.005)
            victim.signal(signal.SIGKILL)
            assert victim.wait(10) == -signal.SIGKILL
            at_kill = committed_instances(url, run_ids)
            started_by_victim = {
                (e.run, e.node) for e in read_log(log) if e.pid == victim.pid and e.phase == "start"
            }
            in_flight = started_by_victim - at_kill
            print(f"killed with {len(at_kill)} instances committed, {len(in_flight)} in flight")
            procs.worker(url, concurrency=4)  # a replacement
            got = await results(client, run_ids, 240)
        finally:
            await client.close()
        assert survivor.popen.poll() is None, procs.stderr()

    batch_result, loop_result = got
    assert batch_result.status == "completed", batch_result
    assert batch_result.outputs["b_gather"] == [i * 10 for i in range(ITEMS)]
    assert batch_result.context["out"] == [i * 10 for i in range(ITEMS)]
    assert loop_result.status == "completed", loop_result
    assert loop_result.context == {"n": ITERATIONS}
    assert loop_result.outputs["t1"] == ITERATIONS

    per_instance = starts_per_node(read_log(log))
    worker = "b_scatter/worker"
    expected = {(batch, f"{worker}#0/{i}") for i in range(ITEMS)}
    expected |= {(loop, f"{n}#0/{k}") for n in ("t1", "t2") for k in range(1, ITERATIONS + 1)}
    expected.add((loop, "enter#0"))
    assert set(per_instance) == expected
    repeated = {key: n for key, n in per_instance.items() if n != 1}
    # Only instances caught between starting and committing ran again, once more; none
    # committed at the kill ran again.
    assert set(repeated) <= in_flight, repeated
    assert all(n == 2 for n in repeated.values()), repeated
    assert all(per_instance[key] == 1 for key in at_kill if key in per_instance)
