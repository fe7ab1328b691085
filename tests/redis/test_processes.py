"""Workflows across real ``flowcraft worker`` processes on a real Redis: many at once, a worker
killed outright, a worker stopped gracefully, a worker without an implementation, and an output
Redis cannot store.

Workers run ``proc_nodes:registry`` (the example's order nodes plus ``step`` nodes), whose every
execution is appended to a log file, so the tests can count how often each node's code ran.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from proc_nodes import partial_registry, registry
from procs import (
    EXAMPLE,
    SLOW_FLOW,
    Procs,
    StepNode,
    committed,
    read_log,
    results,
    starts,
    starts_per_node,
    step_blueprint,
    step_outputs,
)

from flowcraft_core import Blueprint, Client, EngineSettings, Worker, open_backends
from flowcraft_redis import parse_url

# real worker processes, SIGKILL and SIGTERM: seconds each
pytestmark = pytest.mark.slow

# -- the example's logic, re-stated independently ---------------------------------------------

KNOWN_SKUS = {"book", "lamp", "desk"}


def make_order(i: int) -> dict[str, Any]:
    order_id = f"O-{i}"
    if i % 10 == 3:
        items = [{"sku": "pony", "qty": 1, "price": 5}, {"sku": "book", "qty": 1, "price": 12.5}]
    elif i % 10 == 7:
        items = []
    elif i == 50:
        items = [{"sku": "desk", "qty": 1, "price": 500}]  # exactly 500: no approval needed
    elif i % 40 == 11:
        items = [{"sku": "desk", "qty": 2, "price": 400}]  # over 500: waits for a manager
    else:
        items = [
            {"sku": "book", "qty": 1 + i % 3, "price": 10 + (i % 7) * 0.25},
            {"sku": "lamp", "qty": 1 + i % 2, "price": 30},
        ]
    return {"order_id": order_id, "items": items}


def expected_outputs(order: dict[str, Any], approver: str = "maria") -> dict[str, Any]:
    items = order["items"]
    problems = [f"unknown sku {i['sku']!r}" for i in items if i["sku"] not in KNOWN_SKUS]
    if not items:
        problems.append("the order has no items")
    total = round(sum(i["qty"] * i["price"] for i in items if i["sku"] in KNOWN_SKUS), 2)
    summary = {"order_id": order["order_id"], "items": items, "total": total}
    if problems:
        return {
            "validate": {**summary, "problems": problems},
            "reject": {"order_id": order["order_id"], "rejected": problems},
        }
    reserved = {i["sku"]: i["qty"] for i in items}
    cost = 4.5 + 0.5 * sum(i["qty"] for i in items)
    outputs: dict[str, Any] = {
        "validate": summary,
        "reserve": {"reserved": reserved},
        "charge": {"charged": total, "attempt": 2},
        "shipping": {"carrier": "parcel", "cost": cost},
        "pack": {"reserved": reserved, "charged": total, "shipping": cost},
    }
    if total <= 500:
        outputs["auto_approve"] = {"approved_by": "policy", "total": total}
        outputs["ship"] = {"status": "shipped", "approved_by": "policy"}
    else:
        outputs["manager_approval"] = {"approved_by": approver}
        outputs["ship"] = {"status": "shipped", "approved_by": approver}
    return outputs


def expected_executions(order: dict[str, Any]) -> Counter[tuple[str, int]]:
    """(node, attempt) executions of one order: the payment gateway fails attempt 1."""
    outputs = expected_outputs(order)
    counts: Counter[tuple[str, int]] = Counter()
    for node in outputs:
        if node != "manager_approval":  # a built-in wait: no code runs
            counts[(node, 1)] += 1
    if "charge" in outputs:
        counts[("charge", 2)] += 1
    return counts


#: a fan-out of three with a retrying branch, joined by an ``all`` join.
FAN_FLOW = (
    StepNode("split", 1),
    StepNode("a", 10, ("split",)),
    StepNode("b", 20, ("split",), uses="flaky", config={"maxRetries": 3, "retryDelay": 20}),
    StepNode("c", 30, ("split",)),
    StepNode("merge", 0, ("a", "b", "c")),
)


def per_run(counts: Counter[tuple[str, str, int]], run_id: str) -> Counter[tuple[str, int]]:
    return Counter({(node, att): n for (run, node, att), n in counts.items() if run == run_id})


# -- many runs, three worker processes -----------------------------------------------------------


@pytest.mark.timeout(180)
async def test_three_worker_processes_run_many_workflows_exactly(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    log = tmp_path / "exec.log"
    example = Blueprint.load(EXAMPLE)
    fan = step_blueprint("fan", FAN_FLOW)
    orders = [make_order(i) for i in range(200)]
    assert sum(1 for o in orders if expected_outputs(o)["validate"].get("problems")) >= 30
    big = {o["order_id"] for o in orders if expected_outputs(o).get("manager_approval")}
    assert len(big) == 5

    with Procs(tmp_path, log) as procs:
        for _ in range(3):
            procs.worker(url, concurrency=4, ready=False)
        for proc in procs.procs:
            proc.wait_ready()
        client = Client(open_backends(url))
        try:
            started = time.monotonic()
            order_runs = await asyncio.gather(*(client.start(example, o) for o in orders))
            fan_runs = await asyncio.gather(*(client.start(fan, {"x": i}) for i in range(40)))
            got = dict(zip(order_runs, await results(client, order_runs, 90), strict=True))
            by_order = dict(zip(order_runs, orders, strict=True))
            parked = [r for r, res in got.items() if res.status == "awaiting"]
            assert {by_order[r]["order_id"] for r in parked} == big
            for run_id in parked:
                await client.resume(run_id, "approve", {"approved_by": "maria"})
            got.update(zip(parked, await results(client, parked, 60), strict=True))
            fan_got = await results(client, fan_runs, 60)
            elapsed = time.monotonic() - started
        finally:
            await client.close()
        print(f"{len(orders) + len(fan_runs)} runs on 3 worker processes in {elapsed:.1f} s")
        assert all(p.popen.poll() is None for p in procs.procs), procs.stderr()

    for run_id, order in by_order.items():
        result = got[run_id]
        assert result.status == "completed", (order, result)
        assert result.error is None
        assert result.outputs == expected_outputs(order), order
    for x, result in enumerate(fan_got):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(FAN_FLOW, x)

    # No node's code ran more than once per committed result (per attempt).
    counts = starts(read_log(log))
    for run_id, order in by_order.items():
        assert per_run(counts, run_id) == expected_executions(order), order
    fan_expected = Counter({(n.id, 1): 1 for n in FAN_FLOW} | {("b", 2): 1})
    for run_id in fan_runs:
        assert per_run(counts, run_id) == fan_expected, run_id
    assert sum(counts.values()) == sum(sum(expected_executions(o).values()) for o in orders) + len(
        fan_runs
    ) * sum(fan_expected.values())
    # All three processes took part.
    assert len({e.pid for e in read_log(log)}) == 3


# -- a worker killed outright ---------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_a_sigkilled_worker_loses_nothing_and_repeats_only_what_was_in_flight(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
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

            # Kill the victim once nodes have committed and it is in the middle of some.
            deadline = time.monotonic() + 30
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
            at_kill = committed(url, run_ids)
            started_by_victim = {
                (e.run, e.node) for e in read_log(log) if e.pid == victim.pid and e.phase == "start"
            }
            in_flight = started_by_victim - at_kill
            assert in_flight, "the kill hit no node in flight"
            assert len(in_flight) <= concurrency
            print(f"killed with {len(at_kill)} nodes committed, {len(in_flight)} in flight")

            procs.worker(url, concurrency=concurrency)  # a replacement
            got = await results(client, run_ids, 90)
        finally:
            await client.close()
        assert survivor.popen.poll() is None, procs.stderr()

    for x, result in enumerate(got):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(SLOW_FLOW, x)

    per_node = starts_per_node(read_log(log))
    expected = {(r, n.id) for r in run_ids for n in SLOW_FLOW}
    assert set(per_node) == expected
    repeated = {key: n for key, n in per_node.items() if n != 1}
    # Exactly the nodes the kill caught between starting and committing ran again, once more.
    assert set(repeated) == in_flight, repeated
    assert all(n == 2 for n in repeated.values()), repeated
    # A node committed at the kill never ran again.
    assert all(per_node[key] == 1 for key in at_kill)


# -- a worker stopped gracefully -------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_sigterm_finishes_the_running_node_and_another_worker_completes_the_run(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    log = tmp_path / "exec.log"
    gate = tmp_path / "gate"  # `hold` runs until the first worker was told to stop
    # The job may continue inline with one successor of `hold`; the other goes to the queue.
    nodes = (StepNode("hold", 1), StepNode("left", 2, ("hold",)), StepNode("right", 3, ("hold",)))
    flow = Blueprint.from_dict(
        {
            "id": "hold",
            "nodes": [
                {"id": "hold", "uses": "gated", "params": {"add": 1, "gate": str(gate)}},
                {"id": "left", "uses": "step", "params": {"add": 2}},
                {"id": "right", "uses": "step", "params": {"add": 3}},
            ],
            "edges": [{"source": "hold", "target": "left"}, {"source": "hold", "target": "right"}],
        }
    )
    settings = parse_url(url)
    raw = redis.Redis.from_url(settings.url, decode_responses=True)

    with Procs(tmp_path, log) as procs:
        first = procs.worker(url, concurrency=1)
        client = Client(open_backends(url))
        try:
            run_id = await client.start(flow, {"x": 5})
            deadline = time.monotonic() + 20
            while not any(e.node == "hold" for e in read_log(log)):
                assert time.monotonic() < deadline, procs.stderr()
                await asyncio.sleep(0.02)
            # Two more runs, which the busy worker prefetches (Dramatiq takes two per thread).
            others = [await client.start(flow, {"x": x}) for x in (6, 7)]
            await asyncio.sleep(0.5)
            second = procs.worker(url, concurrency=2)
            assert not any(e.phase == "end" for e in read_log(log))
            termed = time.time()
            first.signal(signal.SIGTERM)
            gate.touch()
            code = await asyncio.to_thread(first.wait, 30)
            exited = time.time()
            assert code == 0, first.stderr()
            # It exited after the node finished, with the node's result committed.
            ends = [
                e
                for e in read_log(log)
                if e.phase == "end" and e.node == "hold" and e.run == run_id
            ]
            assert [(e.run, e.pid) for e in ends] == [(run_id, first.pid)]
            assert termed < ends[0].at <= exited
            assert raw.hexists(f"{settings.prefix}:ctx:{run_id}", "_outputs.hold")
            got = await results(client, [run_id, *others], 30)
        finally:
            await client.close()
            raw.close()
        assert second.popen.poll() is None, procs.stderr()

    for x, result in zip((5, 6, 7), got, strict=True):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(nodes, x)
    entries = read_log(log)
    per_node = starts_per_node(entries)
    names = [n.id for n in nodes]
    assert per_node == Counter({(r, n): 1 for r in (run_id, *others) for n in names})
    on_second = {(e.run, e.node) for e in entries if e.pid == second.pid}
    # The run went on on the other worker; the stopped worker's prefetched runs ran there.
    assert on_second & {(run_id, "left"), (run_id, "right")}, entries
    assert {(r, n) for r in others for n in names} <= on_second
    # What the stopped worker had prefetched went back at once, not after a heartbeat timeout.
    later = [e.at for e in entries if e.run in others and e.node == "hold" and e.phase == "start"]
    assert max(later) < exited + 2.0, (max(later) - exited, procs.stderr())


# -- a worker without an implementation -----------------------------------------------------------

MISSING_FLOW = (StepNode("a", 1), StepNode("b", 2, ("a",), uses="step_b"))


@pytest.mark.timeout(60)
async def test_a_missing_implementation_fails_the_run_naming_the_key(
    make_url: Callable[..., str],
) -> None:
    # `flowcraft worker` has no option for the missing-implementation retries (8, from 0.5 s
    # doubling: about 90 s), so this drives an in-process Worker on the Redis backends.
    url = make_url()
    flow = step_blueprint("missing", MISSING_FLOW)
    backends = open_backends(url)
    worker = Worker(
        partial_registry,
        backends,
        concurrency=2,
        settings=EngineSettings(missing_retries=2, missing_delay=0.05),
    )
    client = Client(open_backends(url))
    try:
        await worker.start()
        run_id = await client.start(flow, {"x": 1})
        result = await client.result(run_id, timeout=30)
    finally:
        await worker.stop()
        await client.close()
        await backends.close()
    assert result.status == "failed", result
    assert result.outputs == {"a": {"node": "a", "value": 2}}
    error = result.error
    assert error is not None
    assert error["node"] == "b"
    assert error["type"] == "MissingImplementation"
    assert "'step_b'" in error["message"]
    assert "after 2 retries" in error["message"]


@pytest.mark.timeout(90)
async def test_a_worker_without_the_implementation_does_not_drop_the_job(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    flow = step_blueprint("missing", MISSING_FLOW)
    settings = parse_url(url)
    raw = redis.Redis.from_url(settings.url, decode_responses=True)
    with Procs(tmp_path) as procs:
        lacking = procs.worker(url, "proc_nodes:partial_registry", concurrency=2)
        client = Client(open_backends(url))
        try:
            run_id = await client.start(flow, {"x": 1})
            tries = f"{settings.prefix}:co:run:{run_id}:missing:b#0"
            deadline = time.monotonic() + 30
            while int(raw.get(tries) or 0) < 1:
                assert time.monotonic() < deadline, lacking.stderr()
                await asyncio.sleep(0.05)
            assert await client.status(run_id) == "running"
            lacking.signal(signal.SIGTERM)
            assert await asyncio.to_thread(lacking.wait, 30) == 0, lacking.stderr()
            assert "no implementation for uses='step_b'" in lacking.stderr()
            procs.worker(url, concurrency=2)
            result = await client.result(run_id, timeout=60)
        finally:
            await client.close()
            raw.close()
    assert result.status == "completed", result
    assert result.outputs == step_outputs(MISSING_FLOW, 1)


# -- an output Redis cannot store -----------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("kind", "detail"),
    [
        ("set", "not JSON serializable"),
        ("nan", "Out of range float values are not JSON compliant"),
        ("context", "not JSON serializable"),
    ],
)
async def test_an_output_without_a_json_form_fails_the_node(
    make_url: Callable[..., str], kind: str, detail: str
) -> None:
    url = make_url()
    flow = Blueprint.from_dict(
        {
            "id": "unserialisable",
            "nodes": [
                {"id": "first", "uses": "step", "params": {"add": 1}},
                {"id": "bad", "uses": "unserialisable", "params": {"kind": kind}},
                {"id": "never", "uses": "step"},
            ],
            "edges": [
                {"source": "first", "target": "bad"},
                {"source": "bad", "target": "never"},
            ],
        }
    )
    backends = open_backends(url)
    worker = Worker(registry, backends, concurrency=2)
    client = Client(open_backends(url))
    try:
        await worker.start()
        run_id = await client.start(flow, {"x": 1})
        result = await client.result(run_id, timeout=30)
        context = await client.backends.context.get_all(run_id)
    finally:
        await worker.stop()
        await client.close()
        await backends.close()
    assert result.status == "failed", result
    assert result.outputs == {"first": {"node": "first", "value": 2}}
    error = result.error
    assert error is not None
    assert error["node"] == "bad"
    assert error["type"] == "OutputNotSerializable"
    assert "node 'bad' returned an output (or context write)" in error["message"]
    assert "JSON-serialisable" in error["message"]
    assert detail in error["message"]
    assert "handle" not in context  # nothing of the failed commit was written
