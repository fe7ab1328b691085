"""Node code that misbehaves — raises what it should not, returns what JSON cannot hold, blocks
threads — fails its own attempt, in bounded time; the worker lives and keeps working."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from flowcraft_core import NodeContext, Registry
from flowcraft_core.errors import BackendUnavailable
from flowcraft_core.protocols.context import encode
from flowcraft_core.threads import NodeThreads

from .helpers import bp, harness


class Custom(BaseException):
    """A BaseException that is none of Python's own."""


async def _own_cancelled_error() -> None:
    # Node code awaiting something that was cancelled under it: not a cancellation of the job.
    task = asyncio.get_running_loop().create_future()
    task.cancel()
    await task


RAISERS: dict[str, Any] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "GeneratorExit": GeneratorExit,
    "Custom": Custom,
}


def _async_raiser(kind: str) -> Any:
    async def node(ctx: NodeContext) -> Any:
        if kind == "CancelledError":
            await _own_cancelled_error()
        raise RAISERS[kind]("from node code")

    return node


def _sync_raiser(kind: str) -> Any:
    def node(ctx: NodeContext) -> Any:
        if kind == "CancelledError":
            raise asyncio.CancelledError("from node code")
        raise RAISERS[kind]("from node code")

    return node


KINDS = [*RAISERS, "CancelledError"]


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("kind", KINDS)
async def test_base_exceptions_from_node_code_fail_the_attempt_and_the_worker_lives(
    kind: str, sync: bool
) -> None:
    attempts: list[int] = []
    make = _sync_raiser if sync else _async_raiser
    raiser = make(kind)

    async def counted(ctx: NodeContext) -> Any:
        attempts.append(ctx.attempt)
        return await Registry({"x": raiser})["x"].call(ctx)

    async def ok(ctx: NodeContext) -> str:
        return "fine"

    bad = bp([{"id": "bad", "uses": "bad", "config": {"maxRetries": 2}}])
    good = bp([{"id": "good", "uses": "ok"}])
    # One consumer slot: if handling the bad job killed it, the good run would never finish.
    async with harness({"bad": counted, "ok": ok}, concurrency=1) as h:
        failed = await h.run(bad, timeout=10)
        runs = [await h.run(good, timeout=10) for _ in range(3)]
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error["type"] == kind
    assert failed.error["node"] == "bad"
    assert attempts == [1, 2]  # both attempts, each failed once, nothing redelivered forever
    assert [r.status for r in runs] == ["completed"] * 3


@pytest.mark.parametrize("engine", [False, True], ids=["default-executor", "engine-pool"])
async def test_generator_exit_from_sync_code_is_raised_where_it_is_awaited(engine: bool) -> None:
    # asyncio throws a thread's exception into the task's outermost coroutine, and a thrown
    # GeneratorExit closes the awaits between instead of travelling down them: without care it
    # skips the handler of the code that awaited the sync call (the engine's, in a worker).
    from flowcraft_core.node import RunContext
    from flowcraft_core.threads import CURRENT

    def node(ctx: NodeContext) -> Any:
        raise GeneratorExit("from node code")

    ctx = NodeContext(None, {}, "r", "n", 1, RunContext(None, "r"))  # type: ignore[arg-type]
    call = Registry({"x": node})["x"].call

    async def awaiting() -> str:
        try:
            await call(ctx)
        except GeneratorExit as exc:
            return f"caught {exc}"
        return "returned"

    async def outermost() -> str:
        return await awaiting()

    threads = NodeThreads(1)
    token = CURRENT.set(threads if engine else None)
    try:
        assert await asyncio.create_task(outermost()) == "caught from node code"
    finally:
        CURRENT.reset(token)
        threads.close()


async def test_base_exception_from_a_fallback_is_recorded_and_fails_the_run() -> None:
    async def boom(ctx: NodeContext) -> Any:
        raise ValueError("primary")

    async def fallback(ctx: NodeContext) -> Any:
        raise KeyboardInterrupt("fallback")

    flow = bp(
        [
            {"id": "a", "uses": "boom", "config": {"fallback": "fb"}},
            {"id": "fb", "uses": "fallback"},
        ]
    )
    async with harness({"boom": boom, "fallback": fallback}, concurrency=1) as h:
        result = await h.run(flow)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["fallback"]["type"] == "KeyboardInterrupt"


def _deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "output",
    [
        pytest.param(_deep(100_000), id="deep"),
        pytest.param(float("nan"), id="nan"),
        pytest.param({"x": float("inf")}, id="infinity"),
        pytest.param([float("-inf")], id="-infinity"),
        pytest.param({1: "a", "1": "b"}, id="colliding-keys"),
        pytest.param({"k": {None: 1, "null": 2}}, id="colliding-nested"),
        pytest.param({True: 1, "true": 2}, id="colliding-bool"),
    ],
)
async def test_output_without_a_faithful_json_form_fails_the_node_once(output: Any) -> None:
    executions = 0

    async def bad(ctx: NodeContext) -> Any:
        nonlocal executions
        executions += 1
        return output

    async with harness({"bad": bad}) as h:
        result = await h.run(bp([{"id": "bad", "uses": "bad"}]), timeout=10)
        await asyncio.sleep(0.2)  # a redelivery loop would run it again meanwhile
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] == "OutputNotSerializable"
    assert executions == 1
    json.loads(json.dumps(result.to_dict(), allow_nan=False))  # what --json prints is JSON


def test_the_encoding_keeps_distinct_non_string_keys() -> None:
    assert json.loads(encode({1: "a", 2: "b", None: "c", 1.5: "d"})) == {
        "1": "a",
        "2": "b",
        "null": "c",
        "1.5": "d",
    }


async def test_context_set_with_a_non_string_key_fails_the_node_clearly() -> None:
    async def writer(ctx: NodeContext) -> Any:
        ctx.context.set(123, "x")  # type: ignore[arg-type]
        return "ok"

    async with harness({"writer": writer}) as h:
        result = await h.run(bp([{"id": "w", "uses": "writer"}]))
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] == "TypeError"
    assert result.error["message"] == "context keys must be strings, got int 123"


# -- threads of sync nodes ------------------------------------------------------------------


async def test_sync_nodes_run_as_many_at_once_as_the_concurrency() -> None:
    release = threading.Event()
    width = 8

    def blocked(ctx: NodeContext) -> str:
        release.wait(10)
        return "released"

    def quick(ctx: NodeContext) -> str:
        release.set()  # runs only if a thread is free while the others block
        return "quick"

    nodes = [{"id": "start", "uses": "noop"}]
    nodes += [{"id": f"b{i}", "uses": "blocked"} for i in range(width - 1)]
    nodes += [{"id": "q", "uses": "quick"}]
    edges = [{"source": "start", "target": n["id"]} for n in nodes[1:]]

    async def noop(ctx: NodeContext) -> None:
        return None

    started = time.monotonic()
    async with harness({"blocked": blocked, "quick": quick, "noop": noop}, concurrency=width) as h:
        result = await h.run(bp(nodes, edges), timeout=15)
    assert result.status == "completed", result.error
    assert result.outputs["q"] == "quick"
    assert time.monotonic() - started < 5  # nobody waited out the 10 s


async def test_a_timed_out_sync_attempt_is_counted_and_does_not_eat_a_thread() -> None:
    release = threading.Event()
    width = 2

    def stuck(ctx: NodeContext) -> str:
        release.wait(20)
        return "late"

    def quick(ctx: NodeContext) -> str:
        return "quick"

    stuck_flow = bp([{"id": "s", "uses": "stuck", "config": {"timeout": 100}}])
    quick_flow = bp([{"id": "a", "uses": "quick"}, {"id": "b", "uses": "quick"}])
    before = NodeThreads.abandoned_in_process()  # earlier tests' threads may still be running
    try:
        async with harness({"stuck": stuck, "quick": quick}, concurrency=width) as h:
            timed_out = [await h.run(stuck_flow, timeout=5) for _ in range(width)]
            threads = h.worker.engine.threads
            assert threads.abandoned == width
            assert threads.abandoned_total == width
            assert NodeThreads.abandoned_in_process() >= width  # what `flowcraft run` asks
            # Both of the pool's working threads are still held by the abandoned attempts;
            # the quick nodes (two at once) run anyway.
            quick = await h.run(quick_flow, timeout=5)
            release.set()
            for _ in range(200):
                if threads.abandoned == 0:
                    break
                await asyncio.sleep(0.01)
            assert threads.abandoned == 0
            assert threads.abandoned_total == width
            assert NodeThreads.abandoned_in_process() <= before
    finally:
        release.set()
    assert [r.error["type"] for r in timed_out if r.error] == ["NodeTimeout"] * width
    assert quick.status == "completed", quick.error


async def test_an_async_node_blocking_the_loop_is_warned_about_by_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def blocks(ctx: NodeContext) -> str:
        time.sleep(1.5)  # the misbehaviour under test
        return "done"

    flow = bp([{"id": "blocker", "uses": "blocks", "config": {"timeout": 100}}])
    with caplog.at_level("WARNING", logger="flowcraft_core.worker"):
        async with harness({"blocks": blocks}) as h:
            result = await h.run(flow)
            await asyncio.sleep(0.3)
            stalls = h.worker.stalls
    # Documented: the timeout cannot interrupt code that never awaits.
    assert result.status == "completed", result.error
    assert stalls == 1
    warnings = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert len(warnings) == 1
    assert "node 'blocker'" in warnings[0] and "cannot interrupt" in warnings[0]


async def test_a_quick_worker_reports_no_stall() -> None:
    async def quick(ctx: NodeContext) -> str:
        await asyncio.sleep(0.01)
        return "ok"

    async with harness({"quick": quick}) as h:
        for _ in range(20):
            await h.run(bp([{"id": "q", "uses": "quick"}]))
        stalls = h.worker.stalls
    assert stalls == 0


# -- resume ---------------------------------------------------------------------------------


async def test_resume_with_an_action_no_edge_has_is_refused_listing_the_valid_ones() -> None:
    from flowcraft_core import FlowcraftError

    async def echo(ctx: NodeContext) -> Any:
        return ctx.node_id

    flow = bp(
        [
            {"id": "w", "uses": "wait"},
            {"id": "yes", "uses": "echo"},
            {"id": "no", "uses": "echo"},
        ],
        [
            {"source": "w", "target": "yes", "action": "approve"},
            {"source": "w", "target": "no", "action": "reject"},
        ],
    )
    async with harness({"echo": echo}) as h:
        run_id = await h.client.start(flow)
        assert (await h.client.result(run_id, 5)).status == "awaiting"
        with pytest.raises(FlowcraftError) as bogus:
            await h.client.resume(run_id, "bogus")
        with pytest.raises(FlowcraftError) as none:
            await h.client.resume(run_id, None)
        still = await h.client.status(run_id)
        await h.client.resume(run_id, "approve", {"by": "ana"})
        result = await h.client.result(run_id, 5)
    assert "'bogus'" in str(bogus.value) and "'approve', 'reject'" in str(bogus.value)
    assert "no action" in str(none.value)
    assert still == "awaiting"  # the refused resumes changed nothing
    assert result.status == "completed"
    assert result.outputs == {"w": {"by": "ana"}, "yes": "yes"}


@pytest.mark.parametrize("action", [None, "go"])
async def test_resume_without_a_matching_action_takes_unlabelled_edges(action: str | None) -> None:
    """As Flowcraft routes (determineNextNodes): an action no edge names falls back to the
    edges without an action (the README's `flowcraft resume --action approve` relies on it)."""

    async def echo(ctx: NodeContext) -> Any:
        return ctx.input

    flow = bp(
        [{"id": "w", "uses": "wait"}, {"id": "next", "uses": "echo"}],
        [{"source": "w", "target": "next"}],
    )
    async with harness({"echo": echo}) as h:
        run_id = await h.client.start(flow)
        await h.client.result(run_id, 5)
        await h.client.resume(run_id, action, 7)
        result = await h.client.result(run_id, 5)
    assert result.outputs == {"w": 7, "next": 7}


# -- a start whose reply is lost --------------------------------------------------------------


class _LosesReplies:
    """The client's run state, with the connection failing around ``start`` the first
    ``times`` times: before it reaches the backend, or after it was applied."""

    def __init__(
        self,
        state: Any,
        *,
        after: bool,
        times: int = 1,
        error: type[Exception] = ConnectionError,
    ) -> None:
        self._state = state
        self.after = after
        self.left = times
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._state, name)

    async def start(self, run_id: str, **kwargs: Any) -> None:
        if self.left and not self.after:
            self.left -= 1
            raise self.error("connection reset before the request")
        await self._state.start(run_id, **kwargs)
        if self.left:
            self.left -= 1
            raise self.error("connection reset before the reply")


# What a driver raises for a dropped connection: redis-py's error is a ConnectionError; the SQL
# driver's is BackendUnavailable (a DriverError, which is otherwise not retried).
@pytest.mark.parametrize("error", [ConnectionError, BackendUnavailable])
@pytest.mark.parametrize("after", [False, True], ids=["lost-request", "lost-reply"])
async def test_a_start_survives_a_dropped_connection_without_creating_two_runs(
    after: bool, error: type[Exception]
) -> None:
    from flowcraft_core.engine.keys import ACTIVE_RUNS

    executions = 0

    async def once(ctx: NodeContext) -> int:
        nonlocal executions
        executions += 1
        return 1

    async with harness({"once": once}) as h:
        h.client._state = _LosesReplies(h.client._state, after=after, times=2, error=error)  # type: ignore[assignment]
        run_id = await h.client.start(bp([{"id": "a", "uses": "once"}]), {"x": 1})
        result = await h.client.result(run_id, 5)
        active = await h.backends.coordination.members(ACTIVE_RUNS)
    assert result.status == "completed", result.error
    assert executions == 1
    assert active == set()  # exactly one run was stored, and it finished


async def test_a_start_retried_after_its_activation_failed_starts_the_run_whole() -> None:
    # The SQL chaos soak's runs that "completed" with nodes never run: the composed start's
    # context commit applied, its activation batch failed, the client's retry was refused as a
    # taken id (its own) and taken as started, so the start job ran in a run never activated
    # and its finish left nothing to wait for.
    from flowcraft_core import EngineSettings
    from flowcraft_core.engine.keys import ACTIVATED

    async def add(ctx: NodeContext) -> int:
        return int(ctx.input if isinstance(ctx.input, int) else ctx.input["x"]) + 1

    flow = bp(
        [{"id": "a", "uses": "add"}, {"id": "b", "uses": "add"}, {"id": "c", "uses": "add"}],
        [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    )
    settings = EngineSettings(fused_state=False)  # the reference start, as the SQL driver's
    async with harness({"add": add}, settings=settings) as h:
        coordination = h.backends.coordination
        batch = coordination.batch
        failed = []

        async def fails_once(ops: Any) -> Any:
            if not failed and any(op.key.endswith(ACTIVATED) for op in ops):
                failed.append(ops)
                raise BackendUnavailable("connection lost before the activation")
            return await batch(ops)

        coordination.batch = fails_once  # type: ignore[method-assign]
        run_id = await h.client.start(flow, {"x": 1})
        result = await h.client.result(run_id, 5)
    assert failed, "the activation never failed: the test tests nothing"
    assert result.status == "completed", result.error
    assert result.outputs == {"a": 2, "b": 3, "c": 4}


async def test_a_start_of_a_taken_run_id_is_still_refused() -> None:
    from flowcraft_core.errors import RunExists

    async def once(ctx: NodeContext) -> int:
        return 1

    flow = bp([{"id": "a", "uses": "once"}])
    async with harness({"once": once}) as h:
        await h.client.start(flow, 1, run_id="taken")
        h.client._state = _LosesReplies(h.client._state, after=False)  # type: ignore[assignment]
        with pytest.raises(RunExists):
            await h.client.start(flow, 2, run_id="taken")


# -- runs nothing will move again -------------------------------------------------------------


async def test_reconcile_reports_unfinished_runs_whose_bookkeeping_expired() -> None:
    from flowcraft_core import Client, EngineSettings, open_backends
    from flowcraft_core.engine.reconcile import orphans

    from .helpers import unique_url

    backends = open_backends(unique_url())
    short = Client(backends, settings=EngineSettings(run_ttl=0.3))
    normal = Client(backends)
    flow = bp([{"id": "a", "uses": "nobody-runs-this"}])
    stalled = await short.start(flow)  # no worker: it stays unfinished
    fresh = await normal.start(flow)
    await asyncio.sleep(0.5)
    found = await orphans(backends)
    kept = await backends.context.get_all(stalled)
    await normal.cancel(stalled)
    after_cancel = await orphans(backends)
    await backends.close()
    assert found == [stalled]  # the fresh run still has its bookkeeping
    assert kept  # its context is kept until it is cancelled
    assert fresh not in found and after_cancel == []
