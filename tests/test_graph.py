"""Mermaid rendering."""

from __future__ import annotations

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeConfig, NodeDef
from flowcraft_core.builder import Flow
from flowcraft_core.graph import escape, to_mermaid


def test_renders_nodes_edges_and_shapes() -> None:
    bp = (
        Flow("order")
        .node("fetch", "fetch_order", fallback="recover")
        .node("recover", "refund")
        .wait("approve")
        .sleep("pause", duration=10)
        .edge("fetch", "approve", action="ok", condition="result.output.total > 100")
        .edge("fetch", "pause", action="small")
        .edge("approve", "pause", condition="true")
        .edge("pause", "end")
        .node("end", "finish")
        .to_blueprint()
    )
    assert to_mermaid(bp) == (
        "flowchart TD\n"
        '    n0["fetch<br/>fetch_order"]\n'
        '    n1["recover<br/>refund"]\n'
        '    n2{{"approve<br/>wait"}}\n'
        '    n3(["pause<br/>sleep"])\n'
        '    n4["end<br/>finish"]\n'
        '    n0 -->|"ok if result.output.total #62; 100"| n2\n'
        '    n0 -->|"small"| n3\n'
        '    n2 -->|"if true"| n3\n'
        "    n3 --> n4\n"
        '    n0 -.->|"fallback"| n1\n'
    )


def test_escapes_everything_user_supplied() -> None:
    bp = Blueprint(
        "f",
        nodes=(NodeDef('a"b|c', "x<y>&`z`#1"),),
        edges=(EdgeDef('a"b|c', 'a"b|c', action="a|b", condition="'x\"' in result\n|| 1"),),
    )
    text = to_mermaid(bp)
    body = text.split("\n", 1)[1]
    for raw in ('a"b', "b|c", "<y>", "&", "`"):
        assert raw not in body
    assert '    n0["a#34;b#124;c<br/>x#60;y#62;#38;#96;z#96;#35;1"]' in text
    assert "    n0 -->|\"a#124;b if 'x#34;' in result #124;#124; 1\"| n0" in text
    assert text.count("\n") == 3


def test_missing_nodes_are_drawn_as_missing() -> None:
    bp = Blueprint(
        "f",
        nodes=(NodeDef("a", "x", config=NodeConfig(fallback="gone")),),
        edges=(EdgeDef("ghost", "a"),),
    )
    assert to_mermaid(bp) == (
        "flowchart TD\n"
        '    n0["a<br/>x"]\n'
        '    n1["ghost<br/>(missing)"]\n'
        "    n1 --> n0\n"
        '    n2["gone<br/>(missing)"]\n'
        '    n0 -.->|"fallback"| n2\n'
    )


def test_escape_is_single_line() -> None:
    assert escape("a\n  b\tc") == "a b c"
    assert escape("#quot;") == "#35;quot;"


def test_a_loop_is_drawn_as_a_loop() -> None:
    """The controller is a decision; its continue edge goes back to the body's start, thick and
    labelled with the loop's condition; the ways out are break edges."""
    bp = (
        Flow("poll")
        .node("start", "begin")
        .node("probe", "check")
        .node("ok", "done")
        .edge("start", "probe")
        .loop("again", start_node_id="probe", end_node_id="probe", condition="tries < 3")
        .edge("again", "ok", condition="probe.ready")
        .to_blueprint()
    )
    assert to_mermaid(bp) == (
        "flowchart TD\n"
        '    n0["start<br/>begin"]\n'
        '    n1["probe<br/>check"]\n'
        '    n2["ok<br/>done"]\n'
        '    n3{"again<br/>loop-controller"}\n'
        '    n3 -->|"break if probe.ready"| n2\n'
        "    n0 --> n1\n"
        "    n1 --> n3\n"
        '    n3 ==>|"continue if tries #60; 3"| n1\n'
    )


def test_a_batch_is_one_fan_out_through_a_stacked_worker() -> None:
    bp = (
        Flow("squares")
        .node("load", "load")
        .batch("sq", "square", input_key="numbers", output_key="squares", chunk_size=5)
        .node("sum", "sum")
        .edge("load", "sq")
        .edge("sq", "sum")
        .to_blueprint()
    )
    assert to_mermaid(bp) == (
        "flowchart TD\n"
        '    n0["load<br/>load"]\n'
        '    n1[/"sq_scatter<br/>batch-scatter"\\]\n'
        '    n2@{ shape: procs, label: "square<br/>per item" }\n'
        '    n3[\\"sq_gather<br/>batch-gather"/]\n'
        '    n4["sum<br/>sum"]\n'
        "    n0 --> n1\n"
        "    n3 --> n4\n"
        '    n1 -->|"each of numbers, 5 at a time"| n2\n'
        '    n2 -->|"results in order"| n3\n'
    )


def test_a_batch_inside_a_loop_and_a_subflow() -> None:
    bp = (
        Flow("pages")
        .node("fetch", "fetch_page")
        .batch("each", "process", input_key="page", output_key="done")
        .subflow("save", 'archive "v2"', inputs={"rows": "done"})
        .edge("fetch", "each")
        .edge("each", "save")
        .loop("more", start_node_id="fetch", end_node_id="save", condition="save.more")
        .to_blueprint()
    )
    text = to_mermaid(bp)
    assert '    n4[["save<br/>subflow: archive #34;v2#34;"]]\n' in text
    assert '    n1 -->|"each of page"| n2\n' in text
    assert '    n2 -->|"results in order"| n3\n' in text
    assert "    n3 --> n4\n" in text  # the gather continues to the subflow
    assert '    n5 ==>|"continue if save.more"| n0\n' in text
    assert "n1 --> n3" not in text  # the scatter -> gather edge is the worker's


def test_broken_batches_and_subflows_are_still_drawn() -> None:
    """A scatter without a worker key or an existing gather, a subflow without a blueprint id:
    drawn as they are, never an error."""
    bp = Blueprint(
        "f",
        nodes=(
            NodeDef("s", "batch-scatter", params={"gatherNodeId": "nowhere"}),
            NodeDef("t", "batch-scatter", params={"workerUsesKey": {"k": 1}, "chunkSize": 2}),
            NodeDef("sub", "subflow"),
        ),
        edges=(EdgeDef("s", "nowhere"), EdgeDef("t", "sub")),
    )
    assert to_mermaid(bp) == (
        "flowchart TD\n"
        '    n0[/"s<br/>batch-scatter"\\]\n'
        '    n1@{ shape: procs, label: "(missing worker)<br/>per item" }\n'
        '    n2[/"t<br/>batch-scatter"\\]\n'
        '    n3@{ shape: procs, label: "{#34;k#34;: 1}<br/>per item" }\n'
        '    n4[["sub<br/>subflow (no blueprintId)"]]\n'
        '    n5["nowhere<br/>(missing)"]\n'
        "    n0 --> n5\n"
        "    n2 --> n4\n"
        "    n0 --> n1\n"
        '    n2 -->|"2 at a time"| n3\n'
    )
