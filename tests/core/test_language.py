"""Flowcraft's language beyond the conformance scenarios: reference forms of ``inputs``, the
initial context's refusals, duration strings for ``sleep``, and transforms that fail."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flowcraft_core import EngineSettings, FlowcraftError, NodeContext

from .helpers import Recorder, bp, harness


async def _echo(ctx: NodeContext) -> Any:
    return ctx.input


async def _const(ctx: NodeContext) -> Any:
    return ctx.params["value"]


REGISTRY = {"echo": _echo, "const": _const}


async def test_inputs_reference_forms() -> None:
    """``_x`` raw keys (``_input`` is the run input), a node id, a path into a node's output
    (also when the node id holds a dot), a context key, and null for what is not there."""
    flow = bp(
        [
            {"id": "user", "uses": "const", "params": {"value": {"name": "Ada", "tags": [1]}}},
            {"id": "v1.2", "uses": "const", "params": {"value": {"x": 3}}},
            {
                "id": "all",
                "uses": "echo",
                "inputs": {
                    "raw": "_input",
                    "out": "_outputs.user",
                    "node": "user",
                    "path": "user.name",
                    "dotted": "v1.2.x",
                    "ctx": "tenant",
                    "missing": "nobody",
                    "deep_missing": "user.name.first",
                },
            },
        ],
        [{"source": "user", "target": "all"}, {"source": "v1.2", "target": "all"}],
    )
    async with harness(REGISTRY) as h:
        run_id = await h.client.start(flow, "the input", context={"tenant": "acme"})
        result = await h.client.result(run_id, 10)
    assert result.status == "completed", result.error
    assert result.outputs["all"] == {
        "raw": "the input",
        "out": {"name": "Ada", "tags": [1]},
        "node": {"name": "Ada", "tags": [1]},
        "path": "Ada",
        "dotted": 3,
        "ctx": "acme",
        "missing": None,
        "deep_missing": None,
    }


@pytest.mark.parametrize(
    ("context", "fragment"),
    [
        ({"_input": 1}, "'_input'"),
        ({"ok": 1, "_outputs.a": 2}, "'_outputs.a'"),
        ({"": 1}, "''"),
        ([1, 2], "must be an object"),
    ],
)
async def test_initial_context_refusals_name_the_key(context: Any, fragment: str) -> None:
    flow = bp([{"id": "a", "uses": "echo"}])
    async with harness(REGISTRY) as h:
        with pytest.raises(FlowcraftError) as info:
            await h.client.start(flow, None, context=context)
    assert fragment in str(info.value)


async def test_initial_context_must_be_json() -> None:
    flow = bp([{"id": "a", "uses": "echo"}])
    async with harness(REGISTRY) as h:
        with pytest.raises(FlowcraftError, match="run input or context is not JSON"):
            await h.client.start(flow, None, context={"x": object()})


async def test_sleep_takes_a_duration_string() -> None:
    flow = bp(
        [
            {"id": "a", "uses": "const", "params": {"value": 1}},
            {"id": "nap", "uses": "sleep", "params": {"duration": "1s"}},
            {"id": "b", "uses": "echo"},
        ],
        [{"source": "a", "target": "nap"}, {"source": "nap", "target": "b"}],
    )
    async with harness(REGISTRY) as h:
        started = time.monotonic()
        result = await h.run(flow)
    assert time.monotonic() - started >= 1.0
    assert result.status == "completed", result.error
    assert result.outputs == {"a": 1, "nap": 1, "b": 1}


async def test_a_transform_that_fails_gives_null_and_is_reported_or_fails_under_strict() -> None:
    flow = bp(
        [{"id": "a", "uses": "const", "params": {"value": 5}}, {"id": "b", "uses": "echo"}],
        [{"source": "a", "target": "b", "transform": "input + 'x'"}],
    )
    recorder = Recorder()
    from flowcraft_core.plugins import new_manager

    pm = new_manager(load_entry_points=True)
    pm.register(recorder)
    async with harness(REGISTRY, pm=pm) as h:
        result = await h.run(flow)
    assert result.status == "completed", result.error
    assert result.outputs == {"a": 5, "b": None}
    [failed] = recorder.of("expression_failed")
    assert failed["where"] == "edge a -> b transform"
    assert "cannot add int and str" in failed["error"]

    async with harness(REGISTRY, settings=EngineSettings(strict=True)) as h:
        result = await h.run(flow)
    assert result.status == "failed"
    assert result.error is not None and result.error["type"] == "ExpressionError"
    assert result.outputs == {"a": 5}
