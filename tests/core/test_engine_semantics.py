"""Node semantics, the client's calls and the engine's guarantees, beyond the scenarios, on the
in-memory driver."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from flowcraft_core import (
    Backends,
    Client,
    EngineSettings,
    FlowcraftError,
    NodeContext,
    Registry,
    Result,
    RunNotFound,
    Worker,
    open_backends,
)
from flowcraft_core.engine import keys
from flowcraft_core.engine.reconcile import reconcile
from flowcraft_core.errors import RunExists
from flowcraft_core.plugins import new_manager
from flowcraft_core.protocols import Job
from flowcraft_memory import Faults, MemoryQueue

from .helpers import Recorder, bp, harness, unique_url

# -- node implementations -------------------------------------------------------------------


class Calls:
    """Counts executions per node id; implementations built from it record themselves."""

    def __init__(self) -> None:
        self.counter: Counter[str] = Counter()

    def identity(self) -> Callable[[NodeContext], Awaitable[Any]]:
        async def identity(ctx: NodeContext) -> Any:
            self.counter[ctx.node_id] += 1
            return ctx.input

        return identity

    def add(self) -> Callable[[NodeContext], Awaitable[Any]]:
        async def add(ctx: NodeContext) -> Any:
            self.counter[ctx.node_id] += 1
            return (ctx.input or 0) + ctx.params.get("n", 1)

        return add


class Gate:
    """A node that blocks on an asyncio.Event until the test releases it."""

    def __init__(self, output: Any = "gate") -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.output = output
        self.finished = 0

    async def __call__(self, ctx: NodeContext) -> Any:
        self.entered.set()
        await self.release.wait()
        self.finished += 1
        return self.output


async def boom(ctx: NodeContext) -> Any:
    raise ValueError(f"boom in {ctx.node_id}")


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait for a precondition (never used as the assertion itself)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("precondition not reached in time")
        await asyncio.sleep(0.005)


def memory_queue(backends: Backends) -> MemoryQueue:
    queue = backends.queue
    assert isinstance(queue, MemoryQueue)
    return queue


# -- inputs, joins, dead paths --------------------------------------------------------------


async def test_all_join_gets_a_dict_of_its_live_predecessors_only() -> None:
    calls = Calls()
    flow = bp(
        [
            {"id": "a", "uses": "id"},
            {"id": "b", "uses": "add", "params": {"n": 1}},
            {"id": "c", "uses": "add", "params": {"n": 2}},
            {"id": "d", "uses": "add", "params": {"n": 3}},
            {"id": "j", "uses": "id"},
        ],
        [
            {"source": "a", "target": "b", "condition": "result.output > 100"},
            {"source": "a", "target": "c"},
            {"source": "a", "target": "d"},
            {"source": "b", "target": "j"},
            {"source": "c", "target": "j"},
            {"source": "d", "target": "j"},
        ],
    )
    async with harness({"id": calls.identity(), "add": calls.add()}) as h:
        small = await h.run(flow, 10)
        big = await h.run(flow, 1000)
    assert small.status == "completed", small.error
    assert small.outputs == {"a": 10, "c": 12, "d": 13, "j": {"c": 12, "d": 13}}
    assert big.status == "completed", big.error
    assert big.outputs["j"] == {"b": 1001, "c": 1002, "d": 1003}
    # b ran only for the big input; j ran once per run.
    assert calls.counter == {"a": 2, "b": 1, "c": 2, "d": 2, "j": 2}


async def test_skip_propagates_through_a_chain_into_a_join_that_runs_with_live_inputs() -> None:
    calls = Calls()
    flow = bp(
        [
            {"id": "a", "uses": "id"},
            {"id": "b", "uses": "add"},
            {"id": "c", "uses": "add"},
            {"id": "d", "uses": "add"},
            {"id": "e", "uses": "add", "params": {"n": 5}},
            {"id": "j", "uses": "id"},
        ],
        [
            {"source": "a", "target": "b", "condition": "result.output < 0"},
            {"source": "b", "target": "c"},
            {"source": "c", "target": "d"},
            {"source": "d", "target": "j"},
            {"source": "a", "target": "e"},
            {"source": "e", "target": "j"},
        ],
    )
    async with harness({"id": calls.identity(), "add": calls.add()}) as h:
        result = await h.run(flow, 1)
    assert result.status == "completed", result.error
    assert result.outputs == {"a": 1, "e": 6, "j": {"e": 6}}
    assert calls.counter == {"a": 1, "e": 1, "j": 1}  # b, c and d were skipped, not run


async def test_a_node_whose_every_incoming_edge_is_dead_is_skipped_and_the_run_completes() -> None:
    calls = Calls()
    flow = bp(
        [
            {"id": "a", "uses": "id"},
            {"id": "b", "uses": "id"},
            {"id": "c", "uses": "id"},
            {"id": "j", "uses": "id"},
        ],
        [
            {"source": "a", "target": "b", "condition": "result.output == 'no'"},
            {"source": "a", "target": "c", "condition": "result.output == 'no'"},
            {"source": "b", "target": "j"},
            {"source": "c", "target": "j"},
        ],
    )
    async with harness({"id": calls.identity()}) as h:
        result = await h.run(flow, "yes")
    assert result.status == "completed", result.error
    assert result.outputs == {"a": "yes"}
    assert calls.counter == {"a": 1}


async def test_transforms_apply_per_edge() -> None:
    calls = Calls()
    flow = bp(
        [
            {"id": "a", "uses": "id"},
            {"id": "b", "uses": "id"},
            {"id": "c", "uses": "id"},
            {"id": "j", "uses": "id"},
        ],
        [
            {"source": "a", "target": "b", "transform": "input.x * 10"},
            {"source": "a", "target": "c", "transform": "input.y + 1"},
            {"source": "b", "target": "j", "transform": "[input, input]"},
            {"source": "c", "target": "j"},
        ],
    )
    async with harness({"id": calls.identity()}) as h:
        result = await h.run(flow, {"x": 3, "y": 4})
    assert result.status == "completed", result.error
    assert result.outputs == {
        "a": {"x": 3, "y": 4},
        "b": 30,
        "c": 5,
        "j": {"b": [30, 30], "c": 5},
    }


async def test_inputs_override_by_key_and_by_mapping() -> None:
    calls = Calls()

    async def note(ctx: NodeContext) -> Any:
        ctx.context.set("note", {"by": ctx.node_id})
        return ctx.input

    flow = bp(
        [
            {"id": "a", "uses": "add", "params": {"n": 1}},
            {"id": "b", "uses": "note"},
            {"id": "c", "uses": "add", "params": {"n": 100}, "inputs": "_input"},
            {"id": "d", "uses": "id", "inputs": "_outputs.a"},
            {
                "id": "e",
                "uses": "id",
                "inputs": {"run": "_input", "first": "_outputs.a", "note": "note"},
            },
        ],
        [
            {"source": "a", "target": "b", "transform": "input * 1000"},
            {"source": "b", "target": "c"},
            {"source": "c", "target": "d"},
            {"source": "d", "target": "e"},
        ],
    )
    registry = {"add": calls.add(), "id": calls.identity(), "note": note}
    async with harness(registry) as h:
        result = await h.run(flow, 7)
    assert result.status == "completed", result.error
    assert result.outputs == {
        "a": 8,
        "b": 8000,
        "c": 107,  # the run input, not b's output
        "d": 8,  # a's output, not c's
        "e": {"run": 7, "first": 8, "note": {"by": "b"}},
    }


@pytest.mark.parametrize(
    ("action", "taken"),
    [
        ("yes", {"x"}),  # a matching action: only its edges; edges without action are dead
        ("unknown", {"y"}),  # no edge has it: the edges without action (whose condition holds)
        (None, {"y"}),
    ],
)
async def test_action_routing_falls_back_to_edges_without_action(
    action: str | None, taken: set[str]
) -> None:
    calls = Calls()

    async def decide(ctx: NodeContext) -> Any:
        return Result(output=1, action=action)

    flow = bp(
        [
            {"id": "d", "uses": "decide"},
            {"id": "x", "uses": "id"},
            {"id": "y", "uses": "id"},
            {"id": "z", "uses": "id"},
        ],
        [
            {"source": "d", "target": "x", "action": "yes"},
            {"source": "d", "target": "y"},
            {"source": "d", "target": "z", "condition": "result.output > 5"},
        ],
    )
    async with harness({"decide": decide, "id": calls.identity()}) as h:
        result = await h.run(flow)
    assert result.status == "completed", result.error
    assert set(result.outputs) == {"d"} | taken
    assert set(calls.counter) == taken
    if action is not None:
        stored = await h.backends.context.get(result.run_id, keys.action_key("d"))
        assert stored == action


async def test_condition_that_raises_is_false_and_reported() -> None:
    """As in Flowcraft: a condition that cannot be evaluated is false, the run goes on, and
    the problem is reported through a hook naming the edge."""
    calls = Calls()
    recorder = Recorder()
    pm = new_manager(load_entry_points=True)
    pm.register(recorder)
    flow = bp(
        [{"id": "a", "uses": "id"}, {"id": "b", "uses": "id"}, {"id": "c", "uses": "id"}],
        [
            {"source": "a", "target": "b", "condition": "result.output.missing > 1"},
            {"source": "a", "target": "c", "condition": "result.output.missing === undefined"},
        ],
    )
    async with harness({"id": calls.identity()}, pm=pm) as h:
        result = await h.run(flow, 5)
    assert result.status == "completed", result.error
    assert result.outputs == {"a": 5, "c": 5}
    assert calls.counter == {"a": 1, "c": 1}
    failed = recorder.of("expression_failed")
    assert len(failed) == 1, recorder.events
    assert failed[0]["where"] == "edge a -> b condition"
    assert "cannot compare" in failed[0]["error"]


async def test_condition_that_raises_fails_the_run_under_strict() -> None:
    calls = Calls()
    flow = bp(
        [{"id": "a", "uses": "id"}, {"id": "b", "uses": "id"}],
        [{"source": "a", "target": "b", "condition": "result.output.missing > 1"}],
    )
    async with harness({"id": calls.identity()}, settings=EngineSettings(strict=True)) as h:
        result = await h.run(flow, 5)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["node"] == "a"
    assert result.error["type"] == "ExpressionError"
    assert "edge a -> b condition" in result.error["message"]
    assert "result.output.missing > 1" in result.error["message"]
    assert calls.counter == {"a": 1}
    assert "b" not in result.outputs


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: object(), id="object"),
        pytest.param(lambda: {1, 2, 3}, id="set"),
        pytest.param(lambda: {"nested": [object()]}, id="nested"),
    ],
)
async def test_output_that_is_not_json_fails_the_node(make: Callable[[], Any]) -> None:
    calls = Calls()

    async def bad(ctx: NodeContext) -> Any:
        return make()

    flow = bp(
        [{"id": "a", "uses": "id"}, {"id": "bad", "uses": "bad"}, {"id": "after", "uses": "id"}],
        [{"source": "a", "target": "bad"}, {"source": "bad", "target": "after"}],
    )
    async with harness({"bad": bad, "id": calls.identity()}) as h:
        result = await h.run(flow, 1)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["node"] == "bad"
    assert result.error["type"] == "OutputNotSerializable"
    assert "'bad'" in result.error["message"]
    assert result.outputs == {"a": 1}
    assert calls.counter == {"a": 1}


async def test_context_write_that_is_not_json_fails_the_node_and_commits_nothing() -> None:
    async def writer(ctx: NodeContext) -> Any:
        ctx.context.set("fine", 1)
        ctx.context.set("bad", object())
        return "ok"

    async with harness({"writer": writer}) as h:
        result = await h.run(bp([{"id": "w", "uses": "writer"}]))
        context = await h.backends.context.get_all(result.run_id)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] == "OutputNotSerializable"
    assert "w" not in result.outputs
    assert "fine" not in context  # all or nothing


# -- how implementations are called ---------------------------------------------------------


async def test_sync_node_runs_in_a_thread_and_inline_ones_on_the_loop() -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, int] = {}

    def sync_node(ctx: NodeContext) -> str:
        seen[ctx.node_id] = threading.get_ident()
        return ctx.node_id

    registry = Registry({"sync": sync_node})
    registry.register("quick", sync_node, inline=True)
    flow = bp([{"id": "s", "uses": "sync"}, {"id": "q", "uses": "quick"}])
    async with harness(registry) as h:
        result = await h.run(flow)
    assert result.status == "completed", result.error
    assert result.outputs == {"s": "s", "q": "q"}
    assert seen["s"] != loop_thread
    assert seen["q"] == loop_thread


async def test_sync_nodes_do_not_block_the_loop_and_run_in_parallel() -> None:
    # Gates, not the clock (a bound on the run's wall time failed under load). Each sync node
    # first waits for two beats of a heartbeat task on the engine's event loop: they come only
    # if the loop runs while the node's thread is blocked. Then both meet at a barrier, which
    # only two nodes in flight at once can pass. A passing run never waits for a timeout; a
    # broken engine waits 8 s (under h.run's 10 s) and fails the run with the reason.
    barrier = threading.Barrier(2, timeout=8)
    beat = threading.Condition()
    beats = 0

    async def heartbeat() -> None:
        nonlocal beats
        while True:
            await asyncio.sleep(0.01)
            with beat:
                beats += 1
                beat.notify_all()

    def meet(ctx: NodeContext) -> int:
        with beat:
            seen = beats
            if not beat.wait_for(lambda: beats >= seen + 2, timeout=8):
                raise AssertionError("the event loop did not tick while a sync node ran")
        return barrier.wait()

    async def first(ctx: NodeContext) -> None:
        return None

    flow = bp(
        [{"id": "a", "uses": "first"}, {"id": "m1", "uses": "meet"}, {"id": "m2", "uses": "meet"}],
        [{"source": "a", "target": "m1"}, {"source": "a", "target": "m2"}],
    )
    ticking = asyncio.create_task(heartbeat())
    try:
        async with harness({"meet": meet, "first": first}) as h:
            result = await h.run(flow)
    finally:
        ticking.cancel()
    assert result.status == "completed", result.error
    assert sorted([result.outputs["m1"], result.outputs["m2"]]) == [0, 1]
    assert not barrier.broken


async def test_two_sync_start_nodes_run_at_once() -> None:
    # Start nodes (no predecessor) in flight together: only both at once pass the barrier.
    barrier = threading.Barrier(2, timeout=8)

    def meet(ctx: NodeContext) -> int:
        return barrier.wait()

    flow = bp([{"id": "s1", "uses": "meet"}, {"id": "s2", "uses": "meet"}])
    async with harness({"meet": meet}) as h:
        result = await h.run(flow)
    assert result.status == "completed", result.error
    assert sorted([result.outputs["s1"], result.outputs["s2"]]) == [0, 1]


class AsyncRun:
    instances = 0

    def __init__(self) -> None:
        type(self).instances += 1
        self.attempts = 0

    async def run(self, ctx: NodeContext) -> Any:
        self.attempts += 1
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        # A fresh instance per attempt: this one has seen one attempt only.
        return {"attempt": ctx.attempt, "attempts_of_this_instance": self.attempts}


class AsyncCall:
    async def __call__(self, ctx: NodeContext) -> Any:
        return {"called": ctx.input}


class SyncCallInstance:
    def __call__(self, ctx: NodeContext) -> Any:
        return {"thread": threading.get_ident()}


async def test_class_based_implementations() -> None:
    AsyncRun.instances = 0
    registry = Registry(
        {"run_cls": AsyncRun, "call_cls": AsyncCall, "call_obj": SyncCallInstance()}
    )
    flow = bp(
        [
            {"id": "r", "uses": "run_cls", "config": {"maxRetries": 2}},
            {"id": "c", "uses": "call_cls"},
            {"id": "o", "uses": "call_obj"},
        ],
        [{"source": "r", "target": "c", "transform": "input.attempt"}],
    )
    async with harness(registry) as h:
        result = await h.run(flow)
    assert result.status == "completed", result.error
    assert result.outputs["r"] == {"attempt": 2, "attempts_of_this_instance": 1}
    assert AsyncRun.instances == 2
    assert result.outputs["c"] == {"called": 2}
    # An instance with a sync __call__ is a sync callable: it runs in a thread.
    assert result.outputs["o"]["thread"] != threading.get_ident()


class SyncRun:
    def run(self, ctx: NodeContext) -> Any:
        return threading.get_ident()


class SyncCall:
    def __call__(self, ctx: NodeContext) -> Any:
        return threading.get_ident()


@pytest.mark.parametrize("cls", [SyncRun, SyncCall])
async def test_class_with_sync_method_runs_in_a_thread(cls: type) -> None:
    async with harness({"k": cls}) as h:
        result = await h.run(bp([{"id": "k", "uses": "k"}]))
    assert result.status == "completed", result.error
    assert result.outputs["k"] != threading.get_ident()


# -- missing implementations ----------------------------------------------------------------


async def test_missing_implementation_is_retried_then_fails_naming_the_key() -> None:
    calls = Calls()
    recorder = Recorder()
    pm = new_manager(load_entry_points=True)
    pm.register(recorder)
    settings = EngineSettings(missing_retries=2, missing_delay=0.01)
    flow = bp(
        [{"id": "a", "uses": "add"}, {"id": "b", "uses": "ghost"}],
        [{"source": "a", "target": "b"}],
    )
    async with harness({"add": calls.add()}, settings=settings, pm=pm) as h:
        result = await h.run(flow, 1)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["node"] == "b"
    assert result.error["type"] == "MissingImplementation"
    assert "'ghost'" in result.error["message"]
    assert "after 2 retries" in result.error["message"]
    # b was handed back to the queue once per retry before the run failed.
    assert recorder.nodes("job_enqueued")["b"] == 2
    assert result.outputs == {"a": 2}


async def test_missing_implementation_waits_for_a_worker_that_has_it() -> None:
    settings = EngineSettings(missing_retries=1000, missing_delay=0.01, missing_delay_max=0.02)
    recorder = Recorder()
    pm = new_manager(load_entry_points=True)
    pm.register(recorder)
    backends = open_backends(unique_url(), pm=pm)
    client = Client(backends, settings=settings, pm=pm)
    flow = bp([{"id": "g", "uses": "ghost"}])
    async with Worker(Registry({}), backends, settings=settings, pm=pm):
        run_id = await client.start(flow)
        await eventually(lambda: _true(recorder.nodes("job_enqueued")["g"] >= 3))
    assert await client.status(run_id) == "running"

    async def ghost(ctx: NodeContext) -> str:
        return "finally"

    async with Worker(Registry({"ghost": ghost}), backends, settings=settings, pm=pm):
        result = await client.result(run_id, 5)
    assert result.status == "completed", result.error
    assert result.outputs == {"g": "finally"}


async def _true(value: bool) -> bool:
    return value


# -- cancel, fail-fast ----------------------------------------------------------------------


async def test_cancel_stops_the_run() -> None:
    calls = Calls()
    gate = Gate()
    flow = bp(
        [{"id": "g", "uses": "gate"}, {"id": "after", "uses": "id"}],
        [{"source": "g", "target": "after"}],
    )
    async with harness({"gate": gate, "id": calls.identity()}) as h:
        run_id = await h.client.start(flow)
        await asyncio.wait_for(gate.entered.wait(), 5)
        assert await h.client.status(run_id) == "running"
        assert await h.client.cancel(run_id) is True
        assert await h.client.status(run_id) == "cancelled"
        gate.release.set()
        await asyncio.wait_for(memory_queue(h.backends).join(), 5)
        result = await h.client.result(run_id, 5)
        assert await h.client.cancel(run_id) is False
        with pytest.raises(FlowcraftError, match="cancelled"):
            await h.client.resume(run_id, "go")
    assert gate.finished == 1  # the node in flight was not killed...
    assert calls.counter == {}  # ...but nothing started after the cancel
    assert result.status == "cancelled"
    assert result.error is None
    assert "after" not in result.outputs


async def test_cancel_of_a_finished_run_returns_false() -> None:
    calls = Calls()
    async with harness({"id": calls.identity()}) as h:
        result = await h.run(bp([{"id": "a", "uses": "id"}]), 1)
        assert await h.client.cancel(result.run_id) is False
        assert await h.client.status(result.run_id) == "completed"


async def test_fail_fast_no_node_starts_after_a_failure() -> None:
    calls = Calls()
    gate = Gate()
    flow = bp(
        [
            {"id": "a", "uses": "id"},
            {"id": "bad", "uses": "boom"},
            {"id": "g", "uses": "gate"},
            {"id": "after", "uses": "id"},
        ],
        [
            {"source": "a", "target": "bad"},
            {"source": "a", "target": "g"},
            {"source": "g", "target": "after"},
        ],
    )

    async def boom_once_g_runs(ctx: NodeContext) -> Any:
        await gate.entered.wait()  # g is in flight when the failure happens
        await boom(ctx)

    registry = {"id": calls.identity(), "boom": boom_once_g_runs, "gate": gate}
    async with harness(registry) as h:
        run_id = await h.client.start(flow, 1)
        await asyncio.wait_for(gate.entered.wait(), 5)
        failed = await h.client.result(run_id, 5)  # returns on the failure, g still blocked
        assert failed.status == "failed"
        assert gate.finished == 0
        gate.release.set()
        await asyncio.wait_for(memory_queue(h.backends).join(), 5)
        result = await h.client.result(run_id, 5)
    assert gate.finished == 1
    assert calls.counter == {"a": 1}  # `after` never started
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["node"] == "bad"
    assert result.error["type"] == "ValueError"
    assert "boom in bad" in result.error["message"]
    assert "Traceback" in result.error["traceback"]


# -- client: result, status, not found ------------------------------------------------------


async def test_result_is_woken_by_a_push_not_by_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    gate = Gate(output="done")
    async with harness({"gate": gate}) as h:
        coordination = h.backends.coordination
        real_wait_any = coordination.wait_any
        waits: list[list[str]] = []

        async def counting_wait_any(keys_: list[str], timeout: float | None) -> str | None:
            waits.append(list(keys_))
            return await real_wait_any(keys_, timeout)

        monkeypatch.setattr(coordination, "wait_any", counting_wait_any)
        run_id = await h.client.start(bp([{"id": "g", "uses": "gate"}]))
        await asyncio.wait_for(gate.entered.wait(), 5)
        waiting = asyncio.create_task(h.client.result(run_id, timeout=30))
        await asyncio.sleep(0.2)  # let a polling implementation spin, if it would
        assert not waiting.done()
        assert len(waits) == 1  # blocked in one wait, not looping
        released = time.monotonic()
        gate.release.set()
        result = await asyncio.wait_for(waiting, 5)
        woke_after = time.monotonic() - released
    assert result.status == "completed"
    assert result.outputs == {"g": "done"}
    assert woke_after < 1.0  # well before the 30 s timeout
    assert len(waits) <= 2
    assert keys.RunKeys(run_id).signal_done in waits[0]


async def test_result_times_out_when_the_run_does_not_finish() -> None:
    gate = Gate()
    async with harness({"gate": gate}) as h:
        run_id = await h.client.start(bp([{"id": "g", "uses": "gate"}]))
        with pytest.raises(TimeoutError):
            await h.client.result(run_id, timeout=0.05)
        gate.release.set()
        assert (await h.client.result(run_id, 5)).status == "completed"


async def test_status_running_awaiting_completed() -> None:
    gate = Gate()
    flow = bp(
        [{"id": "g", "uses": "gate"}, {"id": "w", "uses": "wait"}, {"id": "z", "uses": "id"}],
        [{"source": "g", "target": "w"}, {"source": "w", "target": "z"}],
    )
    calls = Calls()
    async with harness({"gate": gate, "id": calls.identity()}) as h:
        run_id = await h.client.start(flow)
        await asyncio.wait_for(gate.entered.wait(), 5)
        assert await h.client.status(run_id) == "running"
        snapshot = await h.client.snapshot(run_id)
        assert (snapshot.status, snapshot.outputs) == ("running", {})
        gate.release.set()
        parked = await h.client.result(run_id, 5)
        assert parked.status == "awaiting"
        assert parked.outputs == {"g": "gate"}
        assert await h.client.status(run_id) == "awaiting"
        assert await h.client.resume(run_id, None, {"ok": True}) == "w"
        result = await h.client.result(run_id, 5)
        assert await h.client.status(run_id) == "completed"
    assert result.status == "completed"
    assert result.outputs == {"g": "gate", "w": {"ok": True}, "z": {"ok": True}}


async def test_unknown_run_id_raises_run_not_found() -> None:
    client = Client(open_backends(unique_url()))
    for call in (
        client.status("nope"),
        client.snapshot("nope"),
        client.result("nope", 1),
        client.cancel("nope"),
        client.resume("nope", "go"),
    ):
        with pytest.raises(RunNotFound, match="nope"):
            await call


# -- wait / resume --------------------------------------------------------------------------


async def test_resume_errors() -> None:
    gate = Gate()
    calls = Calls()
    two_waits = bp(
        [{"id": "w1", "uses": "wait"}, {"id": "w2", "uses": "wait"}],
    )
    blocked = bp([{"id": "g", "uses": "gate"}])
    async with harness({"gate": gate, "id": calls.identity()}) as h:
        # Nothing waiting yet: the run is running.
        running = await h.client.start(blocked)
        await asyncio.wait_for(gate.entered.wait(), 5)
        with pytest.raises(FlowcraftError, match="0 nodes waiting"):
            await h.client.resume(running, "go")
        gate.release.set()
        assert (await h.client.result(running, 5)).status == "completed"
        # Finished: cannot be resumed.
        with pytest.raises(FlowcraftError, match="completed"):
            await h.client.resume(running, "go")
        # Two waiting: must say which; an unknown or non-waiting node is refused.
        parked = await h.client.start(two_waits)
        assert (await h.client.result(parked, 5)).status == "awaiting"
        with pytest.raises(FlowcraftError, match="2 nodes waiting") as excinfo:
            await h.client.resume(parked, "go")
        assert "w1" in str(excinfo.value) and "w2" in str(excinfo.value)
        with pytest.raises(FlowcraftError, match=r"'nope'.*not waiting"):
            await h.client.resume(parked, "go", node_id="nope")
        assert await h.client.resume(parked, None, 1, node_id="w1") == "w1"
        with pytest.raises(FlowcraftError, match=r"'w1'.*not waiting"):
            await h.client.resume(parked, None, 1, node_id="w1")
        with pytest.raises(FlowcraftError, match="not JSON-serialisable"):
            await h.client.resume(parked, None, object(), node_id="w2")
        assert await h.client.resume(parked, None, 2, node_id="w2") == "w2"
        result = await h.client.result(parked, 5)
    assert result.status == "completed"
    assert result.outputs == {"w1": 1, "w2": 2}


async def test_two_waits_in_parallel_branches() -> None:
    gate = Gate()
    calls = Calls()
    flow = bp(
        [
            {"id": "a", "uses": "id"},
            {"id": "w1", "uses": "wait"},
            {"id": "g", "uses": "gate"},
            {"id": "w2", "uses": "wait"},
            {"id": "j", "uses": "id"},
        ],
        [
            {"source": "a", "target": "w1"},
            {"source": "a", "target": "g"},
            {"source": "g", "target": "w2"},
            {"source": "w1", "target": "j", "action": "ok"},
            {"source": "w2", "target": "j"},
        ],
    )
    async with harness({"gate": gate, "id": calls.identity()}) as h:
        client, coordination = h.client, h.backends.coordination
        run_id = await client.start(flow, "in")
        waiting_key = keys.RunKeys(run_id).waiting

        async def w1_parked() -> bool:
            return "w1#0" in await coordination.members(waiting_key)

        await asyncio.wait_for(gate.entered.wait(), 5)
        await eventually(w1_parked)
        # One wait node parked while another branch still runs: not awaiting yet.
        assert await client.status(run_id) == "running"
        gate.release.set()
        first = await client.result(run_id, 5)
        assert first.status == "awaiting"
        assert set(first.outputs) == {"a", "g"}
        await client.resume(run_id, "ok", {"w": 1}, node_id="w1")
        second = await client.result(run_id, 5)
        assert second.status == "awaiting"  # w2 still parked; the join waits for it
        assert second.outputs["w1"] == {"w": 1}
        assert "j" not in second.outputs
        await client.resume(run_id, None, {"w": 2}, node_id="w2")
        final = await client.result(run_id, 5)
    assert final.status == "completed", final.error
    assert final.outputs["j"] == {"w1": {"w": 1}, "w2": {"w": 2}}
    assert calls.counter == {"a": 1, "j": 1}


# -- retention ------------------------------------------------------------------------------


async def test_finished_run_context_expires_after_retention() -> None:
    settings = EngineSettings(retention=0.05)
    calls = Calls()
    async with harness({"id": calls.identity()}, settings=settings) as h:
        result = await h.run(bp([{"id": "a", "uses": "id"}]), {"x": 1})
        assert result.outputs == {"a": {"x": 1}}
        await asyncio.sleep(0.1)
        assert await h.backends.context.get_all(result.run_id) == {}
        with pytest.raises(RunNotFound):
            await h.client.snapshot(result.run_id)


async def test_expired_run_is_not_found() -> None:
    settings = EngineSettings(retention=0.05)
    calls = Calls()
    async with harness({"id": calls.identity()}, settings=settings) as h:
        result = await h.run(bp([{"id": "a", "uses": "id"}]), 1)
        await asyncio.sleep(0.1)
        with pytest.raises(RunNotFound):
            await h.client.status(result.run_id)
        with pytest.raises(RunNotFound):
            await h.client.result(result.run_id, 0.2)


# -- continuation ---------------------------------------------------------------------------


async def test_a_chain_costs_one_queue_message() -> None:
    calls = Calls()
    nodes = [{"id": f"n{i}", "uses": "add"} for i in range(20)]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(19)]
    async with harness({"add": calls.add()}) as h:
        result = await h.run(bp(nodes, edges), 0)
        enqueued = memory_queue(h.backends).enqueued
    assert result.status == "completed", result.error
    assert result.outputs["n19"] == 20
    assert len(result.outputs) == 20
    assert enqueued == 1  # the start job; every other node continued inline


async def test_continuation_is_bounded_by_continue_steps() -> None:
    calls = Calls()
    nodes = [{"id": f"n{i}", "uses": "add"} for i in range(20)]
    edges = [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(19)]
    async with harness({"add": calls.add()}, settings=EngineSettings(continue_steps=5)) as h:
        result = await h.run(bp(nodes, edges), 0)
        enqueued = memory_queue(h.backends).enqueued
    assert result.outputs["n19"] == 20
    assert 3 <= enqueued <= 6
    assert calls.counter == {f"n{i}": 1 for i in range(20)}


@pytest.mark.parametrize("per_message", [1, 8])
async def test_fan_out_enqueues_the_other_branches(per_message: int) -> None:
    calls = Calls()
    nodes = [{"id": "a", "uses": "add"}] + [{"id": f"b{i}", "uses": "add"} for i in range(5)]
    edges = [{"source": "a", "target": f"b{i}"} for i in range(5)]
    settings = EngineSettings(siblings_per_message=per_message)
    async with harness({"add": calls.add()}, settings=settings) as h:
        result = await h.run(bp(nodes, edges), 0)
        enqueued = memory_queue(h.backends).enqueued
    assert result.status == "completed", result.error
    assert result.outputs == {"a": 1, **{f"b{i}": 2 for i in range(5)}}
    # Besides the start job: 4 branches went to the queue, each on its own, as the memory
    # queue asks (tests/core/test_siblings.py has them travel together).
    assert enqueued - 1 == 4


# -- lifecycle hooks ------------------------------------------------------------------------


async def test_lifecycle_hooks_fire_once_per_event_under_duplicate_delivery() -> None:
    calls = Calls()
    recorder = Recorder()
    pm = new_manager(load_entry_points=True)
    pm.register(recorder)

    async def flaky(ctx: NodeContext) -> Any:
        calls.counter[ctx.node_id] += 1
        if ctx.attempt == 1:
            raise ConnectionError("transient")
        return ctx.attempt

    flow = bp(
        [
            {"id": "a", "uses": "add"},
            {"id": "f", "uses": "flaky", "config": {"maxRetries": 3, "retryDelay": 5}},
            {"id": "b", "uses": "add"},
            {"id": "c", "uses": "add"},
            {"id": "j", "uses": "add", "inputs": "_outputs.b"},
        ],
        [
            {"source": "a", "target": "f"},
            {"source": "f", "target": "b"},
            {"source": "f", "target": "c"},
            {"source": "b", "target": "j"},
            {"source": "c", "target": "j"},
        ],
    )
    settings = EngineSettings(lease_busy_delay=0.01)
    backends = open_backends(unique_url(), pm=pm)
    queue = memory_queue(backends)
    queue.faults = Faults.duplicate_all()
    registry = {"add": calls.add(), "flaky": flaky}
    async with harness(registry, settings=settings, pm=pm, backends=backends) as h:
        result = await h.run(flow, 0)
        await asyncio.wait_for(queue.join(), 5)  # stray duplicates are handled too
    assert result.status == "completed", result.error
    assert result.outputs == {"a": 1, "f": 2, "b": 3, "c": 3, "j": 4}
    assert queue.faults.duplicated >= 3
    assert recorder.of("run_started") == [(result.run_id, flow.id, 0)]
    assert recorder.of("run_finished") == [(result.run_id, "completed", None)]
    assert recorder.nodes("node_finished") == {"a": 1, "f": 1, "b": 1, "c": 1, "j": 1}
    assert recorder.nodes("node_started") == {"a": 1, "f": 2, "b": 1, "c": 1, "j": 1}
    assert calls.counter == {"a": 1, "f": 2, "b": 1, "c": 1, "j": 1}
    retried = recorder.of("node_retried")
    assert [(job.node_id, job.attempt) for job in retried] == [("f", 1)]
    assert recorder.of("node_retried_delay") == [pytest.approx(0.005)]
    assert recorder.count("node_failed") == 0
    assert all(isinstance(job, Job) for job in recorder.of("job_enqueued"))
    assert recorder.nodes("job_enqueued")["a"] == 1  # the start job, from the client


async def test_failure_hooks_fire_once() -> None:
    recorder = Recorder()
    pm = new_manager(load_entry_points=True)
    pm.register(recorder)
    backends = open_backends(unique_url(), pm=pm)
    queue = memory_queue(backends)
    queue.faults = Faults.duplicate_all()
    calls = Calls()
    flow = bp(
        [{"id": "a", "uses": "add"}, {"id": "bad", "uses": "boom"}, {"id": "z", "uses": "add"}],
        [{"source": "a", "target": "bad"}, {"source": "bad", "target": "z"}],
    )
    settings = EngineSettings(lease_busy_delay=0.01)
    async with harness(
        {"add": calls.add(), "boom": boom}, settings=settings, pm=pm, backends=backends
    ) as h:
        result = await h.run(flow, 0)
        await asyncio.wait_for(queue.join(), 5)
    assert result.status == "failed"
    assert [job.node_id for job in recorder.of("node_failed")] == ["bad"]
    (error,) = recorder.of("node_failed_error")
    assert error["type"] == "ValueError"
    assert recorder.of("run_finished") == [(result.run_id, "failed", result.error)]
    assert recorder.nodes("node_finished") == {"a": 1}
    assert recorder.count("node_retried") == 0


# -- reconcile ------------------------------------------------------------------------------


class RecordingQueue:
    """Delegates to a memory queue and remembers every job enqueued."""

    def __init__(self, inner: MemoryQueue) -> None:
        self.inner = inner
        self.jobs: list[Job] = []

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        self.jobs.append(job)
        await self.inner.enqueue(job, delay=delay)

    async def enqueue_many(self, jobs: Any, *, delay: float = 0.0) -> None:
        self.jobs.extend(jobs)
        await self.inner.enqueue_many(jobs, delay=delay)

    async def consume(self, handler: Any, *, concurrency: int = 1) -> Any:
        return await self.inner.consume(handler, concurrency=concurrency)

    async def close(self) -> None:
        await self.inner.close()


async def test_reconcile_re_enqueues_the_frontier_of_a_stalled_run() -> None:
    calls = Calls()
    url = unique_url()
    shared = open_backends(url)
    # The client's start jobs go to a queue nobody consumes: they are lost.
    lost = MemoryQueue()
    client = Client(Backends(lost, shared.context, shared.coordination, shared.urls))
    flow = bp(
        [
            {"id": "s1", "uses": "add"},
            {"id": "s2", "uses": "add", "params": {"n": 10}},
            {"id": "j", "uses": "id"},
        ],
        [{"source": "s1", "target": "j"}, {"source": "s2", "target": "j"}],
    )
    run_id = await client.start(flow, 1)
    assert lost.enqueued == 2
    queue = RecordingQueue(MemoryQueue())
    backends = Backends(queue, shared.context, shared.coordination, shared.urls)

    assert await reconcile(backends, older_than=3600) == []  # it just started: not stale
    assert queue.jobs == []
    assert await reconcile(backends, older_than=0) == [run_id]
    assert sorted((j.run_id, j.node_id, j.digest) for j in queue.jobs) == [
        (run_id, "s1", flow.digest()),
        (run_id, "s2", flow.digest()),
    ]
    assert await client.status(run_id) == "running"

    async with Worker(Registry({"add": calls.add(), "id": calls.identity()}), backends):
        result = await client.result(run_id, 5)
        # Reconciling again (twice the start jobs in the queue) changes nothing.
        await reconcile(backends, older_than=0)
        await asyncio.wait_for(queue.inner.join(), 5)
    assert result.status == "completed", result.error
    assert result.outputs == {"s1": 2, "s2": 11, "j": {"s1": 2, "s2": 11}}
    assert calls.counter == {"s1": 1, "s2": 1, "j": 1}
    # A finished run is no longer reconciled, and leaves the active set.
    assert await reconcile(backends, older_than=0) == []
    assert run_id not in await shared.coordination.members(keys.ACTIVE_RUNS)


async def test_reconcile_with_no_worker_then_a_worker_completes_each_node_once() -> None:
    calls = Calls()
    backends = open_backends(unique_url())
    queue = memory_queue(backends)
    client = Client(backends)
    flow = bp(
        [{"id": "a", "uses": "add"}, {"id": "b", "uses": "add"}, {"id": "c", "uses": "add"}],
        [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    )
    run_id = await client.start(flow, 0)
    assert queue.enqueued == 1
    assert await reconcile(backends, older_than=0) == [run_id]
    assert queue.enqueued == 2  # the start job again
    async with Worker(Registry({"add": calls.add()}), backends):
        result = await client.result(run_id, 5)
        await asyncio.wait_for(queue.join(), 5)
    assert result.outputs == {"a": 1, "b": 2, "c": 3}
    assert calls.counter == {"a": 1, "b": 1, "c": 1}


# -- worker shutdown ------------------------------------------------------------------------


async def test_worker_stop_with_drain_lets_in_flight_nodes_finish() -> None:
    finished: list[str] = []
    entered = asyncio.Event()

    async def slowish(ctx: NodeContext) -> str:
        entered.set()
        await asyncio.sleep(0.1)
        finished.append(ctx.node_id)
        return "done"

    backends = open_backends(unique_url())
    client = Client(backends)
    worker = Worker(Registry({"slowish": slowish}), backends)
    await worker.start()
    run_id = await client.start(bp([{"id": "s", "uses": "slowish"}]))
    await asyncio.wait_for(entered.wait(), 5)
    await worker.stop(drain=True)
    assert finished == ["s"]
    assert (await client.snapshot(run_id)).outputs == {"s": "done"}


# -- crash safety of retries and resumes ----------------------------------------------------


class FailingRetryEnqueue(RecordingQueue):
    """The broker refuses the first enqueue of an attempt-2 job (a connection hiccup at the
    worst moment: after the failed attempt was recorded, before its retry was queued)."""

    def __init__(self, inner: MemoryQueue) -> None:
        super().__init__(inner)
        self.refused = 0

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        if job.attempt == 2 and not self.refused:
            self.refused += 1
            raise ConnectionError("broker hiccup")
        await super().enqueue(job, delay=delay)


async def test_a_lost_retry_enqueue_is_recovered() -> None:
    attempts: list[int] = []

    async def flaky(ctx: NodeContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("transient")
        return ctx.attempt

    shared = open_backends(unique_url())
    inner = memory_queue(shared)
    queue = FailingRetryEnqueue(inner)
    backends = Backends(queue, shared.context, shared.coordination, shared.urls)
    client = Client(backends)
    flow = bp([{"id": "f", "uses": "flaky", "config": {"maxRetries": 3}}])
    async with Worker(Registry({"flaky": flaky}), backends):
        run_id = await client.start(flow)
        await asyncio.wait_for(inner.join(), 5)
        assert queue.refused == 1  # the hiccup happened; the job was redelivered
        await reconcile(backends, older_than=0)  # and even a reconcile pass...
        await asyncio.wait_for(inner.join(), 5)
        status = await client.status(run_id)
    assert status == "completed", f"attempts ran: {attempts}"
    assert attempts == [1, 2]


class Yielding:
    """Wraps a store so that every call yields to the event loop first, as a network round
    trip does (the memory stores never yield, which hides races between clients)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not asyncio.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)
            return await attr(*args, **kwargs)

        return call


async def test_concurrent_resumes_of_one_wait_node_do_not_both_succeed() -> None:
    calls = Calls()
    shared = open_backends(unique_url())
    backends = Backends(
        shared.queue, Yielding(shared.context), Yielding(shared.coordination), shared.urls
    )
    flow = bp(
        [{"id": "w", "uses": "wait"}, {"id": "yes", "uses": "id"}, {"id": "no", "uses": "id"}],
        [
            {"source": "w", "target": "yes", "action": "approve"},
            {"source": "w", "target": "no", "action": "reject"},
        ],
    )
    async with harness({"id": calls.identity()}, backends=backends) as h:
        run_id = await h.client.start(flow)
        assert (await h.client.result(run_id, 5)).status == "awaiting"
        outcomes = await asyncio.gather(
            h.client.resume(run_id, "approve", "alice"),
            h.client.resume(run_id, "reject", "bob"),
            return_exceptions=True,
        )
        result = await h.client.result(run_id, 5)
    assert result.status == "completed"
    winners = [o for o in outcomes if o == "w"]
    assert len(winners) == 1, f"both resumes reported success: {outcomes}, ran {result.outputs}"
    assert isinstance(next(o for o in outcomes if o != "w"), FlowcraftError)


# -- convenience entry points ---------------------------------------------------------------


def test_run_workflow_sync_runs_a_blueprint_in_process() -> None:
    from flowcraft_core import run_workflow_sync

    calls = Calls()
    flow = bp(
        [{"id": "a", "uses": "add"}, {"id": "b", "uses": "add", "params": {"n": 2}}],
        [{"source": "a", "target": "b"}],
    )
    result = run_workflow_sync(flow, {"add": calls.add()}, 1, backend=unique_url(), timeout=5)
    assert result.status == "completed"
    assert result.outputs == {"a": 2, "b": 4}


async def test_start_refuses_an_input_that_is_not_json() -> None:
    client = Client(open_backends(unique_url()))
    with pytest.raises(FlowcraftError, match="run input is not JSON-serialisable"):
        await client.start(bp([{"id": "a", "uses": "x"}]), {"bad": object()})


async def test_client_with_known_uses_refuses_unknown_implementations() -> None:
    from flowcraft_core import BlueprintError

    client = Client(open_backends(unique_url()), known_uses={"add"})
    with pytest.raises(BlueprintError, match="unknown uses 'ghost'"):
        await client.start(bp([{"id": "a", "uses": "ghost"}]))


# -- node context, sleep, pinning, sweeper --------------------------------------------------


async def test_node_context_fields_and_writes_of_failed_attempts_are_dropped() -> None:
    seen: list[dict[str, Any]] = []

    async def careful(ctx: NodeContext) -> Any:
        before = await ctx.get("scratch")
        seen.append(
            {
                "input": ctx.input,
                "params": ctx.params,
                "node": ctx.node_id,
                "attempt": ctx.attempt,
                "scratch_before": before,
                "run": ctx.run_id,
            }
        )
        ctx.context.set("scratch", ctx.attempt)
        assert await ctx.context.get("scratch") == ctx.attempt  # reads see own writes
        assert await ctx.context.has("scratch")
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails after writing")
        return await ctx.context.get_many(["scratch", "absent"])

    flow = bp([{"id": "c", "uses": "careful", "params": {"p": 1}, "config": {"maxRetries": 2}}])
    async with harness({"careful": careful}) as h:
        result = await h.run(flow, "in")
        stored = await h.backends.context.get_all(result.run_id)
    assert result.status == "completed", result.error
    assert result.outputs == {"c": {"scratch": 2}}
    assert [s["attempt"] for s in seen] == [1, 2]
    assert seen[1]["scratch_before"] is None  # attempt 1's write was never committed
    assert all(s["input"] == "in" and s["params"] == {"p": 1} for s in seen)
    assert all(s["node"] == "c" and s["run"] == result.run_id for s in seen)
    assert stored["scratch"] == 2


async def test_reserved_context_keys_cannot_be_written() -> None:
    async def sneaky(ctx: NodeContext) -> Any:
        ctx.context.set("_outputs.other", "forged")
        return "never"

    async with harness({"sneaky": sneaky}) as h:
        result = await h.run(bp([{"id": "s", "uses": "sneaky"}]))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] == "ValueError"
    assert "reserved" in result.error["message"]
    assert result.outputs == {}


async def test_sleep_holds_no_worker() -> None:
    marks: dict[str, float] = {}

    async def mark(ctx: NodeContext) -> str:
        marks[ctx.node_id] = time.monotonic()
        return ctx.node_id

    flow = bp(
        [
            {"id": "nap", "uses": "sleep", "params": {"duration": 300}},
            {"id": "after", "uses": "mark"},
            {"id": "quick", "uses": "mark"},
        ],
        [{"source": "nap", "target": "after"}],
    )
    async with harness({"mark": mark}, concurrency=1) as h:
        started = time.monotonic()
        result = await h.run(flow, "x")
    assert result.status == "completed", result.error
    assert result.outputs == {"nap": "x", "after": "after", "quick": "quick"}
    assert marks["after"] - started >= 0.3
    # The only worker slot was free during the sleep: quick ran long before it ended.
    assert marks["quick"] < marks["after"] - 0.1


async def test_each_run_is_pinned_to_its_blueprint_version() -> None:
    calls = Calls()

    def version(n: int) -> Any:
        return bp(
            [{"id": "a", "uses": "add", "params": {"n": n}}, {"id": "g", "uses": "gate"}],
            [{"source": "g", "target": "a"}],
            name="pinned",
        )

    gate = Gate(output=0)
    async with harness({"add": calls.add(), "gate": gate}) as h:
        v1, v2 = version(1), version(100)
        assert v1.id == v2.id and v1.digest() != v2.digest()
        first = await h.client.start(v1)
        second = await h.client.start(v2)
        gate.release.set()
        r1 = await h.client.result(first, 5)
        r2 = await h.client.result(second, 5)
    assert r1.outputs["a"] == 1
    assert r2.outputs["a"] == 100


async def test_worker_sweeper_revives_a_stalled_run() -> None:
    calls = Calls()
    shared = open_backends(unique_url())
    lost = MemoryQueue()
    client = Client(Backends(lost, shared.context, shared.coordination, shared.urls))
    run_id = await client.start(bp([{"id": "a", "uses": "add"}]), 1)
    assert lost.enqueued == 1  # the start job went to a queue no worker reads
    worker = Worker(Registry({"add": calls.add()}), shared, reconcile_every=0.02, stale_after=0.0)
    async with worker:
        result = await client.result(run_id, 5)
    assert result.status == "completed"
    assert result.outputs == {"a": 2}
    assert calls.counter == {"a": 1}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
async def test_a_second_start_of_a_run_id_is_refused(fused: bool) -> None:
    calls = Calls()
    settings = EngineSettings(fused_state=fused)
    flow = bp([{"id": "a", "uses": "add"}])
    backends = open_backends(unique_url())
    client = Client(backends, settings=settings)
    await client.start(flow, 1, run_id="taken")
    with pytest.raises(RunExists, match="'taken' already exists"):
        await client.start(flow, 100, run_id="taken")
    async with Worker(Registry({"add": calls.add()}), backends, settings=settings):
        result = await client.result("taken", 5)
    assert result.outputs == {"a": 2}  # the first start's input, once
    assert calls.counter == {"a": 1}


def test_one_memory_backend_serves_one_event_loop_after_another() -> None:
    """``asyncio.run`` twice in a process (a script, a notebook cell re-run) on the same
    ``memory://`` backend: asyncio's primitives belong to the first loop, and the second run
    used to fail with "bound to a different event loop"."""
    from flowcraft_core import run_workflow_sync

    calls = Calls()
    flow = bp(
        [{"id": "a", "uses": "add"}, {"id": "b", "uses": "add", "params": {"n": 2}}],
        [{"source": "a", "target": "b"}],
    )
    url = unique_url()
    for n in range(3):
        result = run_workflow_sync(flow, {"add": calls.add()}, n, backend=url, timeout=5)
        assert (result.status, result.outputs) == ("completed", {"a": n + 1, "b": n + 3})


def test_a_delayed_memory_job_survives_the_end_of_its_event_loop() -> None:
    """A job delayed on one loop that ends before it is due is delivered on the next loop
    that uses the queue, not dropped with the dead loop's timer."""
    from flowcraft_memory.queue import MemoryQueue

    queue = MemoryQueue()
    job = Job("r", "n", "d")

    async def enqueue_and_leave() -> None:
        await queue.enqueue(job, delay=0.2)

    async def consume() -> list[Job]:
        got: list[Job] = []

        async def handler(j: Job) -> None:
            got.append(j)

        consumer = await queue.consume(handler)
        await asyncio.wait_for(queue.join(), 5)
        await consumer.stop()
        return got

    asyncio.run(enqueue_and_leave())
    assert asyncio.run(consume()) == [job]
