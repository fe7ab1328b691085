"""The fluent builder produces the same blueprints as the JSON form."""

from __future__ import annotations

from typing import Any

import pytest

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeConfig, NodeDef
from flowcraft_core.builder import Flow, uses_key
from flowcraft_core.validation import check


def fetch(ctx: Any) -> int:
    return 1


class Charge:
    def __call__(self, ctx: Any) -> int:
        return 2


def test_builds_the_documented_example() -> None:
    bp = (
        Flow("order")
        .node(
            "a",
            "fetch",
            params={"url": "x"},
            max_retries=3,
            retry_delay=100,
            timeout=5000,
            fallback="b",
            join="any",
            inputs={"order": "_outputs.start"},
        )
        .node("b", "recover")
        .edge("a", "c", action="ok", condition="result.output > 1", transform="input.x")
        .wait("c")
        .sleep("pause", duration=1000)
        .edge("c", "pause")
        .to_blueprint(metadata={"version": "3"})
    )
    assert bp == Blueprint(
        "order",
        nodes=(
            NodeDef(
                "a",
                "fetch",
                params={"url": "x"},
                inputs={"order": "_outputs.start"},
                config=NodeConfig(
                    max_retries=3, retry_delay=100, timeout=5000, fallback="b", join_strategy="any"
                ),
            ),
            NodeDef("b", "recover"),
            NodeDef("c", "wait"),
            NodeDef("pause", "sleep", params={"duration": 1000}),
        ),
        edges=(
            EdgeDef("a", "c", "ok", "result.output > 1", "input.x"),
            EdgeDef("c", "pause"),
        ),
        metadata={"version": "3"},
    )
    assert Blueprint.from_json(bp.to_json()) == bp
    check(bp, known_uses={"fetch", "recover"})


def test_callables_become_registry_entries() -> None:
    def local_step(ctx: Any) -> None:
        return None

    charge = Charge()
    flow = (
        Flow("f")
        .node("a", fetch)
        .node("b", fetch)
        .node("c", local_step)
        .node("d", Charge)
        .chain("a", "b", "c", "d")
    )
    bp = flow.to_blueprint()
    assert [n.uses for n in bp.nodes] == [
        "fetch",
        "fetch",
        "test_callables_become_registry_entries.local_step",
        "Charge",
    ]
    assert flow.registry() == {
        "fetch": fetch,
        "test_callables_become_registry_entries.local_step": local_step,
        "Charge": Charge,
    }
    assert [(e.source, e.target) for e in bp.edges] == [("a", "b"), ("b", "c"), ("c", "d")]
    check(bp, known_uses=flow.registry())
    with pytest.raises(TypeError, match="__qualname__"):
        Flow("g").node("x", charge)  # an instance has no __qualname__


def test_two_callables_with_one_key_are_refused() -> None:
    def make() -> Any:
        def step(ctx: Any) -> int:
            return 0

        return step

    flow = Flow("f").node("a", make())
    with pytest.raises(ValueError, match=r"share the key '[\w.]*make\.step'"):
        flow.node("b", make())
    assert uses_key(make()) == "test_two_callables_with_one_key_are_refused.make.step"


def test_builder_copies_caller_data() -> None:
    params: dict[str, Any] = {"nested": {"n": 1}}
    meta: dict[str, Any] = {"tags": ["a"]}
    flow = Flow("f", metadata=meta).node("a", "x", params=params)
    params["nested"]["n"] = 2
    meta["tags"].append("b")
    bp = flow.to_blueprint(metadata={"extra": True})
    assert bp.node("a").params == {"nested": {"n": 1}}
    assert bp.metadata == {"tags": ["a"], "extra": True}


def test_sleep_merges_params_and_config() -> None:
    bp = Flow("f").sleep("s", duration=5, params={"note": "hi"}, max_retries=2).to_blueprint()
    assert bp.node("s") == NodeDef(
        "s", "sleep", params={"note": "hi", "duration": 5}, config=NodeConfig(max_retries=2)
    )


def test_builder_does_not_validate() -> None:
    bp = Flow("f").node("a", "x").node("a", "x").edge("a", "missing").to_blueprint()
    assert len(bp.nodes) == 2
