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


async def increment(ctx: NodeContext) -> Any:
    count = (await ctx.get("count", 0)) + 1
    ctx.context.set("count", count)
    return count


def begin(ctx: NodeContext) -> Any:
    return "begin"


def tenfold(ctx: NodeContext) -> Any:
    return ctx.input * 10


def finish(ctx: NodeContext) -> Any:
    return f"done:{ctx.input}"


def square(ctx: NodeContext) -> Any:
    return ctx.input * ctx.input


def total(ctx: NodeContext) -> Any:
    return sum(ctx.input)


def test_a_loop_made_by_the_builder_runs_until_its_condition_fails() -> None:
    flow = (
        Flow("loop")
        .node("begin", begin)
        .node("step", increment)
        .node("check", tenfold)
        .node("done", finish)
        .chain("begin", "step", "check")
        .loop("counter", start_node_id="step", end_node_id="check", condition="count < 5")
        .edge("counter", "done")
    )
    result = run_workflow_sync(flow.to_blueprint(), flow.registry(), timeout=30)
    assert result.status == "completed", result.error
    # The last iteration's outputs; the break edge carries the body's end (context["check"]).
    assert result.outputs["step"] == 5
    assert result.outputs["check"] == 50
    assert result.outputs["done"] == "done:50"
    assert result.context["count"] == 5


def test_a_batch_made_by_the_builder_maps_its_worker_over_the_items() -> None:
    flow = (
        Flow("batch")
        .batch("sq", square, input_key="numbers", output_key="squares", chunk_size=2)
        .node("sum", total, inputs="squares")
        .edge("sq", "sum")
    )
    result = run_workflow_sync(
        flow.to_blueprint(), flow.registry(), context={"numbers": [1, 2, 3, 4, 5]}, timeout=30
    )
    assert result.status == "completed", result.error
    assert result.outputs["sq_gather"] == [1, 4, 9, 16, 25]
    assert result.context["squares"] == [1, 4, 9, 16, 25]
    assert result.outputs["sum"] == 55


async def fetch_page(ctx: NodeContext) -> Any:
    page = (await ctx.get("page_no", 0)) + 1
    ctx.context.set("page_no", page)
    ctx.context.set("page", [page * 10 + 1, page * 10 + 2])
    return page


async def save(ctx: NodeContext) -> Any:
    return {"hasMore": (await ctx.get("page_no")) < 3, "sum": sum(ctx.input)}


def report(ctx: NodeContext) -> Any:
    return ctx.input["sum"]


def test_a_batch_inside_a_loop_made_by_the_builder() -> None:
    flow = (
        Flow("pages")
        .node("begin", begin)
        .node("fetchPage", fetch_page)
        .batch("process", double, input_key="page", output_key="processed", chunk_size=1)
        .node("save", save)
        .node("report", report)
        .chain("begin", "fetchPage", "process", "save")
        .loop("pages", start_node_id="fetchPage", end_node_id="save", condition="save.hasMore")
        .edge("pages", "report")
    )
    result = run_workflow_sync(flow.to_blueprint(), flow.registry(), timeout=30)
    assert result.status == "completed", result.error
    assert result.context["page_no"] == 3
    assert result.context["processed"] == [62, 64]  # the last page's items, doubled
    assert result.outputs["report"] == 126


async def new_row(ctx: NodeContext) -> Any:
    row = (await ctx.get("row", 0)) + 1
    ctx.context.set("row", row)
    ctx.context.set("col", 0)
    return row


async def cell(ctx: NodeContext) -> Any:
    col = (await ctx.get("col")) + 1
    ctx.context.set("col", col)
    ctx.context.set("cells", (await ctx.get("cells", 0)) + 1)
    return col


async def row_done(ctx: NodeContext) -> Any:
    return f"{await ctx.get('row')}:{ctx.input}"


def test_nested_loops_made_by_the_builder() -> None:
    flow = (
        Flow("grid")
        .node("begin", begin)
        .node("row", new_row)
        .node("cell", cell)
        .node("rowDone", row_done)
        .node("finish", finish)
        .chain("begin", "row", "cell")
        .loop("cells", start_node_id="cell", end_node_id="cell", condition="col < 3")
        .edge("cells", "rowDone")
        .loop("rows", start_node_id="row", end_node_id="rowDone", condition="row < 2")
        .edge("rows", "finish")
    )
    result = run_workflow_sync(flow.to_blueprint(), flow.registry(), timeout=30)
    assert result.status == "completed", result.error
    assert result.context["cells"] == 6
    assert result.outputs["rowDone"] == "2:3"
    assert result.outputs["finish"] == "done:2:3"
