"""End-to-end workflow scenarios, run on the driver under test.

Each scenario is a blueprint with counting node implementations and the exact result it must
give. :func:`run_scenario` runs one on any backends, optionally under a fault:

* ``duplicate``: every job is enqueued twice (a queue wrapper, so any driver can be tested);
* ``crash:<step>``: the handler "dies" once per job at that step of the engine (``loaded``,
  ``executed``, ``completed``, ``enqueued``), before acknowledging, so the job is redelivered.

Under every fault the outputs must be the same, joins must fire once, and no node whose
result was committed may run again: a node's code runs exactly as often as without faults,
plus once for a crash between its execution and its commit.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.client import Client, RunResult
from flowcraft_core.drivers import Backends
from flowcraft_core.engine import EngineSettings
from flowcraft_core.engine.keys import CHILD_MARK
from flowcraft_core.node import BaseNode, NodeContext, Result
from flowcraft_core.protocols import Handler, Job, Queue
from flowcraft_core.registry import Registry
from flowcraft_core.worker import Worker

from .harness import Harness

FAULTS: tuple[str, ...] = (
    "none",
    "duplicate",
    "crash:loaded",
    "crash:executed",
    "crash:completed",
    "crash:enqueued",
)


class SimulatedCrash(Exception):
    """Raised at an engine checkpoint: the worker 'dies' before acknowledging the job."""


# -- counting implementations ---------------------------------------------------------------

_calls: Counter[tuple[str, str]] = Counter()
_calls_lock = threading.Lock()


def _count(ctx: NodeContext, name: str) -> None:
    with _calls_lock:
        _calls[(ctx.run_id, f"{ctx.node_id}:{name}")] += 1


def calls_of(run_id: str) -> dict[str, int]:
    """How many times each ``node:implementation`` ran for ``run_id`` and the subflow runs
    under it (whose ids extend it)."""
    nested = run_id + CHILD_MARK
    out: Counter[str] = Counter()
    with _calls_lock:
        for (run, key), n in _calls.items():
            if run == run_id or run.startswith(nested):
                out[key] += n
    return dict(out)


async def _echo(ctx: NodeContext) -> Any:
    _count(ctx, "echo")
    return {"node": ctx.node_id, "input": ctx.input, "label": ctx.params.get("label")}


async def _add(ctx: NodeContext) -> Any:
    _count(ctx, "add")
    return (ctx.input or 0) + ctx.params.get("n", 1)


def _add_sync(ctx: NodeContext) -> Any:
    _count(ctx, "add_sync")
    return (ctx.input or 0) + ctx.params.get("n", 1)


async def _total(ctx: NodeContext) -> Any:
    _count(ctx, "total")
    return sum(v for v in ctx.input.values() if isinstance(v, int | float))


async def _decide(ctx: NodeContext) -> Any:
    _count(ctx, "decide")
    amount = ctx.input["amount"]
    return Result(output=amount, action="approve" if amount < 100 else "reject")


async def _flaky(ctx: NodeContext) -> Any:
    _count(ctx, "flaky")
    if ctx.attempt <= ctx.params.get("fail_times", 1):
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return {"attempt": ctx.attempt}


async def _boom(ctx: NodeContext) -> Any:
    _count(ctx, "boom")
    raise ValueError(f"boom in {ctx.node_id}")


async def _slow(ctx: NodeContext) -> Any:
    _count(ctx, "slow")
    await asyncio.sleep(ctx.params.get("seconds", 5))
    return "slow"


async def _rescue(ctx: NodeContext) -> Any:
    _count(ctx, "rescue")
    return {"rescued": ctx.input}


async def _remember(ctx: NodeContext) -> Any:
    _count(ctx, "remember")
    ctx.context.set("note", {"from": ctx.node_id})
    return await ctx.context.get("note")


async def _recall(ctx: NodeContext) -> Any:
    _count(ctx, "recall")
    return await ctx.context.get("note")


# Implementations of the cases taken from Flowcraft's own tests (their nodes return constants,
# suffix their input, or read and write the context).


async def _const(ctx: NodeContext) -> Any:
    _count(ctx, "const")
    action = ctx.params.get("action")
    output = ctx.params.get("output")
    return Result(output=output, action=action) if action is not None else output


async def _suffix(ctx: NodeContext) -> Any:
    _count(ctx, "suffix")
    value = ctx.input
    for part in ctx.params.get("path", []):
        value = value[part]
    return f"{value}{ctx.params['suffix']}"


async def _passthrough(ctx: NodeContext) -> Any:
    _count(ctx, "passthrough")
    return ctx.input


async def _set(ctx: NodeContext) -> Any:
    _count(ctx, "set")
    ctx.context.set(ctx.params["key"], ctx.params["value"])
    return ctx.params.get("output")


async def _read(ctx: NodeContext) -> Any:
    _count(ctx, "read")
    return f"{ctx.params.get('prefix', '')}{await ctx.context.get(ctx.params['key'])}"


async def _bump(ctx: NodeContext) -> Any:
    """Add 1 to the context key ``params.key`` (0 if unset); the new value is the output,
    formatted by ``params.format`` if given."""
    _count(ctx, "bump")
    key = ctx.params.get("key", "count")
    value = (await ctx.context.get(key) or 0) + 1
    ctx.context.set(key, value)
    fmt = ctx.params.get("format")
    return fmt.format(value) if fmt else value


async def _item(ctx: NodeContext) -> Any:
    """A batch worker: ``processed_<id>_<data>`` as in Flowcraft's batch test; an item with
    ``fail`` set fails."""
    _count(ctx, "item")
    if isinstance(ctx.input, dict) and ctx.input.get("fail"):
        raise RuntimeError(f"item {ctx.input.get('id')} failed")
    if isinstance(ctx.input, dict):
        return f"processed_{ctx.input.get('id')}_{ctx.input.get('data')}"
    return ctx.input * 10 if isinstance(ctx.input, int) else ctx.input


async def _fail(ctx: NodeContext) -> Any:
    _count(ctx, "fail")
    raise RuntimeError(f"{ctx.node_id} failed permanently")


class _Lifecycle(BaseNode):
    """A class node whose ``exec`` fails until attempt ``params.succeed_on`` (never, if 0)."""

    def prep(self, ctx: NodeContext) -> Any:
        _count(ctx, "prep")
        return {"prepared": ctx.input}

    def exec(self, prep_result: Any, ctx: NodeContext) -> Any:
        _count(ctx, "exec")
        succeed_on = self.params.get("succeed_on", 1)
        if not succeed_on or ctx.attempt < succeed_on:
            raise RuntimeError(f"exec failed on attempt {ctx.attempt}")
        return {**prep_result, "attempt": ctx.attempt}

    def fallback(self, error: Exception, ctx: NodeContext) -> Any:
        _count(ctx, "fallback")
        return {"fallback": str(error)}

    async def post(self, exec_result: Any, ctx: NodeContext) -> Any:
        _count(ctx, "post")
        return Result(output={"posted": exec_result}, action=self.params.get("action"))

    def recover(self, error: Exception, ctx: NodeContext) -> None:
        _count(ctx, "recover")


def registry() -> Registry:
    """The implementations every scenario uses."""
    return Registry(
        {
            "echo": _echo,
            "add": _add,
            "add_sync": _add_sync,
            "total": _total,
            "decide": _decide,
            "flaky": _flaky,
            "boom": _boom,
            "slow": _slow,
            "rescue": _rescue,
            "remember": _remember,
            "recall": _recall,
            "const": _const,
            "suffix": _suffix,
            "passthrough": _passthrough,
            "set": _set,
            "read": _read,
            "fail": _fail,
            "bump": _bump,
            "item": _item,
            "lifecycle": _Lifecycle,
        }
    )


#: The same implementations as a module attribute, for ``flowcraft worker --registry
#: flowcraft_conformance.scenarios:REGISTRY`` (scenarios run by real worker processes).
REGISTRY = registry()


# -- scenarios ------------------------------------------------------------------------------


@dataclass
class Scenario:
    """A blueprint, its input and the exact result it must give."""

    name: str
    blueprint: dict[str, Any]
    input: Any
    status: str
    outputs: dict[str, Any] | None = None
    check: Callable[[RunResult], None] | None = None
    calls: dict[str, int] = field(default_factory=dict)
    # Once awaiting: resume with (action, output); or, one after another, each of a list of
    # (action, output, the waiting node to resume or None), the run awaiting before each.
    resume: tuple[str | None, Any] | list[tuple[str | None, Any, str | None]] | None = None
    min_seconds: float = 0.0
    error_node: str | None = None
    error_type: str | None = None
    per_instance: bool = False  # node code counted per loop iteration / batch item
    traceback: bool = True  # the error has one (not so for the engine's own refusals)
    context: dict[str, Any] | None = None  # the run's initial context
    final_context: dict[str, Any] | None = None  # the run's own context keys at the end
    blueprints: list[dict[str, Any]] = field(default_factory=list)  # the catalog (subflows)
    worker_catalog: bool = False  # the catalog is the worker's only (the run pins nothing)
    children: list[str] | None = None  # sorted statuses of every subflow run under the run
    # Nodes of subflow runs that commit, with the number of runs they commit in: a crash
    # between execution and commit re-runs each once per run.
    child_nodes: dict[str, int] = field(default_factory=dict)

    @property
    def flow(self) -> Blueprint:
        return Blueprint.from_dict(self.blueprint)

    @property
    def resumes(self) -> list[tuple[str | None, Any, str | None]]:
        if self.resume is None:
            return []
        if isinstance(self.resume, list):
            return self.resume
        action, output = self.resume
        return [(action, output, None)]


async def resume_scenario(
    client: Client, scenario: Scenario, run_id: str, result: RunResult, timeout: float
) -> RunResult:
    """Resume the run as ``scenario`` says, each time once it awaits; the last result."""
    for action, output, node_id in scenario.resumes:
        assert result.status == "awaiting", f"{scenario.name}: {result}"
        await client.resume(run_id, action, output, node_id=node_id)
        result = await client.result(run_id, timeout)
    return result


def _bp(name: str, nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": name, "nodes": nodes, "edges": edges}


SCENARIOS: list[Scenario] = [
    Scenario(
        "chain",
        _bp(
            "chain",
            [
                {"id": "a", "uses": "add", "params": {"n": 1}},
                {"id": "b", "uses": "add_sync", "params": {"n": 10}},
                {"id": "c", "uses": "add", "params": {"n": 100}},
            ],
            [
                {"source": "a", "target": "b"},
                {"source": "b", "target": "c", "transform": "input * 2"},
            ],
        ),
        input=1,
        status="completed",
        outputs={"a": 2, "b": 12, "c": 124},
        calls={"a:add": 1, "b:add_sync": 1, "c:add": 1},
    ),
    Scenario(
        "fanout_fanin",
        _bp(
            "fan",
            [{"id": "a", "uses": "add", "params": {"n": 0}}]
            + [{"id": f"b{i}", "uses": "add", "params": {"n": i}} for i in range(5)]
            + [{"id": "j", "uses": "total"}],
            [{"source": "a", "target": f"b{i}"} for i in range(5)]
            + [{"source": f"b{i}", "target": "j"} for i in range(5)],
        ),
        input=10,
        status="completed",
        outputs={"a": 10, **{f"b{i}": 10 + i for i in range(5)}, "j": 60},
        calls={"a:add": 1, **{f"b{i}:add": 1 for i in range(5)}, "j:total": 1},
    ),
    # Wide enough that the branches travel as siblings, several to a message (23 queued:
    # three messages at the default of 8), so every fault lands on a message of several jobs:
    # a crash of one member redelivers the whole message to members that committed already.
    Scenario(
        "fanout_wide",
        _bp(
            "fanwide",
            [{"id": "a", "uses": "add", "params": {"n": 0}}]
            + [{"id": f"b{i}", "uses": "add", "params": {"n": i}} for i in range(24)]
            + [{"id": "j", "uses": "total"}],
            [{"source": "a", "target": f"b{i}"} for i in range(24)]
            + [{"source": f"b{i}", "target": "j"} for i in range(24)],
        ),
        input=10,
        status="completed",
        outputs={"a": 10, **{f"b{i}": 10 + i for i in range(24)}, "j": 516},
        calls={"a:add": 1, **{f"b{i}:add": 1 for i in range(24)}, "j:total": 1},
    ),
    Scenario(
        "any_join",
        _bp(
            "anyjoin",
            [
                {"id": "a", "uses": "echo"},
                {"id": "fast", "uses": "echo", "params": {"label": "fast"}},
                {"id": "s", "uses": "slow", "params": {"seconds": 0.3}},
                {"id": "j", "uses": "echo", "config": {"joinStrategy": "any"}},
            ],
            [
                {"source": "a", "target": "fast"},
                {"source": "a", "target": "s"},
                {"source": "fast", "target": "j", "transform": "input.label"},
                {"source": "s", "target": "j", "transform": "'slow-branch'"},
            ],
        ),
        input=None,
        status="completed",
        check=lambda r: _check_any(r),
        calls={"a:echo": 1, "fast:echo": 1, "s:slow": 1, "j:echo": 1},
    ),
    Scenario(
        "conditions_dead_path_into_all_join",
        _bp(
            "cond",
            [
                {"id": "a", "uses": "add", "params": {"n": 0}},
                {"id": "big", "uses": "add", "params": {"n": 1000}},
                {"id": "big2", "uses": "add", "params": {"n": 1}},
                {"id": "small", "uses": "add", "params": {"n": 1}},
                {"id": "j", "uses": "echo"},
            ],
            [
                {"source": "a", "target": "big", "condition": "result.output > 100"},
                {"source": "big", "target": "big2"},
                {"source": "a", "target": "small", "condition": "result.output <= 100"},
                {"source": "big2", "target": "j"},
                {"source": "small", "target": "j"},
            ],
        ),
        input=5,
        status="completed",
        outputs={
            "a": 5,
            "small": 6,
            "j": {"node": "j", "input": {"small": 6}, "label": None},
        },
        calls={"a:add": 1, "small:add": 1, "j:echo": 1},
    ),
    Scenario(
        "actions",
        _bp(
            "actions",
            [
                {"id": "d", "uses": "decide"},
                {"id": "ok", "uses": "echo", "params": {"label": "approved"}},
                {"id": "no", "uses": "echo", "params": {"label": "rejected"}},
                {"id": "after", "uses": "echo", "config": {"joinStrategy": "any"}},
            ],
            [
                {"source": "d", "target": "ok", "action": "approve"},
                {"source": "d", "target": "no", "action": "reject"},
                {"source": "ok", "target": "after", "transform": "input.label"},
                {"source": "no", "target": "after", "transform": "input.label"},
            ],
        ),
        input={"amount": 42},
        status="completed",
        outputs={
            "d": 42,
            "ok": {"node": "ok", "input": 42, "label": "approved"},
            "after": {"node": "after", "input": "approved", "label": None},
        },
        calls={"d:decide": 1, "ok:echo": 1, "after:echo": 1},
    ),
    Scenario(
        "retry",
        _bp(
            "retry",
            [
                {
                    "id": "f",
                    "uses": "flaky",
                    "params": {"fail_times": 2},
                    "config": {"maxRetries": 3, "retryDelay": 10},
                },
                {"id": "g", "uses": "echo"},
            ],
            [{"source": "f", "target": "g", "transform": "input.attempt"}],
        ),
        input=None,
        status="completed",
        outputs={"f": {"attempt": 3}, "g": {"node": "g", "input": 3, "label": None}},
        calls={"f:flaky": 3, "g:echo": 1},
    ),
    Scenario(
        "timeout_then_fallback",
        _bp(
            "fallback",
            [
                {
                    "id": "t",
                    "uses": "slow",
                    "params": {"seconds": 5},
                    "config": {"timeout": 50, "maxRetries": 2, "fallback": "rescue"},
                },
                {"id": "rescue", "uses": "rescue"},
                {"id": "after", "uses": "echo"},
            ],
            [{"source": "t", "target": "after"}],
        ),
        input="x",
        status="completed",
        # As Flowcraft records it: null under the failed node, the fallback's output under its
        # own id, and the fallback's output is what the failed node's edges carry.
        outputs={
            "t": None,
            "rescue": {"rescued": "x"},
            "after": {"node": "after", "input": {"rescued": "x"}, "label": None},
        },
        calls={"t:slow": 2, "rescue:rescue": 1, "after:echo": 1},
    ),
    Scenario(
        "timeout_fails_run",
        _bp(
            "timeout",
            [
                {"id": "t", "uses": "slow", "params": {"seconds": 5}, "config": {"timeout": 50}},
                {"id": "never", "uses": "echo"},
            ],
            [{"source": "t", "target": "never"}],
        ),
        input=None,
        status="failed",
        outputs={},
        calls={"t:slow": 1},
        error_node="t",
        error_type="NodeTimeout",
    ),
    Scenario(
        "failure",
        _bp(
            "failure",
            [
                {"id": "a", "uses": "add"},
                {"id": "bad", "uses": "boom"},
                {"id": "never", "uses": "echo"},
            ],
            [{"source": "a", "target": "bad"}, {"source": "bad", "target": "never"}],
        ),
        input=1,
        status="failed",
        outputs={"a": 2},
        calls={"a:add": 1, "bad:boom": 1},
        error_node="bad",
        error_type="ValueError",
    ),
    Scenario(
        "context_writes",
        _bp(
            "context",
            [{"id": "w", "uses": "remember"}, {"id": "r", "uses": "recall"}],
            [{"source": "w", "target": "r"}],
        ),
        input=None,
        status="completed",
        outputs={"w": {"from": "w"}, "r": {"from": "w"}},
        calls={"w:remember": 1, "r:recall": 1},
    ),
    Scenario(
        "wait_resume",
        _bp(
            "wait",
            [
                {"id": "a", "uses": "add"},
                {"id": "approval", "uses": "wait"},
                {"id": "yes", "uses": "echo"},
                {"id": "no", "uses": "echo"},
            ],
            [
                {"source": "a", "target": "approval"},
                {"source": "approval", "target": "yes", "action": "approve"},
                {"source": "approval", "target": "no", "action": "reject"},
            ],
        ),
        input=1,
        status="completed",
        resume=("approve", {"by": "alice"}),
        outputs={
            "a": 2,
            "approval": {"by": "alice"},
            "yes": {"node": "yes", "input": {"by": "alice"}, "label": None},
        },
        calls={"a:add": 1, "yes:echo": 1},
    ),
    Scenario(
        "sleep",
        _bp(
            "sleep",
            [
                {"id": "a", "uses": "add"},
                {"id": "nap", "uses": "sleep", "params": {"duration": 200}},
                {"id": "b", "uses": "add"},
            ],
            [{"source": "a", "target": "nap"}, {"source": "nap", "target": "b"}],
        ),
        input=1,
        status="completed",
        outputs={"a": 2, "nap": 2, "b": 3},
        calls={"a:add": 1, "b:add": 1},
        min_seconds=0.2,
    ),
]


def _n(node_id: str, uses: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "uses": uses, **fields}


def _const_node(node_id: str, output: Any, action: str | None = None, **fields: Any) -> Any:
    params: dict[str, Any] = {"output": output}
    if action is not None:
        params["action"] = action
    return _n(node_id, "const", params=params, **fields)


# Cases from Flowcraft 2.10.1's own tests (packages/core/test/runtime.test.ts, named per case),
# with Flowcraft's expected outputs; and the language's other shapes (ids, alternatives,
# initial context, class nodes).
FLOWCRAFT_SCENARIOS: list[Scenario] = [
    Scenario(
        # 'should correctly resolve a simple string `inputs` mapping' and '... complex object'
        "fc_inputs_string_and_object",
        _bp(
            "fc-inputs",
            [
                _const_node("A", {"key": "value"}),
                _n("B", "suffix", params={"suffix": "_B", "path": ["key"]}, inputs="A"),
                _n(
                    "C",
                    "suffix",
                    params={"suffix": "_C", "path": ["data", "key"]},
                    inputs={"data": "A"},
                ),
            ],
            [{"source": "A", "target": "B"}, {"source": "A", "target": "C"}],
        ),
        input=None,
        status="completed",
        outputs={"A": {"key": "value"}, "B": "value_B", "C": "value_C"},
        calls={"A:const": 1, "B:suffix": 1, "C:suffix": 1},
    ),
    Scenario(
        # 'should apply edge transform to the inputs-referenced node output, not the edge
        # source' and 'should store transformed value in _inputs when edge has transform and
        # target has explicit inputs'
        "fc_transform_of_inputs_reference",
        _bp(
            "fc-transform-inputs",
            [
                _const_node("start", {"deeply": {"nested": {"value": "extracted"}}, "data": 42}),
                _const_node("middle", "pass-through"),
                _n("end", "passthrough", inputs="start"),
                _n("C", "passthrough", inputs="start"),
            ],
            [
                {"source": "start", "target": "middle"},
                {"source": "middle", "target": "end", "transform": "input.deeply.nested.value"},
                {"source": "middle", "target": "C", "transform": "input.data"},
            ],
        ),
        input=None,
        status="completed",
        outputs={
            "start": {"deeply": {"nested": {"value": "extracted"}}, "data": 42},
            "middle": "pass-through",
            "end": "extracted",
            "C": 42,
        },
        calls={"start:const": 1, "middle:const": 1, "end:passthrough": 1, "C:passthrough": 1},
    ),
    Scenario(
        # 'should only follow ONE conditional edge when multiple conditions are mutually
        # exclusive': conditions read a node's output by its id, in JavaScript spelling
        "fc_conditions_on_node_ids",
        _bp(
            "fc-conditional-routing",
            [
                _n(
                    "route",
                    "set",
                    params={"key": "total", "value": 1665, "output": {"total": 1665}},
                ),
                _const_node("autoApprove", {"status": "approved"}),
                _const_node("waitManager", {"status": "pending"}),
                _const_node("reject", {"status": "rejected"}),
            ],
            [
                {"source": "route", "target": "autoApprove", "condition": "route.total < 500"},
                {
                    "source": "route",
                    "target": "waitManager",
                    "condition": "route.total >= 500 && route.total <= 2000",
                },
                {"source": "route", "target": "reject", "condition": "route.total > 2000"},
            ],
        ),
        input=None,
        status="completed",
        outputs={"route": {"total": 1665}, "waitManager": {"status": "pending"}},
        final_context={"total": 1665},
        calls={"route:set": 1, "waitManager:const": 1},
    ),
    Scenario(
        # 'should execute a flow with conditional edges and context', 'should evaluate an edge
        # `condition` ... if true', '... if the condition is false', 'should follow the
        # default (unconditional) edge if no other paths match'
        "fc_actions_conditions_context",
        _bp(
            "fc-conditional-flow",
            [
                _n("A", "set", params={"key": "shared_value", "value": 42, "output": "start"}),
                _const_node("B", {"status": "OK"}, action="path-c"),
                _n("C", "read", params={"key": "shared_value", "prefix": "C received "}),
                _const_node("D", "D should not run"),
                _const_node("E", "E", action="unknown"),
                _const_node("F", "F should not run"),
                _const_node("G", "G"),
                _const_node("H", "H should not run"),
            ],
            [
                {"source": "A", "target": "B"},
                {
                    "source": "B",
                    "target": "C",
                    "action": "path-c",
                    "condition": "result.output.status === 'OK' && shared_value === 42",
                },
                {"source": "B", "target": "D", "action": "path-d"},
                {"source": "C", "target": "E"},
                {"source": "E", "target": "F", "action": "known"},
                {"source": "E", "target": "G"},
                {"source": "G", "target": "H", "condition": "1 === 2"},
            ],
        ),
        input=None,
        status="completed",
        outputs={"A": "start", "B": {"status": "OK"}, "C": "C received 42", "E": "E", "G": "G"},
        final_context={"shared_value": 42},
        calls={"A:set": 1, "B:const": 1, "C:read": 1, "E:const": 1, "G:const": 1},
    ),
    Scenario(
        # 'should retry a node and execute fallback after max retries exceeded': the fallback's
        # output under its own id, null under the failed node, and the failed node's edge
        # carries the fallback's output
        "fc_retry_then_fallback",
        _bp(
            "fc-retry-fallback-flow",
            [
                _const_node("start", "start"),
                _n("failingNode", "fail", config={"maxRetries": 3, "fallback": "fallbackNode"}),
                _const_node("fallbackNode", "fallback-success"),
                _n("endNode", "suffix", params={"suffix": ""}),
            ],
            [
                {"source": "start", "target": "failingNode"},
                {"source": "failingNode", "target": "endNode", "transform": "'end-with-' + input"},
            ],
        ),
        input=None,
        status="completed",
        outputs={
            "start": "start",
            "failingNode": None,
            "fallbackNode": "fallback-success",
            "endNode": "end-with-fallback-success",
        },
        calls={
            "start:const": 1,
            "failingNode:fail": 3,
            "fallbackNode:const": 1,
            "endNode:suffix": 1,
        },
    ),
    Scenario(
        # 'should only follow the matching conditional edge after resuming from a .wait()
        # node': the run parks at the wait the conditions chose, and the resume completes it
        # without running the other branches.
        "fc_conditional_wait_resume",
        _bp(
            "conditional-hitl",
            [
                _n(
                    "route",
                    "set",
                    params={"key": "total", "value": 1665, "output": {"total": 1665}},
                ),
                _const_node("autoApprove", {"status": "approved"}),
                {"id": "waitManager", "uses": "wait"},
                _n("processApproval", "passthrough"),
                _const_node("reject", {"status": "rejected"}),
            ],
            [
                {"source": "route", "target": "autoApprove", "condition": "route.total < 500"},
                {
                    "source": "route",
                    "target": "waitManager",
                    "condition": "route.total >= 500 && route.total <= 2000",
                },
                {"source": "route", "target": "reject", "condition": "route.total > 2000"},
                {
                    "source": "waitManager",
                    "target": "processApproval",
                    "transform": "{'status': 'approved' if input.approved else 'denied'}",
                },
            ],
        ),
        input=None,
        status="completed",
        resume=(None, {"approved": True}),
        outputs={
            "route": {"total": 1665},
            "waitManager": {"approved": True},
            "processApproval": {"status": "approved"},
        },
        final_context={"total": 1665},
        calls={"route:set": 1, "processApproval:passthrough": 1},
    ),
    Scenario(
        # test/runtime/hitl.test.ts 'should handle multiple sequential wait nodes'
        "fc_sequential_waits",
        _bp(
            "multi-wait-workflow",
            [
                _n("start", "passthrough", inputs="input"),
                {"id": "wait1", "uses": "wait"},
                {"id": "wait2", "uses": "wait"},
                _n("end", "passthrough", inputs="_outputs.start"),
            ],
            [
                {"source": "start", "target": "wait1"},
                {"source": "wait1", "target": "wait2"},
                {"source": "wait2", "target": "end", "transform": "{'final': input.value + 10}"},
            ],
        ),
        input=None,
        context={"input": {"value": 42}},
        status="completed",
        resume=[(None, {"value": 42}, "wait1"), (None, {"value": 42}, "wait2")],
        outputs={
            "start": {"value": 42},
            "wait1": {"value": 42},
            "wait2": {"value": 42},
            "end": {"final": 52},
        },
        final_context={"input": {"value": 42}},
        calls={"start:passthrough": 1, "end:passthrough": 1},
    ),
    Scenario(
        # test/runtime/hitl.test.ts 'should handle multiple concurrent wait nodes': both
        # branches park; each resume names its wait; the join runs once both are resumed.
        "fc_concurrent_waits",
        _bp(
            "concurrent-wait-workflow",
            [
                _n("start", "passthrough", inputs="input"),
                {"id": "wait1", "uses": "wait"},
                _n("process1", "suffix", params={"suffix": "", "path": ["value"]}),
                {"id": "wait2", "uses": "wait"},
                _n("process2", "suffix", params={"suffix": "", "path": ["value"]}),
                _n(
                    "gather",
                    "passthrough",
                    inputs={"result1": "_outputs.process1", "result2": "_outputs.process2"},
                ),
            ],
            [
                {"source": "start", "target": "wait1"},
                {"source": "wait1", "target": "process1", "transform": "context.start"},
                {"source": "start", "target": "wait2"},
                {"source": "wait2", "target": "process2", "transform": "context['_outputs.start']"},
                {"source": "process1", "target": "gather"},
                {"source": "process2", "target": "gather"},
            ],
        ),
        input=None,
        context={"input": {"value": 42}},
        status="completed",
        resume=[(None, "one", "wait1"), (None, "two", "wait2")],
        outputs={
            "start": {"value": 42},
            "wait1": "one",
            "process1": "42",
            "wait2": "two",
            "process2": "42",
            "gather": {"result1": "42", "result2": "42"},
        },
        final_context={"input": {"value": 42}},
        calls={
            "start:passthrough": 1,
            "process1:suffix": 1,
            "process2:suffix": 1,
            "gather:passthrough": 1,
        },
    ),
    Scenario(
        # Initial context (Flowcraft's run(blueprint, initialState)) and the `inputs: "input"`
        # idiom; a transform reading context keys and a node's output through `context`.
        "fc_initial_context",
        _bp(
            "fc-initial-context",
            [
                _n("first", "passthrough", inputs="input"),
                _n("second", "passthrough"),
                _n("third", "read", params={"key": "tenant"}),
            ],
            [
                {
                    "source": "first",
                    "target": "second",
                    "transform": "{'n': input.n, 'tenant': context.tenant, 'first': context.first}",
                },
                {"source": "second", "target": "third"},
            ],
        ),
        input="the run input, unused",
        context={"input": {"n": 7}, "tenant": "acme"},
        status="completed",
        outputs={
            "first": {"n": 7},
            "second": {"n": 7, "tenant": "acme", "first": {"n": 7}},
            "third": "acme",
        },
        final_context={"input": {"n": 7}, "tenant": "acme"},
        calls={"first:passthrough": 1, "second:passthrough": 1, "third:read": 1},
    ),
    Scenario(
        # As Flowcraft's evaluator binds them: `context` in a condition is the run's context
        # (the initial context, the node's own pending write, node outputs under their ids
        # and `_outputs.<id>`), and a hyphenated node id written as a name reads that node's
        # output (rewriteHyphenatedIdentifiers), not a subtraction.
        "fc_conditions_read_context",
        _bp(
            "fc-conditions-context",
            [
                _n(
                    "check-stock",
                    "set",
                    params={"key": "shared", "value": 42, "output": {"ok": True}},
                ),
                _const_node("ship", "shipped"),
                _const_node("hold", "held"),
                _n("notify", "passthrough"),
            ],
            [
                {
                    "source": "check-stock",
                    "target": "ship",
                    "condition": "check-stock.ok === true && context.shared === 42 "
                    "&& context.tenant === 'acme'",
                },
                {
                    "source": "check-stock",
                    "target": "hold",
                    "condition": "!check-stock.ok || context['check-stock'].ok !== true",
                },
                {
                    "source": "ship",
                    "target": "notify",
                    "condition": "context['_outputs.ship'] === 'shipped' && context.ship === "
                    "'shipped' && context['_outputs.check-stock'].ok",
                },
            ],
        ),
        input=None,
        context={"tenant": "acme"},
        status="completed",
        outputs={"check-stock": {"ok": True}, "ship": "shipped", "notify": "shipped"},
        final_context={"tenant": "acme", "shared": 42},
        calls={"check-stock:set": 1, "ship:const": 1, "notify:passthrough": 1},
    ),
    Scenario(
        # Two edges between one pair are alternatives (one input, not a join), and node ids
        # may hold '#', '.', '/' and any unicode, without colliding with instance keys.
        "fc_alternatives_and_any_ids",
        _bp(
            "fc-ids",
            [
                _const_node("a#1", "hash", action="yes"),
                _n("b.c/d", "suffix", params={"suffix": "!"}),
                _n("ünï 🚀", "passthrough", inputs="b.c/d"),
                _n("a", "passthrough", inputs="a#1"),
            ],
            [
                {"source": "a#1", "target": "b.c/d", "action": "yes"},
                {"source": "a#1", "target": "b.c/d", "action": "no", "transform": "'wrong'"},
                {"source": "b.c/d", "target": "ünï 🚀"},
                {"source": "ünï 🚀", "target": "a"},
            ],
        ),
        input=None,
        status="completed",
        outputs={"a#1": "hash", "b.c/d": "hash!", "ünï 🚀": "hash!", "a": "hash"},
        calls={"a#1:const": 1, "b.c/d:suffix": 1, "ünï 🚀:passthrough": 1, "a:passthrough": 1},
    ),
    Scenario(
        # Flowcraft's class-node lifecycle (test/runtime/executors.test.ts, 'should handle
        # retries on failure', 'should execute fallback on error'): prep -> exec (retried)
        # -> fallback -> post, recover after a failure; post's action routes.
        "fc_class_lifecycle",
        _bp(
            "fc-lifecycle",
            [
                _n("retried", "lifecycle", params={"succeed_on": 2}, config={"maxRetries": 2}),
                _n(
                    "rescued",
                    "lifecycle",
                    params={"succeed_on": 0, "action": "saved"},
                    config={"maxRetries": 2},
                ),
                _n("after", "passthrough"),
                _n("never", "passthrough"),
            ],
            [
                {"source": "retried", "target": "rescued"},
                {"source": "rescued", "target": "after", "action": "saved"},
                {"source": "rescued", "target": "never"},
            ],
        ),
        input="in",
        status="completed",
        outputs={
            "retried": {"posted": {"prepared": "in", "attempt": 2}},
            "rescued": {"posted": {"fallback": "exec failed on attempt 2"}},
            "after": {"posted": {"fallback": "exec failed on attempt 2"}},
        },
        calls={
            # a new instance per attempt: prep runs before each exec
            "retried:prep": 2,
            "retried:exec": 2,
            "retried:post": 1,
            "retried:recover": 1,
            "rescued:prep": 2,
            "rescued:exec": 2,
            "rescued:fallback": 1,
            "rescued:post": 1,
            "rescued:recover": 2,
            "after:passthrough": 1,
        },
    ),
]
SCENARIOS.extend(FLOWCRAFT_SCENARIOS)


def _sub(node_id: str, blueprint_id: str, **fields: Any) -> dict[str, Any]:
    params = {"blueprintId": blueprint_id, **fields.pop("params", {})}
    return {"id": node_id, "uses": "subflow", "params": params, **fields}


_INC = _bp(
    "sf-inc",
    [_n("inc-10", "add", params={"n": 10}), _n("inc-100", "add", params={"n": 100})],
    [{"source": "inc-10", "target": "inc-100"}],
)

# The same, reading its start's input from the child's context key ``x`` (``params.inputs``).
_INC_X = _bp(
    "sf-inc-x",
    [_n("inc-10", "add", params={"n": 10}, inputs="x"), _n("inc-100", "add", params={"n": 100})],
    [{"source": "inc-10", "target": "inc-100"}],
)

# Subflows (docs/flowcraft.md § Subflows and the blueprint catalog): each child is a run of its
# own, exactly one per parent job instance and attempt whatever the fault; outputs as
# Flowcraft's SubflowNode gives.
SUBFLOW_SCENARIOS: list[Scenario] = [
    Scenario(
        "subflow_chain",
        _bp(
            "sf-chain",
            [
                _n("a", "add"),
                _sub("s1", "sf-inc"),
                _sub("s2", "sf-inc"),
                _n("b", "add"),
            ],
            [
                {"source": "a", "target": "s1"},
                {"source": "s1", "target": "s2"},
                {"source": "s2", "target": "b"},
            ],
        ),
        input=0,
        status="completed",
        outputs={"a": 1, "s1": 111, "s2": 221, "b": 222},
        calls={"a:add": 1, "inc-10:add": 2, "inc-100:add": 2, "b:add": 1},
        blueprints=[_INC],
        children=["completed", "completed"],
        child_nodes={"inc-10": 2, "inc-100": 2},
    ),
    Scenario(
        # Flowcraft's 'should execute subflow and merge context correctly': inputs seed the
        # child's context, outputs write the parent's, and with outputs the node's output is
        # the child's final context (keys, and node outputs under _outputs.<id> and <id>).
        "subflow_inputs_outputs",
        _bp(
            "sf-io",
            [
                _const_node("input", {"value": "test"}),
                _sub(
                    "test-subflow",
                    "sf-process",
                    params={"inputs": {"input": "input"}, "outputs": {"subflow_output": "process"}},
                ),
                _n("output", "read", params={"key": "subflow_output", "prefix": "got "}),
            ],
            [
                {"source": "input", "target": "test-subflow"},
                {"source": "test-subflow", "target": "output"},
            ],
        ),
        input=None,
        status="completed",
        outputs={
            "input": {"value": "test"},
            "test-subflow": {
                "input": {"value": "test"},
                "note": "kept",
                "_outputs.noter": "noted",
                "noter": "noted",
                "_outputs.process": "test!",
                "process": "test!",
            },
            "output": "got test!",
        },
        final_context={"subflow_output": "test!"},
        calls={"input:const": 1, "process:suffix": 1, "noter:set": 1, "output:read": 1},
        blueprints=[
            _bp(
                "sf-process",
                [
                    _n("noter", "set", params={"key": "note", "value": "kept", "output": "noted"}),
                    _n(
                        "process",
                        "suffix",
                        inputs="input",
                        params={"suffix": "!", "path": ["value"]},
                    ),
                ],
                [{"source": "noter", "target": "process"}],
            )
        ],
        children=["completed"],
        child_nodes={"noter": 1, "process": 1},
    ),
    Scenario(
        # A subflow whose child has a subflow: three runs deep; the grandchild's blueprint is
        # found in the worker's catalog (the run pinned nothing).
        "subflow_nested_worker_catalog",
        _bp(
            "sf-outer-main",
            [_n("start", "add"), _sub("outer", "sf-outer")],
            [{"source": "start", "target": "outer"}],
        ),
        input=1,
        status="completed",
        outputs={"start": 2, "outer": 113},
        calls={"start:add": 1, "pre:add": 1, "inc-10:add": 1, "inc-100:add": 1},
        blueprints=[
            _bp(
                "sf-outer",
                [_n("pre", "add"), _sub("inner", "sf-inc")],
                [{"source": "pre", "target": "inner"}],
            ),
            _INC,
        ],
        worker_catalog=True,
        children=["completed", "completed"],
        child_nodes={"pre": 1, "inc-10": 1, "inc-100": 1},
    ),
    Scenario(
        # Flowcraft's hitl 'should handle nested subflow with wait node': the parent awaits
        # while its child does; resuming the parent resumes the child's wait node.
        "subflow_awaiting_resumed_through_parent",
        _bp(
            "sf-hitl",
            [
                _n("main-start", "passthrough", inputs="input"),
                _sub("subflow", "sf-approval", params={"inputs": {"input": "main-start"}}),
                _n("main-end", "suffix", params={"suffix": "+main", "path": ["value"]}),
            ],
            [
                {"source": "main-start", "target": "subflow"},
                {"source": "subflow", "target": "main-end"},
            ],
        ),
        input=None,
        context={"input": 42},
        status="completed",
        resume=(None, {"value": "approved"}),
        outputs={
            "main-start": 42,
            "subflow": {"value": "approved"},
            "main-end": "approved+main",
        },
        calls={"main-start:passthrough": 1, "sub-start:passthrough": 1, "main-end:suffix": 1},
        blueprints=[
            _bp(
                "sf-approval",
                [
                    _n("sub-start", "passthrough", inputs="input"),
                    {"id": "sub-wait", "uses": "wait"},
                ],
                [{"source": "sub-start", "target": "sub-wait"}],
            )
        ],
        final_context={"input": 42},
        children=["completed"],
        child_nodes={"sub-start": 1},
    ),
    Scenario(
        # A failed child fails the attempt; a retry starts a fresh child; with no attempts
        # left the fallback runs in the subflow node's place.
        "subflow_failed_retried_then_fallback",
        _bp(
            "sf-fallback",
            [
                _sub("s", "sf-fails", config={"maxRetries": 2, "fallback": "r"}),
                _n("r", "rescue"),
                _n("after", "passthrough"),
            ],
            [{"source": "s", "target": "after"}],
        ),
        input="in",
        status="completed",
        outputs={"s": None, "r": {"rescued": "in"}, "after": {"rescued": "in"}},
        calls={"doomed:fail": 2, "r:rescue": 1, "after:passthrough": 1},
        blueprints=[_bp("sf-fails", [_n("doomed", "fail")], [])],
        children=["failed", "failed"],
    ),
    Scenario(
        "subflow_failed_fails_the_run",
        _bp("sf-failed", [_n("a", "add"), _sub("s", "sf-fails")], [{"source": "a", "target": "s"}]),
        input=0,
        status="failed",
        outputs={"a": 1},
        error_node="s",
        error_type="SubflowFailed",
        calls={"a:add": 1, "doomed:fail": 1},
        blueprints=[_bp("sf-fails", [_n("doomed", "fail")], [])],
        children=["failed"],
    ),
]
SCENARIOS.extend(SUBFLOW_SCENARIOS)


def _loop(loop_id: str, start: str, end: str, condition: str, **params: Any) -> list[Any]:
    """What Flowcraft's ``.loop(id, {startNodeId, endNodeId, condition})`` emits: the
    controller node, end -> controller, and controller -> start (continue)."""
    node = _n(
        loop_id,
        "loop-controller",
        params={"condition": condition, **params},
        config={"joinStrategy": "any"},
    )
    return [
        node,
        {"source": end, "target": loop_id},
        {
            "source": loop_id,
            "target": start,
            "action": "continue",
            "transform": f'context["{end}"]',
        },
    ]


def _break(loop_id: str, end: str, target: str, **fields: Any) -> dict[str, Any]:
    """An edge out of a loop as ``toBlueprint()`` rewires it."""
    return {
        "source": loop_id,
        "target": target,
        "action": "break",
        "transform": f'context["{end}"]',
        **fields,
    }


def _batch(batch_id: str, worker: str, input_key: str, output_key: str, **params: Any) -> Any:
    """The two nodes and the edge Flowcraft's ``.batch(id, worker, {inputKey, outputKey,
    chunkSize})`` emits."""
    scatter, gather = f"{batch_id}_scatter", f"{batch_id}_gather"
    return [
        _n(
            scatter,
            "batch-scatter",
            inputs=input_key,
            params={
                "workerUsesKey": worker,
                "outputKey": output_key,
                "gatherNodeId": gather,
                **params,
            },
        ),
        _n(
            gather,
            "batch-gather",
            params={"outputKey": output_key, "gatherNodeId": gather},
            config={"joinStrategy": "all"},
        ),
        {"source": scatter, "target": gather},
    ]


def _split(parts: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [p for p in parts if "uses" in p]
    edges = [p for p in parts if "uses" not in p]
    return nodes, edges


def _flow(name: str, *parts: Any) -> dict[str, Any]:
    flat: list[Any] = []
    for p in parts:
        flat.extend(p if isinstance(p, list) else [p])
    nodes, edges = _split(flat)
    return _bp(name, nodes, edges)


def _edge(source: str, target: str, **fields: Any) -> dict[str, Any]:
    return {"source": source, "target": target, **fields}


_ITEMS = [{"id": 1, "data": "item1"}, {"id": 2, "data": "item2"}, {"id": 3, "data": "item3"}]
_PROCESSED = ["processed_1_item1", "processed_2_item2", "processed_3_item3"]
_BATCH = {"gatherNodeId": "b_gather", "hasMore": False}
WORKER = "b_scatter/worker"  # the id the engine gives batch b's worker

# Loops and batches: Flowcraft 2.10.1's cases (packages/core/test/runtime/builtins.test.ts and
# runtime.test.ts) with its outputs, and the shapes around them (nesting, do-while entry, a
# batch inside a loop, the iteration bound, chunks, failures).
LOOP_BATCH_SCENARIOS: list[Scenario] = [
    Scenario(
        # 'should correctly exit a simple loop with an intuitive edge definition'
        "fc_loop_simple_exit",
        _flow(
            "fc-loop-simple",
            _n("initialize", "set", params={"key": "count", "value": 0, "output": "Initialized"}),
            _n("increment", "bump"),
            _loop("counter", "increment", "increment", "count < 5"),
            _n("finalize", "read", params={"key": "count", "prefix": "Finalized at "}),
            _edge("initialize", "counter"),
            _break("counter", "increment", "finalize"),
        ),
        input=None,
        status="completed",
        outputs={
            "initialize": "Initialized",
            "increment": 5,
            "counter": None,
            "finalize": "Finalized at 5",
        },
        final_context={"count": 5},
        calls={"initialize:set": 1, "increment:bump": 5, "finalize:read": 1},
        per_instance=True,
    ),
    Scenario(
        # The same loop, its condition reading `context.count` and a hyphenated node id.
        "loop_condition_reads_context",
        _flow(
            "loop-context-condition",
            _n("initialize", "set", params={"key": "count", "value": 0, "output": "Initialized"}),
            _n("inc-count", "bump"),
            _loop(
                "counter",
                "inc-count",
                "inc-count",
                "context.count < 5 && (!inc-count || inc-count < 5)",
            ),
            _n("finalize", "read", params={"key": "count", "prefix": "Finalized at "}),
            _edge("initialize", "counter"),
            _break("counter", "inc-count", "finalize"),
        ),
        input=None,
        status="completed",
        outputs={
            "initialize": "Initialized",
            "inc-count": 5,
            "counter": None,
            "finalize": "Finalized at 5",
        },
        final_context={"count": 5},
        calls={"initialize:set": 1, "inc-count:bump": 5, "finalize:read": 1},
        per_instance=True,
    ),
    Scenario(
        # 'should execute loop for specified iterations and break correctly'
        "fc_loop_iterations",
        _flow(
            "fc-loop-iterations",
            _n("initialize", "set", params={"key": "counter", "value": 0, "output": "init"}),
            _n("increment", "bump", params={"key": "counter", "format": "iteration_{}"}),
            _n("check", "read", params={"key": "counter", "prefix": "checked_"}),
            _const_node("final", "final"),
            _edge("initialize", "test-loop"),
            _edge("increment", "check"),
            _loop("test-loop", "increment", "check", "counter < 3"),
            _break("test-loop", "check", "final"),
        ),
        input=None,
        status="completed",
        outputs={
            "initialize": "init",
            "increment": "iteration_3",
            "check": "checked_3",
            "test-loop": None,
            "final": "final",
        },
        calls={"initialize:set": 1, "increment:bump": 3, "check:read": 3, "final:const": 1},
        per_instance=True,
    ),
    Scenario(
        # 'should evaluate conditional edges from loop controller on each iteration'
        "fc_loop_conditional_exit",
        _flow(
            "fc-loop-conditional",
            _n("start", "set", params={"key": "counter", "value": 0, "output": 0}),
            _n("body", "bump", params={"key": "counter"}),
            _const_node("specialExit", "special exit!"),
            _const_node("end", "finished"),
            _loop("myLoop", "body", "body", "counter < 10"),
            _edge("start", "myLoop"),
            _break("myLoop", "body", "specialExit", condition="counter === 5"),
            _break("myLoop", "body", "end"),
        ),
        input=None,
        status="completed",
        outputs={"start": 0, "body": 5, "myLoop": None, "specialExit": "special exit!"},
        final_context={"counter": 5},
        calls={"start:set": 1, "body:bump": 5, "specialExit:const": 1},
        per_instance=True,
    ),
    Scenario(
        # A do-while: the loop is entered at its start node, the condition checked after.
        "loop_entered_at_start",
        _flow(
            "loop-do-while",
            _n("begin", "passthrough"),
            _edge("begin", "a"),
            _n("a", "add", params={"n": 1}),
            _n("b", "add", params={"n": 10}),
            _edge("a", "b"),
            _loop("again", "a", "b", "b < 40"),
            _n("after", "passthrough"),
            _break("again", "b", "after"),
        ),
        input=0,
        status="completed",
        outputs={"begin": 0, "a": 34, "b": 44, "again": None, "after": 44},
        calls={"begin:passthrough": 1, "a:add": 4, "b:add": 4, "after:passthrough": 1},
        per_instance=True,
    ),
    Scenario(
        # Nested loops: 3 outer iterations, each running the inner loop twice.
        "loop_nested",
        _flow(
            "loop-nested",
            _n("init", "set", params={"key": "outer", "value": 0, "output": "go"}),
            _n("o", "bump", params={"key": "outer"}),
            _n("reset", "set", params={"key": "inner", "value": 0, "output": "r"}),
            _n("i", "bump", params={"key": "total"}),
            _n("i2", "bump", params={"key": "inner"}),
            _n("o_end", "read", params={"key": "total", "prefix": "total "}),
            _n("done", "read", params={"key": "total", "prefix": "done "}),
            _edge("init", "outer_loop"),
            _edge("o", "reset"),
            _edge("reset", "inner_loop"),
            _edge("i", "i2"),
            _loop("inner_loop", "i", "i2", "inner < 2"),
            _break("inner_loop", "i2", "o_end"),
            _loop("outer_loop", "o", "o_end", "outer < 3"),
            _break("outer_loop", "o_end", "done"),
        ),
        input=None,
        status="completed",
        outputs={
            "init": "go",
            "o": 3,
            "reset": "r",
            "i": 6,
            "i2": 2,
            "inner_loop": None,
            "o_end": "total 6",
            "outer_loop": None,
            "done": "done 6",
        },
        final_context={"outer": 3, "inner": 2, "total": 6},
        calls={
            "init:set": 1,
            "o:bump": 3,
            "reset:set": 3,
            "i:bump": 6,
            "i2:bump": 6,
            "o_end:read": 3,
            "done:read": 1,
        },
        per_instance=True,
    ),
    Scenario(
        # 'should handle infinite loop prevention': a condition that never turns false fails
        # the run at the loop's bound, naming the loop. (Flowcraft's case has no entry edge
        # and starts at a cycle's first node; here a blueprint needs a start node.)
        "loop_max_iterations",
        _flow(
            "loop-runaway",
            _n("enter", "passthrough"),
            _edge("enter", "work"),
            _n("work", "bump"),
            _n("always-true", "passthrough"),
            _edge("work", "always-true"),
            _loop("test-loop", "work", "always-true", "true", maxIterations=4),
            _n("never", "passthrough"),
            _break("test-loop", "always-true", "never"),
        ),
        input=None,
        status="failed",
        calls={"enter:passthrough": 1, "work:bump": 4, "always-true:passthrough": 4},
        error_node="test-loop",
        error_type="LoopLimitExceeded",
        traceback=False,
        per_instance=True,
    ),
    Scenario(
        # 'should correctly execute batch-scatter and batch-gather with multiple items'
        "fc_batch",
        _flow(
            "fc-batch",
            _const_node("prepare", _ITEMS),
            _n("verify", "passthrough"),
            _batch("b", "item", "prepare", "results"),
            _edge("prepare", "b_scatter"),
            _edge("b_gather", "verify"),
        ),
        input=None,
        status="completed",
        outputs={
            "prepare": _ITEMS,
            "b_scatter": {**_BATCH, "count": 3},
            "b_gather": _PROCESSED,
            "verify": _PROCESSED,
        },
        final_context={"results": _PROCESSED},
        calls={"prepare:const": 1, f"{WORKER}:item": 3, "verify:passthrough": 1},
        per_instance=True,
    ),
    Scenario(
        # At most chunkSize items in flight; results still in item order.
        "batch_chunked",
        _flow(
            "batch-chunked",
            _const_node("prepare", list(range(7))),
            _batch("b", "item", "prepare", "out", chunkSize=2),
            _n("after", "passthrough"),
            _edge("prepare", "b_scatter"),
            _edge("b_gather", "after"),
        ),
        input=None,
        status="completed",
        outputs={
            "prepare": list(range(7)),
            "b_scatter": {**_BATCH, "count": 7},
            "b_gather": [i * 10 for i in range(7)],
            "after": [i * 10 for i in range(7)],
        },
        final_context={"out": [i * 10 for i in range(7)]},
        calls={"prepare:const": 1, f"{WORKER}:item": 7, "after:passthrough": 1},
        per_instance=True,
    ),
    Scenario(
        # 'should handle empty batch input array': completes at once, the worker never runs.
        "fc_batch_empty",
        _flow(
            "fc-batch-empty",
            _const_node("prepare", []),
            _const_node("verify", "verified"),
            _batch("b", "boom", "prepare", "results"),
            _edge("prepare", "b_scatter"),
            _edge("b_gather", "verify"),
        ),
        input=None,
        status="completed",
        outputs={
            "prepare": [],
            "b_scatter": {**_BATCH, "count": 0},
            "b_gather": [],
            "verify": "verified",
        },
        final_context={"results": []},
        calls={"prepare:const": 1, "verify:const": 1},
    ),
    Scenario(
        # 'should throw error for non-array input in batch-scatter'
        "fc_batch_not_array",
        _flow(
            "fc-batch-not-array",
            _const_node("prepare", "not an array"),
            _const_node("verify", "should not reach"),
            _batch("b", "item", "prepare", "results"),
            _edge("prepare", "b_scatter"),
            _edge("b_gather", "verify"),
        ),
        input=None,
        status="failed",
        calls={"prepare:const": 1},
        error_node="b_scatter",
        error_type="BatchInputNotArray",
        traceback=False,
    ),
    Scenario(
        # 'should handle worker failures in batch': a failed item fails the run (one item at
        # a time, so that how often item 1 ran before the failure is known under every fault).
        "fc_batch_item_fails",
        _flow(
            "fc-batch-fails",
            _const_node("prepare", [{"id": 1, "data": "item1"}, {"id": 2, "fail": True}]),
            _const_node("verify", "verified"),
            _batch("b", "item", "prepare", "results", chunkSize=1),
            _edge("prepare", "b_scatter"),
            _edge("b_gather", "verify"),
        ),
        input=None,
        status="failed",
        calls={"prepare:const": 1, f"{WORKER}:item": 2},
        error_node=WORKER,
        error_type="RuntimeError",
    ),
    Scenario(
        # A batch inside a loop: each iteration scatters anew (its own instances).
        "batch_in_loop",
        _flow(
            "batch-in-loop",
            _n("begin", "set", params={"key": "rnd", "value": 0}),
            _edge("begin", "round"),
            _n("round", "bump", params={"key": "rnd"}),
            _const_node("items", [1, 2, 3]),
            _edge("round", "items"),
            _batch("b", "item", "items", "out"),
            _edge("items", "b_scatter"),
            _n("sum", "passthrough"),
            _edge("b_gather", "sum"),
            _loop("rounds", "round", "sum", "rnd < 2"),
            _n("last", "passthrough"),
            _break("rounds", "sum", "last"),
        ),
        input=None,
        status="completed",
        calls={
            "begin:set": 1,
            "round:bump": 2,
            "items:const": 2,
            f"{WORKER}:item": 6,
            "sum:passthrough": 2,
            "last:passthrough": 1,
        },
        final_context={"rnd": 2, "out": [10, 20, 30]},
        per_instance=True,
    ),
]
LOOP_BATCH_SCENARIOS.append(
    Scenario(
        # A wait inside a loop parks at its iteration's instance; the resume completes that
        # instance and the loop goes on from it.
        "loop_with_wait",
        _flow(
            "loop-wait",
            _n("enter", "set", params={"key": "n", "value": 0, "output": "in"}),
            _n("bump", "bump", params={"key": "n"}),
            _n("w", "wait"),
            _edge("enter", "L"),
            _edge("bump", "w"),
            _loop("L", "bump", "w", "n < 1"),
            _n("after", "passthrough"),
            _break("L", "w", "after"),
        ),
        input=None,
        status="completed",
        resume=(None, "ok"),
        outputs={"enter": "in", "L": None, "bump": 1, "w": "ok", "after": "ok"},
        final_context={"n": 1},
        calls={"enter:set": 1, "bump:bump": 1, "after:passthrough": 1},
    )
)
SCENARIOS.extend(LOOP_BATCH_SCENARIOS)

# Loops, batches and subflows combined: a subflow node in a loop body (one child per
# iteration), a batch whose worker is a subflow (one child per item), and a loop inside the
# subflow a batch worker runs. Each child is exactly one per parent instance and attempt.
NESTED_SCENARIOS: list[Scenario] = [
    Scenario(
        "subflow_in_loop",
        _flow(
            "subflow-in-loop",
            _n("enter", "set", params={"key": "n", "value": 0, "output": "in"}),
            _n("bump", "bump", params={"key": "n"}),
            _sub("s", "sf-inc-x", params={"inputs": {"x": "bump"}, "outputs": {"last": "inc-100"}}),
            _n("check", "passthrough", inputs="last"),
            _edge("enter", "L"),
            _edge("bump", "s"),
            _edge("s", "check"),
            _loop("L", "bump", "check", "n < 3"),
            _n("after", "passthrough"),
            _break("L", "check", "after"),
        ),
        input=None,
        status="completed",
        outputs={
            "enter": "in",
            "bump": 3,
            "s": {
                "x": 3,
                "_outputs.inc-10": 13,
                "inc-10": 13,
                "_outputs.inc-100": 113,
                "inc-100": 113,
            },
            "check": 113,
            "L": None,
            "after": 113,
        },
        final_context={"n": 3, "last": 113},
        calls={
            "enter:set": 1,
            "bump:bump": 3,
            "check:passthrough": 3,
            "inc-10:add": 3,
            "inc-100:add": 3,
            "after:passthrough": 1,
        },
        blueprints=[_INC_X],
        children=["completed"] * 3,
        child_nodes={"inc-10": 3, "inc-100": 3},
        per_instance=True,
    ),
]
_COUNT_TO_ITEM = _flow(
    "sf-count",
    _n("seed", "passthrough"),
    _n("zero", "set", params={"key": "k", "value": 0, "output": "z"}),
    _n("tick", "bump", params={"key": "k"}),
    _n("done", "read", params={"key": "k", "prefix": "k="}),
    _edge("seed", "zero"),
    _edge("zero", "count"),
    _loop("count", "tick", "tick", "k < seed"),
    _break("count", "tick", "done"),
)
NESTED_SCENARIOS += [
    Scenario(
        # A batch whose worker is the subflow built-in (params.workerParams are each worker's
        # params): one child per item, its run input the item.
        "batch_of_subflows",
        _flow(
            "batch-of-subflows",
            _const_node("prepare", [1, 2, 3]),
            _batch("b", "subflow", "prepare", "results", workerParams={"blueprintId": "sf-inc"}),
            _n("after", "passthrough"),
            _edge("prepare", "b_scatter"),
            _edge("b_gather", "after"),
        ),
        input=None,
        status="completed",
        outputs={
            "prepare": [1, 2, 3],
            "b_scatter": {**_BATCH, "count": 3},
            "b_gather": [111, 112, 113],
            "after": [111, 112, 113],
        },
        final_context={"results": [111, 112, 113]},
        calls={"prepare:const": 1, "inc-10:add": 3, "inc-100:add": 3, "after:passthrough": 1},
        blueprints=[_INC],
        children=["completed"] * 3,
        child_nodes={"inc-10": 3, "inc-100": 3},
        per_instance=True,
    ),
    Scenario(
        # A loop inside the subflow a batch worker runs (as Flowcraft's builder names the
        # built-in, SubflowNode): item n's child loops n times, two items at a time.
        "loop_in_batch_subflow",
        _flow(
            "loop-in-batch-subflow",
            _const_node("prepare", [1, 2, 3]),
            _batch(
                "b",
                "SubflowNode",
                "prepare",
                "results",
                chunkSize=2,
                workerParams={"blueprintId": "sf-count"},
            ),
            _n("after", "passthrough"),
            _edge("prepare", "b_scatter"),
            _edge("b_gather", "after"),
        ),
        input=None,
        status="completed",
        outputs={
            "prepare": [1, 2, 3],
            "b_scatter": {**_BATCH, "count": 3},
            "b_gather": ["k=1", "k=2", "k=3"],
            "after": ["k=1", "k=2", "k=3"],
        },
        final_context={"results": ["k=1", "k=2", "k=3"]},
        calls={
            "prepare:const": 1,
            "seed:passthrough": 3,
            "zero:set": 3,
            "tick:bump": 6,
            "done:read": 3,
            "after:passthrough": 1,
        },
        blueprints=[_COUNT_TO_ITEM],
        children=["completed"] * 3,
        child_nodes={"seed": 3, "zero": 3, "tick": 3, "done": 3},
        per_instance=True,
    ),
]
SCENARIOS.extend(NESTED_SCENARIOS)


def _check_any(result: RunResult) -> None:
    outputs = result.outputs
    assert outputs["a"] == {"node": "a", "input": None, "label": None}, outputs
    assert outputs["fast"] == {"node": "fast", "input": outputs["a"], "label": "fast"}, outputs
    assert outputs["j"]["input"] in ("fast", "slow-branch"), outputs


SCENARIOS_BY_NAME = {s.name: s for s in SCENARIOS}


# -- running --------------------------------------------------------------------------------


class DuplicatingQueue:
    """Wraps any queue so that every job is enqueued twice: duplicate delivery on demand."""

    def __init__(self, inner: Queue) -> None:
        self.inner = inner

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        await self.inner.enqueue_many([job, job], delay=delay)

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        await self.inner.enqueue_many([j for job in jobs for j in (job, job)], delay=delay)

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> Any:
        return await self.inner.consume(handler, concurrency=concurrency)

    async def close(self) -> None:
        await self.inner.close()


class CrashOnce:
    """An engine checkpoint that crashes each job once at ``step``, on its first attempt."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.crashed: set[tuple[str, str, int]] = set()

    def __call__(self, step: str, job: Job) -> None:
        if step != self.step:
            return
        # Once per node and attempt: in a loop or batch, on the first instance that gets here
        # (each crash costs the chain's message a redelivery backoff; the memory driver's own
        # fault injection crashes every delivery, every instance included).
        key = (job.run_id, job.node_id, job.attempt)
        if key not in self.crashed:
            self.crashed.add(key)
            raise SimulatedCrash(f"simulated crash at {step} of {job.node_id}")


def expected_calls(scenario: Scenario, fault: str) -> dict[str, int]:
    """How often each node's code may run under ``fault``: as without faults, plus one run for
    each crash between a node's execution and its commit."""
    expected = dict(scenario.calls)
    if fault == "crash:executed":
        for key in scenario.calls:
            node = key.split(":")[0]
            if node in scenario.child_nodes:
                expected[key] += scenario.child_nodes[node]
                continue
            if (
                scenario.outputs is not None
                and node not in scenario.outputs
                and not (scenario.per_instance and scenario.status == "completed")
            ):
                continue  # never committed: it failed, so it never reached the checkpoint
            expected[key] += 1
        if scenario.name == "timeout_then_fallback":
            # the re-delivered last attempt times out again before its fallback reruns
            expected["t:slow"] = scenario.calls["t:slow"] + 1
        if scenario.name == "subflow_failed_retried_then_fallback":
            # each attempt of a subflow node passes 'executed' once its child is started: the
            # crash is spent there, and the fallback after the last attempt runs once
            expected["r:rescue"] = scenario.calls["r:rescue"]
        if scenario.name == "fc_class_lifecycle":
            # the re-run of the attempt that succeeded fails nothing, so recovers nothing
            expected["retried:recover"] = scenario.calls["retried:recover"]
    return expected


async def run_scenario(
    scenario: Scenario,
    backends: Backends,
    *,
    fault: str = "none",
    timeout: float = 30.0,
    concurrency: int = 4,
    settings: EngineSettings | None = None,
) -> tuple[RunResult, dict[str, int]]:
    """Run ``scenario`` with an in-process worker on ``backends`` under ``fault``; returns the
    final result and how often each node's code ran."""
    queue: Queue = DuplicatingQueue(backends.queue) if fault == "duplicate" else backends.queue
    parts = Backends(queue, backends.context, backends.coordination, backends.urls)
    checkpoint = CrashOnce(fault.split(":", 1)[1]) if fault.startswith("crash:") else None
    catalog = [Blueprint.from_dict(b) for b in scenario.blueprints]
    worker = Worker(
        registry(),
        parts,
        concurrency=concurrency,
        settings=settings,
        checkpoint=checkpoint,
        blueprints=catalog if scenario.worker_catalog else (),
    )
    client = Client(parts, settings=settings, blueprints=() if scenario.worker_catalog else catalog)
    started = time.monotonic()
    async with worker:
        run_id = await client.start(scenario.flow, scenario.input, context=scenario.context)
        result = await client.result(run_id, timeout)
        result = await resume_scenario(client, scenario, run_id, result, timeout)
        # Let stray duplicate deliveries drain, so that a node run twice would be counted.
        await asyncio.sleep(0.05)
        await check_history_and_index(client, scenario, fault, run_id, result)
        if scenario.children is not None:
            statuses = sorted(await _descendants(client, run_id))
            assert statuses == scenario.children, (
                f"{scenario.name} [{fault}]: subflow runs {statuses}, expected {scenario.children}"
            )
    elapsed = time.monotonic() - started
    assert elapsed >= scenario.min_seconds, f"{scenario.name} finished too early: {elapsed:.3f}s"
    return result, calls_of(run_id)


async def check_history_and_index(
    client: Client, scenario: Scenario, fault: str, run_id: str, result: RunResult
) -> None:
    """The run's history and index entry agree with its result under ``fault``: a redelivery
    never records a second execution of a committed node, and the execution that committed
    is never lost; the index lists the run under its status."""
    where = f"{scenario.name} [{fault}]"
    history = await client.history(run_id)
    assert history.status == result.status, f"{where}: history says {history.status}"
    uses = {n.id: n.uses for n in scenario.flow.nodes}
    for node in history.nodes:
        done = [a for a in node.attempts if a.superseded is None and a.status == "completed"]
        assert len(done) <= 1, f"{where}: node {node.node} recorded {len(done)} commits"
        if node.status == "completed" and uses.get(node.node) not in ("wait", "subflow"):
            assert len(done) == 1, f"{where}: node {node.node}'s commit has no record: {node}"
        numbers = [a.attempt for a in node.attempts if a.superseded is None]
        assert numbers == sorted(set(numbers)), f"{where}: attempts {numbers} of {node.node}"
    if result.status in ("completed", "failed", "cancelled", "awaiting"):
        page = await client.runs(status=result.status, limit=1000)
        assert run_id in [r.run_id for r in page.runs], f"{where}: not listed {result.status}"


async def _descendants(client: Client, run_id: str) -> list[str]:
    """The status of every subflow run under ``run_id``, children and theirs."""
    out: list[str] = []
    for child, info in (await client.children(run_id)).items():
        out.append(str(info["status"]))
        out.extend(await _descendants(client, child))
    return out


def verify(scenario: Scenario, fault: str, result: RunResult, calls: dict[str, int]) -> None:
    """Assert the exact result of ``scenario`` under ``fault``."""
    assert result.status == scenario.status, (
        f"{scenario.name} [{fault}]: status {result.status}, error {result.error}"
    )
    if scenario.outputs is not None:
        assert result.outputs == scenario.outputs, f"{scenario.name} [{fault}]: {result.outputs}"
    if scenario.check is not None:
        scenario.check(result)
    if scenario.final_context is not None:
        assert result.context == scenario.final_context, f"{scenario.name} [{fault}]: {result}"
    if scenario.error_node is not None:
        assert result.error is not None
        assert result.error["node"] == scenario.error_node, result.error
        assert result.error["type"] == scenario.error_type, result.error
        if scenario.traceback:
            assert result.error["traceback"], result.error
    assert calls == expected_calls(scenario, fault), (
        f"{scenario.name} [{fault}]: node code ran {calls}, "
        f"expected {expected_calls(scenario, fault)}"
    )


# How long a scenario's run may take on a driver under test: generous, since a slow SQL step
# under duplicated deliveries on a loaded machine is not a failure; a run that never ends is.
# The call's own bound is a little longer, so the run's RunTimeout (not the call's) reports it.
RESULT_TIMEOUT = 100.0
CALL_TIMEOUT = RESULT_TIMEOUT + 20


class WorkflowScenarios:
    """Every scenario under every fault, on the driver under test: exact outputs, joins that
    fire once, and no committed node run again (see the module docstring)."""

    contract = "workflow scenarios"

    @pytest.mark.parametrize("fault", FAULTS)
    @pytest.mark.parametrize("name", list(SCENARIOS_BY_NAME))
    def test_scenario(self, conformance: Harness, name: str, fault: str) -> None:
        scenario = SCENARIOS_BY_NAME[name]
        result, calls = conformance.run(
            run_scenario(scenario, conformance.backends, fault=fault, timeout=RESULT_TIMEOUT),
            timeout=CALL_TIMEOUT,
        )
        verify(scenario, fault, result, calls)

    @pytest.mark.parametrize("fault", ("none", "duplicate", "crash:completed"))
    @pytest.mark.parametrize("name", list(SCENARIOS_BY_NAME))
    def test_scenario_composed(self, conformance: Harness, name: str, fault: str) -> None:
        """The same, with the engine's steps composed from the protocols rather than a
        driver's fused run state: both must give the same results."""
        scenario = SCENARIOS_BY_NAME[name]
        settings = EngineSettings(fused_state=False)
        result, calls = conformance.run(
            run_scenario(
                scenario,
                conformance.backends,
                fault=fault,
                settings=settings,
                timeout=RESULT_TIMEOUT,
            ),
            timeout=CALL_TIMEOUT,
        )
        verify(scenario, fault, result, calls)
