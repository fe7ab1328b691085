"""Blueprints made by the builder run as built, on the memory driver (the callables given as
``uses`` are the registry)."""

from __future__ import annotations

from typing import Any

from flowcraft_core import NodeContext
from flowcraft_core.builder import Flow
from flowcraft_core.local import run_workflow_sync


def prepare(ctx: NodeContext) -> Any:
    return 21


def double(ctx: NodeContext) -> Any:
    return ctx.input * 2


def show(ctx: NodeContext) -> Any:
    return f"={ctx.input}"


def after(ctx: NodeContext) -> Any:
    return f"parent got {ctx.input}"


def child() -> Flow:
    return (
        Flow("child")
        .node("double", double, inputs="value")
        .node("format", show)
        .chain("double", "format")
    )


def test_a_subflow_made_by_the_builder_runs_its_child() -> None:
    """Flowcraft's semantics: without ``outputs`` the node's output is the child's one terminal
    output; with them, the named child outputs land in the parent's context (and the node's
    output is the child's whole context)."""
    for outputs in (None, {"result": "format"}):
        parent = (
            Flow("parent")
            .node("prepare", prepare)
            .subflow("call", child(), inputs={"value": "prepare"}, outputs=outputs)
            .node("after", after, inputs="result" if outputs else None)
            .chain("prepare", "call", "after")
        )
        result = run_workflow_sync(
            parent.to_blueprint(),
            {**parent.registry(), **child().registry()},
            blueprints=[child().to_blueprint()],
            timeout=30,
        )
        assert result.status == "completed", result.error
        assert result.outputs["after"] == "parent got =42"
        if outputs:
            assert result.context["result"] == "=42"
            assert result.outputs["call"]["_outputs.format"] == "=42"
        else:
            assert result.outputs["call"] == "=42"
