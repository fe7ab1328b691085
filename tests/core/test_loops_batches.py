"""Loops and batches on the memory driver: their bounds (a runaway loop, an oversized batch) end
the run with an error that names the node, and instances are what the engine keys them by."""

from __future__ import annotations

from typing import Any

from flowcraft_core.builtins import MAX_BATCH_ITEMS, MAX_ITERATIONS
from flowcraft_core.engine import CompiledFlow
from flowcraft_core.node import NodeContext

from .helpers import bp, harness

seen: list[str] = []


async def _tick(ctx: NodeContext) -> Any:
    seen.append(ctx.instance)
    return None


async def _many(ctx: NodeContext) -> Any:
    return list(range(ctx.params["n"]))


def _runaway() -> Any:
    return bp(
        [
            {"id": "enter", "uses": "tick"},
            {"id": "body", "uses": "tick"},
            {"id": "L", "uses": "loop-controller", "params": {"condition": "true"}},
        ],
        [
            {"source": "enter", "target": "L"},
            {"source": "body", "target": "L"},
            {"source": "L", "target": "body", "action": "continue"},
        ],
    )


async def test_a_loop_that_never_ends_fails_at_the_default_bound_naming_the_loop() -> None:
    seen.clear()
    async with harness({"tick": _tick}) as h:
        result = await h.run(_runaway(), timeout=60)
    assert result.status == "failed"
    assert result.error["node"] == "L"
    assert result.error["type"] == "LoopLimitExceeded"
    assert f"loop 'L' ran {MAX_ITERATIONS} iterations, its maxIterations" in result.error["message"]
    # Every iteration was a new instance of the body, numbered from 1, each run once.
    assert seen == ["0", *(f"0/{k}" for k in range(1, MAX_ITERATIONS + 1))]


def _batch(n: int) -> Any:
    return bp(
        [
            {"id": "items", "uses": "many", "params": {"n": n}},
            {
                "id": "b_scatter",
                "uses": "batch-scatter",
                "inputs": "items",
                "params": {"workerUsesKey": "tick", "gatherNodeId": "b_gather"},
            },
            {"id": "b_gather", "uses": "batch-gather", "params": {"outputKey": "out"}},
        ],
        [
            {"source": "items", "target": "b_scatter"},
            {"source": "b_scatter", "target": "b_gather"},
        ],
    )


async def test_a_batch_over_the_maximum_fails_naming_the_node_the_key_and_the_count() -> None:
    seen.clear()
    async with harness({"tick": _tick, "many": _many}) as h:
        result = await h.run(_batch(100_000), timeout=60)
    assert result.status == "failed"
    assert result.error["node"] == "b_scatter"
    assert result.error["type"] == "BatchTooLarge"
    assert result.error["message"] == (
        f"batch-scatter node 'b_scatter' got 100000 items (inputs 'items'); a batch has at "
        f"most {MAX_BATCH_ITEMS}"
    )
    assert seen == []  # no worker started


async def test_batch_workers_run_at_the_scatters_child_instances() -> None:
    seen.clear()
    async with harness({"tick": _tick, "many": _many}) as h:
        result = await h.run(_batch(5), timeout=60)
    assert result.status == "completed", result.error
    assert result.outputs["b_gather"] == [None] * 5
    assert sorted(seen) == [f"0/{i}" for i in range(5)]


def test_a_loops_entry_arrives_at_its_first_check() -> None:
    flow = CompiledFlow(_runaway())
    body, controller = flow.nodes["body"], flow.nodes["L"]
    assert body.frames == controller.frames == ("L",)
    entry = next(e for e in controller.incoming if e.source == "enter")
    assert flow.target_instance(entry, "0") == "0/0"  # the entry check
    inner = next(e for e in body.outgoing if e.target == "L")
    assert flow.target_instance(inner, "0/4") == "0/4"  # the check after iteration 4
