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
