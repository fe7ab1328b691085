"""Structural validation: one test per rule, and all problems reported together."""

from __future__ import annotations

from typing import Any

import pytest

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeConfig, NodeDef
from flowcraft_core.errors import BlueprintError, Problem
from flowcraft_core.validation import check, fallback_nodes, start_nodes, validate


def node(nid: str, uses: str = "task", **config: Any) -> NodeDef:
    params = config.pop("params", {})
    return NodeDef(nid, uses, params=params, config=NodeConfig(**config))


def bp(*nodes: NodeDef, edges: tuple[tuple[str, str] | EdgeDef, ...] = ()) -> Blueprint:
    return Blueprint(
        "flow",
        nodes=nodes,
        edges=tuple(e if isinstance(e, EdgeDef) else EdgeDef(*e) for e in edges),
    )


CYCLE = "a cycle is allowed only through a loop-controller's 'continue' edge (a declared loop)"


def messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def test_valid_blueprint_has_no_problems() -> None:
    b = bp(
        node("a"),
        node("b", "fetch", fallback="c"),
        node("c"),
        node("d", join_strategy="all"),
        node("s", "sleep", params={"duration": 0}),
        node("w", "wait"),
        edges=(
            EdgeDef("a", "b", action="ok", condition="result.output.n > 1"),
            EdgeDef("a", "d", transform="input.x"),
            ("b", "d"),
            ("d", "s"),
            ("s", "w"),
        ),
    )
    assert validate(b, known_uses={"task", "fetch"}) == []
    check(b, known_uses={"task", "fetch"})


def test_empty_blueprint() -> None:
    assert messages(validate(bp())) == ["blueprint: has no nodes"]


def test_duplicate_node_ids() -> None:
    problems = validate(bp(node("a"), node("a"), node("b"), node("a")))
    assert messages(problems) == ["node 'a': duplicate node id (declared 3 times)"]


def test_edges_to_unknown_nodes() -> None:
    problems = validate(bp(node("fetch"), node("b"), edges=(("fetch", "b"), ("fetc", "zz"))))
    assert messages(problems) == [
        "edge fetc -> zz: source 'fetc' is not a node (did you mean 'fetch'?)",
        "edge fetc -> zz: target 'zz' is not a node",
    ]


def test_unknown_uses_only_when_known_uses_given() -> None:
    b = bp(node("a", "fetch_ordr"), node("w", "wait"), node("s", "sleep", params={"duration": 5}))
    assert validate(b) == []
    assert messages(validate(b, known_uses={"fetch_order", "charge"})) == [
        "node 'a': unknown uses 'fetch_ordr' (did you mean 'fetch_order'?)"
    ]


def test_flowcraft_webhook_is_explained_unless_registered() -> None:
    b = bp(node("a", "webhook"), node("b", "WebhookNode"))
    got = messages(validate(b, known_uses={"fetch"}))
    assert len(got) == 2
    for where, text in zip(("a", "b"), got, strict=True):
        assert text.startswith(f"node {where!r}: unknown uses ")
        assert "Flowcraft's webhook built-in needs an HTTP endpoint" in text
        assert "use a 'wait' node and resume it from your HTTP handler" in text
    assert validate(b, known_uses={"webhook", "WebhookNode"}) == []  # your own node code


def test_known_uses_may_be_a_plain_container() -> None:
    class Registry:
        def __contains__(self, key: object) -> bool:
            return key == "ok"

    problems = validate(bp(node("a", "ok"), node("b", "nope")), known_uses=Registry())
    assert messages(problems) == ["node 'b': unknown uses 'nope'"]


def test_fallback_unknown_or_self() -> None:
    problems = validate(bp(node("a", fallback="a"), node("b", fallback="recover"), node("recovr")))
    assert messages(problems) == [
        "node 'a': config.fallback names the node itself",
        "node 'b': config.fallback 'recover' is not a node (did you mean 'recovr'?)",
    ]


def test_fallback_nodes_are_not_start_nodes_and_need_no_edges() -> None:
    b = bp(node("a", fallback="f"), node("b"), node("f"), edges=(("a", "b"),))
    assert fallback_nodes(b) == {"f"}
    assert start_nodes(b) == ["a"]
    assert validate(b) == []


def test_bad_join_strategy() -> None:
    problems = validate(bp(node("a", join_strategy="most")))
    assert messages(problems) == [
        "node 'a': config.joinStrategy must be 'all' or 'any', got 'most'"
    ]


def test_bad_expressions_name_the_edge_and_the_construct() -> None:
    b = bp(
        node("a"),
        node("b"),
        edges=(
            EdgeDef("a", "b", action="ok", condition="result.output >"),
            EdgeDef("a", "b", condition="open('x')"),
            EdgeDef("a", "b", condition="input.x"),  # any name: a context key, fine
            EdgeDef("a", "b", transform="result.x"),  # transforms see `input`, `context`
            EdgeDef("a", "b", transform="context[input]"),  # context keys must be literal
            EdgeDef("a", "b", transform="input.__class__"),
        ),
    )
    got = messages(validate(b))
    assert len(got) == 5, got
    assert got[0].startswith("edge a -> b [ok]: condition: invalid syntax")
    assert got[1].startswith("edge a -> b: condition: calling `open` is not allowed")
    assert got[2].startswith("edge a -> b: transform: unknown name 'result'")
    assert got[3].startswith("edge a -> b: transform: context must be read by a literal key")
    assert got[4].startswith("edge a -> b: transform: attribute '__class__' is not allowed")


def test_a_condition_reads_the_context_by_literal_key_only() -> None:
    """As in Flowcraft, ``context`` is the run's context in conditions too; as in transforms,
    read by literal key (a job reads only the keys it needs)."""
    loop = node("loop", "loop-controller", params={"condition": "context[x] < 3"})
    b = bp(
        node("a"),
        node("b"),
        node("body"),
        loop,
        edges=(
            EdgeDef("a", "b", condition="context.counter < 5 && context['_outputs.a'] === 1"),
            EdgeDef("a", "b", condition="context"),
            EdgeDef("b", "body"),
            EdgeDef("body", "loop"),
            EdgeDef("loop", "body", action="continue"),
        ),
    )
    assert messages(validate(b)) == [
        "node 'loop': params.condition: context must be read by a literal key (context.k or "
        "context['k']), not as a whole (in 'context[x] < 3')",
        "edge a -> b: condition: context must be read by a literal key (context.k or "
        "context['k']), not as a whole (in 'context')",
    ]


def test_a_fallback_node_with_edges_of_its_own_is_refused_with_the_reason() -> None:
    b = bp(
        NodeDef("a", "x", config=NodeConfig(fallback="fb")),
        node("fb"),
        node("after"),
        edges=(("a", "after"), ("fb", "after")),
    )
    got = messages(validate(b))
    assert got == [
        "node 'fb': is the fallback of 'a' and has edges of its own (edge fb -> after); a "
        "fallback runs in place of the failed node and takes that node's outgoing edges, so "
        "give it none"
    ], got


def test_cycles_are_reported_with_their_path() -> None:
    b = bp(
        node("start"),
        node("a"),
        node("b"),
        node("c"),
        node("solo"),
        edges=(
            ("start", "a"),
            ("a", "b"),
            ("b", "c"),
            ("c", "a"),
            ("start", "solo"),
            ("solo", "solo"),
        ),
    )
    assert messages(validate(b)) == [
        f"node 'a': is on a cycle: a -> b -> c -> a; {CYCLE}",
        f"node 'solo': is on a cycle: solo -> solo; {CYCLE}",
    ]


def test_unreachable_nodes() -> None:
    b = bp(node("a"), node("b"), node("x"), node("y"), edges=(("a", "b"), ("x", "y"), ("y", "x")))
    got = messages(validate(b))
    assert "node 'x': is not reachable from a start node (start nodes: a)" in got
    assert "node 'y': is not reachable from a start node (start nodes: a)" in got
    assert f"node 'x': is on a cycle: x -> y -> x; {CYCLE}" in got


def test_no_start_node() -> None:
    b = bp(node("a"), node("b"), edges=(("a", "b"), ("b", "a")))
    assert "blueprint: has no start node (every node has an incoming edge)" in messages(validate(b))


def test_sleep_needs_a_duration() -> None:
    b = bp(
        node("s1", "sleep"),
        node("s2", "sleep", params={"duration": -5}),
        node("s3", "sleep", params={"duration": "1 sec"}),
        node("s4", "sleep", params={"duration": True}),
        node("ok", "sleep", params={"duration": 2.5}),
        # Flowcraft's duration strings, and ms.
        *(node(f"ok-{d}", "sleep", params={"duration": d}) for d in ("1s", "5m", "2h", "1d")),
        node("ok-ms", "sleep", params={"duration": "500ms"}),
        node("long", "sleep", params={"duration": "8d"}),  # beyond the seven-day maximum
    )
    assert [p.where for p in validate(b)] == [
        "node 's1'",
        "node 's2'",
        "node 's3'",
        "node 's4'",
        "node 'long'",
    ]
    assert "params.duration" in validate(b)[0].message
    assert "'5s'" in validate(b)[0].message


def test_start_nodes_in_declaration_order() -> None:
    b = bp(node("c"), node("a"), node("b"), edges=(("a", "b"),))
    assert start_nodes(b) == ["c", "a"]


def test_every_problem_is_reported_together() -> None:
    b = Blueprint.from_dict(
        {
            "id": "messy",
            "nodes": [
                {"id": "a", "uses": "fetch"},
                {"id": "a", "uses": "fetch"},
                {"id": "b", "uses": "chrge", "config": {"fallback": "nowhere"}},
                {"id": "c", "uses": "sleep"},
                {"id": "d", "uses": "task"},
                {"id": "e", "uses": "task"},
                {"id": "island", "uses": "task"},
            ],
            "edges": [
                {"source": "a", "target": "b", "condition": "result.output >>> 1"},
                {"source": "b", "target": "ghost", "transform": "__import__('os')"},
                {"source": "a", "target": "c"},
                {"source": "d", "target": "e"},
                {"source": "e", "target": "d"},
            ],
        }
    )
    with pytest.raises(BlueprintError) as info:
        check(b, known_uses=["fetch", "charge", "task"])
    err = info.value
    assert err.blueprint_id == "messy"
    wheres = [p.where for p in err.problems]
    for where in ("node 'a'", "node 'b'", "node 'c'", "node 'd'", "node 'e'"):
        assert where in wheres
    text = str(err)
    for fragment in (
        "duplicate node id",
        "unknown uses 'chrge' (did you mean 'charge'?)",
        "config.fallback 'nowhere' is not a node",
        "sleep needs params.duration",
        "edge a -> b: condition: invalid syntax",
        "edge b -> ghost: target 'ghost' is not a node",
        "edge b -> ghost: transform: calling `__import__` is not allowed",
        "is on a cycle: d -> e -> d",
        "node 'd': is not reachable",
    ):
        assert fragment in text, fragment
    assert len(err.problems) == 10


# -- loops and batches ---------------------------------------------------------------------


def _loop(cid: str = "L", *, condition: Any = "n < 3", **params: Any) -> NodeDef:
    return NodeDef(cid, "loop-controller", params={"condition": condition, **params})


def test_a_declared_loop_passes_and_its_cycle_is_allowed() -> None:
    b = bp(
        node("enter"),
        node("s"),
        node("e"),
        _loop(),
        node("after"),
        edges=(
            ("enter", "L"),
            ("s", "e"),
            ("e", "L"),
            EdgeDef("L", "s", action="continue", transform='context["e"]'),
            EdgeDef("L", "after", action="break"),
        ),
    )
    assert validate(b) == []


def test_a_cycle_besides_a_declared_loop_is_still_refused_and_named() -> None:
    b = bp(
        node("enter"),
        node("s"),
        node("e"),
        _loop(),
        edges=(
            ("enter", "L"),
            ("s", "e"),
            ("e", "s"),
            ("e", "L"),
            EdgeDef("L", "s", action="continue"),
        ),
    )
    assert messages(validate(b)) == [f"node 's': is on a cycle: s -> e -> s; {CYCLE}"]


def test_a_cycle_through_a_controller_without_continue_is_refused() -> None:
    b = bp(node("enter"), node("s"), _loop(), edges=(("enter", "s"), ("s", "L"), ("L", "s")))
    got = messages(validate(b))
    assert f"node 's': is on a cycle: s -> L -> s; {CYCLE}" in got


def test_malformed_loops_are_reported() -> None:
    b = bp(
        node("enter"),
        node("s"),
        node("mid"),
        node("side"),
        _loop(condition="n <", maxIterations=0),
        _loop("M", condition=None),
        edges=(
            ("enter", "L"),
            ("s", "mid"),
            ("side", "mid"),  # enters the body past its start
            ("mid", "L"),
            EdgeDef("L", "s", action="continue"),
            ("enter", "M"),
            ("enter", "side"),
        ),
    )
    got = messages(validate(b))
    assert any(m.startswith("node 'L': params.condition") for m in got), got
    assert "node 'L': params.maxIterations must be a whole number >= 1, got 0" in got
    assert "node 'M': loop-controller needs params.condition, got None" in got
    assert (
        "node 'M': is a loop-controller without an outgoing edge of action 'continue' to the "
        "start of its body" in got
    )
    assert (
        "node 'mid': is in the body of loop 'L' (reachable from its start 's') but has an "
        "incoming edge from 'side' outside it; a loop body is entered only at its start node" in got
    )


def _batch(**params: Any) -> tuple[NodeDef, NodeDef]:
    scatter = NodeDef(
        "b_scatter",
        "batch-scatter",
        params={"workerUsesKey": "work", "gatherNodeId": "b_gather", **params},
        inputs="items",
    )
    gather = NodeDef("b_gather", "batch-gather", params={"outputKey": "out"})
    return scatter, gather


def test_a_batch_passes_and_its_worker_must_be_known() -> None:
    b = bp(node("a"), *_batch(), edges=(("a", "b_scatter"), ("b_scatter", "b_gather")))
    assert validate(b, known_uses={"task", "work"}) == []
    assert messages(validate(b, known_uses={"task"})) == [
        "node 'b_scatter': unknown params.workerUsesKey 'work'"
    ]


def test_malformed_batches_are_reported() -> None:
    scatter, gather = _batch(chunkSize=0, gatherNodeId="a", workerUsesKey="")
    b = bp(node("a"), scatter, gather, edges=(("a", "b_scatter"), ("b_scatter", "b_gather")))
    got = messages(validate(b))
    assert "node 'b_scatter': batch-scatter needs params.workerUsesKey" in got
    assert "node 'b_scatter': params.chunkSize must be a whole number >= 1, got 0" in got
    assert "node 'b_scatter': params.gatherNodeId must name a batch-gather node, got 'a'" in got
    assert "node 'b_gather': is a batch-gather that no batch-scatter names" in got


def test_a_batch_worker_may_be_a_subflow_given_its_params() -> None:
    edges = (("a", "b_scatter"), ("b_scatter", "b_gather"))
    for name in ("subflow", "SubflowNode"):
        ok = bp(
            node("a"), *_batch(workerUsesKey=name, workerParams={"blueprintId": "c"}), edges=edges
        )
        assert validate(ok, known_uses={"task"}) == []
    missing = bp(node("a"), *_batch(workerUsesKey="subflow"), edges=edges)
    assert messages(validate(missing)) == [
        "node 'b_scatter': subflow is missing 'blueprintId' parameter (got None) "
        "(the worker's, params.workerParams)"
    ]
    waits = bp(node("a"), *_batch(workerUsesKey="WaitNode"), edges=edges)
    assert messages(validate(waits)) == [
        "node 'b_scatter': params.workerUsesKey 'WaitNode': a batch worker runs node code or "
        "the 'subflow' built-in"
    ]
    bad = bp(node("a"), *_batch(workerParams=[1]), edges=edges)
    assert messages(validate(bad)) == [
        "node 'b_scatter': params.workerParams must be an object, got [1]"
    ]
