"""The benchmarked workflow shapes, built from no-op nodes."""

from __future__ import annotations

from typing import Any

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.node import NodeContext
from flowcraft_core.registry import Registry


async def noop(ctx: NodeContext) -> Any:
    return None


registry = Registry({"noop": noop})


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


SHAPES = {"chain": chain, "fanout": fanout, "subflow-chain": subflow_chain}


def catalog(shape: str) -> list[Blueprint]:
    """The blueprints a shape's subflows name (the client's catalog; it pins them per run)."""
    return [SUBFLOW_CHILD] if shape == "subflow-chain" else []
