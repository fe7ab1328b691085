"""``Flow(...)`` gives the blueprints Flowcraft's own builder gives for the same calls.

tests/builder_parity/goldens.json is the output of tests/builder_parity/flows.mjs run on npm
``flowcraft@2.10.1`` (``make parity-goldens``). Each flow there has a twin of the same name here;
the comparison is of the JSON (dicts: key order aside, everything equal, edge order included).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.builder import Flow
from flowcraft_core.validation import check

GOLDENS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "builder_parity" / "goldens.json").read_text(encoding="utf-8")
)


# Classes named as in flows.mjs: both builders key a class by its name.
class Fetch:
    def exec(self, *args: Any) -> str:
        return "Fetch"


class Recover:
    def exec(self, *args: Any) -> str:
        return "Recover"


class Square:
    def exec(self, *args: Any) -> str:
        return "Square"


def plain() -> Flow:
    return (
        Flow("plain")
        .node(
            "fetch",
            Fetch,
            params={"url": "https://example.com/orders", "headers": {"accept": "json"}},
            max_retries=3,
            retry_delay=100,
            timeout=5000,
            fallback="recover",
        )
        .node("recover", Recover)
        .node("route", "Route", inputs="fetch.body")
        .node("merge", "Merge", inputs={"order": "fetch", "user": "_user"}, join="any")
        .wait("approve", params={"prompt": "ship it?"})
        .sleep("pause", duration="5s")
        .sleep("settle", duration=250)
        .edge("fetch", "route")
        .edge("route", "approve", action="big", condition="result.output.total > 100")
        .edge("route", "merge", action="small", transform="input.total")
        .edge("approve", "pause")
        .edge("pause", "settle")
        .edge("settle", "merge", condition='context.region === "eu"')
    )


def loop() -> Flow:
    return (
        Flow("loop")
        .node("init", "Init")
        .node("step", "Step")
        .node("check", "Check")
        .node("done", "Done")
        .edge("init", "step")
        .edge("step", "check")
        .loop("counter", start_node_id="step", end_node_id="check", condition="count < 5")
        .edge("counter", "done")
    )


def loop_entered_at_controller() -> Flow:
    return (
        Flow("loop-entered-at-controller")
        .node("initialize", "Init")
        .node("increment", "Step")
        .loop("counter", start_node_id="increment", end_node_id="increment", condition="count < 5")
        .node("finalize", "Done")
        .edge("initialize", "counter")
        .edge("counter", "finalize")
    )


def loop_exits() -> Flow:
    return (
        Flow("loop-exits")
        .loop(
            "poll",
            start_node_id="probe",
            end_node_id="probe",
            condition="probe.ready !== true && attempts < 10",
        )
        .node("start", "Start")
        .node("probe", "Probe")
        .node("ok", "Ok")
        .node("timeout", "Timeout")
        .edge("start", "probe")
        .edge("poll", "ok", condition="probe.ready === true")
        .edge("poll", "timeout", action="gave-up", transform="input.attempts")
    )


def nested_loop() -> Flow:
    return (
        Flow("nested-loop")
        .node("begin", "Begin")
        .node("row", "Row")
        .node("cell", "Cell")
        .node("rowDone", "RowDone")
        .node("finish", "Finish")
        .edge("begin", "row")
        .edge("row", "cell")
        .loop("cells", start_node_id="cell", end_node_id="cell", condition="col < 3")
        .edge("cells", "rowDone")
        .loop("rows", start_node_id="row", end_node_id="rowDone", condition="row < 2")
        .edge("rows", "finish")
    )


def batch() -> Flow:
    return (
        Flow("batch")
        .node("load", "Load")
        .batch("square", Square, input_key="numbers", output_key="squares", chunk_size=10)
        .node("sum", "Sum", inputs="squares")
        .batch("tag", "Tag", input_key="squares", output_key="tags")
        .edge("load", "square")
        .edge("square", "sum", transform="input.length")
        .edge("sum", "tag", condition="result.output > 0")
    )


def batch_in_loop() -> Flow:
    return (
        Flow("batch-in-loop")
        .node("begin", "Begin")
        .node("fetchPage", "FetchPage")
        .batch("process", "Process", input_key="page", output_key="processed", chunk_size=2)
        .node("save", "Save")
        .node("report", "Report")
        .edge("begin", "fetchPage")
        .edge("fetchPage", "process")
        .edge("process", "save")
        .loop(
            "pages",
            start_node_id="fetchPage",
            end_node_id="save",
            condition="save.hasMore === true",
        )
        .edge("pages", "report")
    )


def child() -> Flow:
    return (
        Flow("child")
        .node("double", "Double", inputs="value")
        .node("format", "Format")
        .edge("double", "format")
    )


def subflow_as_flowcraft_writes_it() -> Flow:
    """Flowcraft has no subflow verb: ``.node('call', SubflowNode, {params})``, keyed by the
    class's name."""
    return (
        Flow("subflow")
        .node("prepare", "Prepare")
        .node(
            "call",
            "SubflowNode",
            params={
                "blueprintId": "child",
                "inputs": {"value": "prepare"},
                "outputs": {"result": "format"},
            },
            max_retries=2,
        )
        .node("after", "After")
        .edge("prepare", "call")
        .edge("call", "after")
    )


def cycle_entry() -> Flow:
    return (
        Flow("cycle-entry")
        .node("a", "A")
        .node("b", "B")
        .edge("a", "b")
        .set_cycle_entry_point("b")
        .set_cycle_entry_point("a")
        .set_cycle_entry_point("b")
    )


TWINS: dict[str, Callable[[], Flow]] = {
    "plain": plain,
    "loop": loop,
    "loop-entered-at-controller": loop_entered_at_controller,
    "loop-exits": loop_exits,
    "nested-loop": nested_loop,
    "batch": batch,
    "batch-in-loop": batch_in_loop,
    "child": child,
    "subflow": subflow_as_flowcraft_writes_it,
    "cycle-entry": cycle_entry,
}


def test_goldens_are_flowcrafts_and_every_one_has_a_twin() -> None:
    assert GOLDENS["flowcraft"] == "2.10.1"
    assert set(GOLDENS["blueprints"]) == {*TWINS, "construct-to-construct"}


@pytest.mark.parametrize("name", sorted(TWINS))
def test_same_json_as_flowcrafts_builder(name: str) -> None:
    golden = GOLDENS["blueprints"][name]
    bp = TWINS[name]().to_blueprint()
    assert bp.to_dict() == golden
    # And Flowcraft's JSON reads back as the very blueprint the Python builder made.
    assert Blueprint.from_dict(golden) == bp


def test_subflow_verb_is_the_flowcraft_node_with_the_builtin_key() -> None:
    parent = (
        Flow("subflow")
        .node("prepare", "Prepare")
        .subflow(
            "call",
            child(),
            inputs={"value": "prepare"},
            outputs={"result": "format"},
            max_retries=2,
        )
        .node("after", "After")
        .edge("prepare", "call")
        .edge("call", "after")
    )
    golden = json.loads(json.dumps(GOLDENS["blueprints"]["subflow"]))
    (call,) = (n for n in golden["nodes"] if n["id"] == "call")
    assert call["uses"] == "SubflowNode"
    call["uses"] = "subflow"
    assert parent.to_blueprint().to_dict() == golden
    by_id = Flow("p").subflow("s", "child").to_blueprint()
    assert by_id.nodes[0].params == {"blueprintId": "child"}
    assert Flow("p").subflow("s", child().to_blueprint()).to_blueprint() == by_id


def test_every_flow_passes_validation() -> None:
    """Declared loops, batches and subflows as Flowcraft's builder emits them pass this
    runtime's structural checks (``uses`` keys aside: the goldens name classes only)."""
    for flow in TWINS.values():
        check(flow().to_blueprint())


def test_callable_workers_are_registered_and_named_by_qualname() -> None:
    flow = batch()
    assert flow.registry() == {"Square": Square}
    scatter = flow.to_blueprint().node("square_scatter")
    assert scatter.params["workerUsesKey"] == "Square"
    assert "chunkSize" not in flow.to_blueprint().node("tag_scatter").params


def test_an_edge_between_two_constructs_is_rewired_at_both_ends() -> None:
    """Flowcraft re-wires one end per copy of such an edge, so it emits edges naming the
    construct ids, which are not nodes; the Python builder emits one edge between real nodes,
    where Flowcraft's copies are (docs/flowcraft.md, deliberate differences)."""
    golden = GOLDENS["blueprints"]["construct-to-construct"]
    node_ids = {n["id"] for n in golden["nodes"]}
    dangling = [
        e for e in golden["edges"] if e["source"] not in node_ids or e["target"] not in node_ids
    ]
    assert dangling == [
        {"source": "again", "target": "first", "action": "break", "transform": 'context["a"]'},
        {"source": "first_gather", "target": "second"},
        {"source": "first", "target": "second_scatter"},
    ]
    bp = (
        Flow("construct-to-construct")
        .node("a", "A")
        .batch("first", Square, input_key="numbers", output_key="squares")
        .batch("second", "Tag", input_key="squares", output_key="tags")
        .loop("again", start_node_id="a", end_node_id="a", condition="n < 2")
        .edge("first", "second")
        .edge("again", "first")
        .to_blueprint()
    )
    ours = bp.to_dict()
    assert ours["nodes"] == golden["nodes"]
    rewired = [
        {
            "source": "again",
            "target": "first_scatter",
            "action": "break",
            "transform": 'context["a"]',
        },
        {"source": "first_gather", "target": "second_scatter"},
    ]
    # Flowcraft's first four edges are the two halves of each; the rest are the same.
    assert golden["edges"][:4] == [
        dangling[0],
        {"source": "again", "target": "first_scatter"},
        dangling[1],
        dangling[2],
    ]
    assert ours["edges"] == rewired + golden["edges"][4:]


@pytest.mark.parametrize("name", ["no-nodes", "missing-start", "missing-end"])
def test_same_errors_as_flowcrafts_builder(name: str) -> None:
    flows = {
        "no-nodes": lambda: Flow("empty"),
        "missing-start": lambda: (
            Flow("f")
            .node("end", "Done")
            .loop("loop1", start_node_id="nonexistent", end_node_id="end", condition="i < 10")
        ),
        "missing-end": lambda: (
            Flow("f")
            .node("start", "Start")
            .loop("loop1", start_node_id="start", end_node_id="nonexistent", condition="i < 10")
        ),
    }
    with pytest.raises(ValueError) as info:
        flows[name]().to_blueprint()
    assert str(info.value) == GOLDENS["errors"][name]


def test_to_blueprint_is_repeatable_and_max_iterations_is_a_param() -> None:
    flow = batch_in_loop()
    assert flow.to_blueprint() == flow.to_blueprint()
    bp = (
        Flow("f")
        .node("a", "A")
        .loop("l", start_node_id="a", end_node_id="a", condition="true", max_iterations=50)
        .to_blueprint()
    )
    assert bp.node("l").params == {"condition": "true", "maxIterations": 50}
