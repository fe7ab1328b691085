"""The benchmarked workflow shapes, built from no-op nodes."""

from __future__ import annotations

from typing import Any

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.node import NodeContext
from flowcraft_core.registry import Registry


async def noop(ctx: NodeContext) -> Any:
    return None


async def tick(ctx: NodeContext) -> Any:
    ticks = (await ctx.context.get("ticks") or 0) + 1
    ctx.context.set("ticks", ticks)
    return ticks


async def zero(ctx: NodeContext) -> Any:
    ctx.context.set("ticks", 0)
    return 0


async def items(ctx: NodeContext) -> Any:
    return list(range(ctx.params["n"]))


registry = Registry({"noop": noop, "tick": tick, "zero": zero, "items": items})


def chain(size: int) -> Blueprint:
    """``size`` no-op nodes in a line."""
    nodes = [{"id": f"n{i}", "uses": "noop"} for i in range(size)]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(size - 1)]
    return Blueprint.from_dict({"id": f"chain-{size}", "nodes": nodes, "edges": edges})


def fanout(size: int) -> Blueprint:
    """A start node, ``size`` parallel no-op nodes and an ``all`` join."""
    nodes: list[dict[str, Any]] = [{"id": "start", "uses": "noop"}]
    nodes += [{"id": f"p{i}", "uses": "noop"} for i in range(size)]
    nodes.append({"id": "join", "uses": "noop"})
    edges = [{"source": "start", "target": f"p{i}"} for i in range(size)]
    edges += [{"source": f"p{i}", "target": "join"} for i in range(size)]
    return Blueprint.from_dict({"id": f"fanout-{size}", "nodes": nodes, "edges": edges})


#: The child every ``subflow-chain`` node runs: one no-op node.
SUBFLOW_CHILD = Blueprint.from_dict(
    {"id": "bench-child", "nodes": [{"id": "work", "uses": "noop"}], "edges": []}
)


def subflow_chain(size: int) -> Blueprint:
    """``size`` subflow nodes in a line, each running :data:`SUBFLOW_CHILD` as a child run (so
    a run is 1 + ``size`` runs; its nodes counted are the ``size`` subflow nodes)."""
    nodes = [
        {"id": f"s{i}", "uses": "subflow", "params": {"blueprintId": SUBFLOW_CHILD.id}}
        for i in range(size)
    ]
    edges = [{"source": f"s{i}", "target": f"s{i + 1}"} for i in range(size - 1)]
    return Blueprint.from_dict({"id": f"subflow-chain-{size}", "nodes": nodes, "edges": edges})


def loop(size: int) -> Blueprint:
    """A loop of ``size`` iterations over a 2-node no-op body (as ``.loop`` emits it), counted
    by a context key the body's first node bumps. Executed per run: 2 per iteration plus the
    ``size`` + 1 checks of the controller."""
    nodes = [
        {"id": "b1", "uses": "tick"},
        {"id": "b2", "uses": "noop"},
        {
            "id": "loop",
            "uses": "loop-controller",
            "params": {"condition": f"ticks < {size}", "maxIterations": size},
            "config": {"joinStrategy": "any"},
        },
        {"id": "enter", "uses": "zero"},
    ]
    edges = [
        {"source": "enter", "target": "loop"},
        {"source": "b1", "target": "b2"},
        {"source": "b2", "target": "loop"},
        {"source": "loop", "target": "b1", "action": "continue", "transform": 'context["b2"]'},
    ]
    return Blueprint.from_dict(
        {
            "id": f"loop-{size}",
            "nodes": nodes,
            "edges": edges,
            "metadata": {"executedNodes": 1 + 3 * size + 1},
        }
    )


def batch(size: int) -> Blueprint:
    """A batch of ``size`` items over a no-op worker (as ``.batch`` emits it). Executed per
    run: the items' node, the scatter, ``size`` workers and the gather."""
    nodes = [
        {"id": "items", "uses": "items", "params": {"n": size}},
        {
            "id": "b_scatter",
            "uses": "batch-scatter",
            "inputs": "items",
            "params": {"workerUsesKey": "noop", "outputKey": "out", "gatherNodeId": "b_gather"},
        },
        {
            "id": "b_gather",
            "uses": "batch-gather",
            "params": {"outputKey": "out", "gatherNodeId": "b_gather"},
            "config": {"joinStrategy": "all"},
        },
    ]
    edges = [
        {"source": "items", "target": "b_scatter"},
        {"source": "b_scatter", "target": "b_gather"},
    ]
    return Blueprint.from_dict(
        {
            "id": f"batch-{size}",
            "nodes": nodes,
            "edges": edges,
            "metadata": {"executedNodes": size + 3},
        }
    )


def executed(blueprint: Blueprint) -> int:
    """Node instances one run of ``blueprint`` executes (loops and batches run some many
    times)."""
    count = blueprint.metadata.get("executedNodes")
    return count if isinstance(count, int) else len(blueprint.nodes)


SHAPES = {
    "chain": chain,
    "fanout": fanout,
    "subflow-chain": subflow_chain,
    "loop": loop,
    "batch": batch,
}


def catalog(shape: str) -> list[Blueprint]:
    """The blueprints a shape's subflows name (the client's catalog; it pins them per run)."""
    return [SUBFLOW_CHILD] if shape == "subflow-chain" else []
