"""The ``subflow`` built-in on the memory driver: Flowcraft's own subflow test cases (outputs as
Flowcraft gives them), the child run's identity and status, failure with retries and fallback,
awaiting and resume through the parent or the child, cancel, and bad input."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from flowcraft_core import Blueprint, BlueprintError, FlowcraftError, NodeContext
from flowcraft_core.engine import keys
from flowcraft_core.registry import Registry

from .helpers import bp, harness

CALLS: Counter[str] = Counter()


async def const(ctx: NodeContext) -> Any:
    CALLS[f"{ctx.run_id}:{ctx.node_id}"] += 1
    return ctx.params.get("value")


async def echo(ctx: NodeContext) -> Any:
    return ctx.input


async def prefixed(ctx: NodeContext) -> Any:
    return f"{ctx.params['prefix']}{ctx.input}"


async def processed(ctx: NodeContext) -> Any:
    return f"processed_{ctx.input['value']}"


async def set_result(ctx: NodeContext) -> Any:
    ctx.context.set("result", "sub-value")
    return "sub-result"


async def boom(ctx: NodeContext) -> Any:
    raise RuntimeError(f"Node {ctx.node_id!r} execution failed")


async def flaky_child(ctx: NodeContext) -> Any:
    """Fails in the first child run it is called in, succeeds in any other."""
    CALLS["flaky"] += 1
    if CALLS["flaky"] == 1:
        raise RuntimeError("first child fails")
    return "second child"


async def rescue(ctx: NodeContext) -> Any:
    return "rescued"


async def add(ctx: NodeContext) -> Any:
    return {"value": ctx.input}


async def sub_end(ctx: NodeContext) -> Any:
    return {"subFinal": ctx.input["value"]["value"] + 5}


async def main_end(ctx: NodeContext) -> Any:
    return {"final": ctx.input["subFinal"] + 10}


async def read_subflow_output(ctx: NodeContext) -> Any:
    assert await ctx.context.get("subflow_output") == "processed_test"
    return "main_complete"


REGISTRY = {
    "const": const,
    "echo": echo,
    "prefixed": prefixed,
    "processed": processed,
    "set_result": set_result,
    "boom": boom,
    "flaky_child": flaky_child,
    "rescue": rescue,
    "add": add,
    "sub_end": sub_end,
    "main_end": main_end,
    "read_subflow_output": read_subflow_output,
}


def sub(node_id: str, blueprint_id: str, **params: Any) -> dict[str, Any]:
    return {"id": node_id, "uses": "subflow", "params": {"blueprintId": blueprint_id, **params}}


async def test_flowcraft_subflow_returns_its_terminal_output() -> None:
    """Flowcraft's 'should execute a subflow and return output'."""
    child = bp([{"id": "a", "uses": "const", "params": {"value": "sub-result"}}], name="sub")
    main = bp(
        [
            {"id": "start", "uses": "const", "params": {"value": "start"}},
            sub("call-sub", "sub"),
            {"id": "end", "uses": "prefixed", "params": {"prefix": "end-"}},
        ],
        [{"source": "start", "target": "call-sub"}, {"source": "call-sub", "target": "end"}],
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        result = await h.run(main)
        children = await h.client.children(result.run_id)
    assert result.status == "completed", result.error
    assert result.outputs["call-sub"] == "sub-result"
    assert result.outputs["end"] == "end-sub-result"
    child_id = keys.child_run_id(result.run_id, "call-sub#0", 1)
    assert children == {child_id: {"node": "call-sub", "blueprint": "sub", "status": "completed"}}


class ReadsSeen:
    """The engine's context store, recording which runs it reads whole (``get_all``)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.whole: list[str] = []

    async def get_all(self, run_id: str) -> dict[str, Any]:
        self.whole.append(run_id)
        result: dict[str, Any] = await self.store.get_all(run_id)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def set_many(ctx: NodeContext) -> Any:
    for i in range(50):
        ctx.context.set(f"k{i}", i)
    return "many"


async def test_without_outputs_the_parent_reads_only_the_childs_terminal_outputs() -> None:
    """Per-node cost must not grow with the child's context (docs/design.md § The engine):
    without ``params.outputs`` the completed child's context is not read whole, only its
    metadata and its terminal nodes' outputs; the output is Flowcraft's all the same."""
    child = bp(
        [{"id": "w", "uses": "set_many"}, {"id": "t", "uses": "const", "params": {"value": 7}}],
        [{"source": "w", "target": "t"}],
        name="writes-much",
    )
    main = bp([sub("call", "writes-much")])
    async with harness({**REGISTRY, "set_many": set_many}, blueprints=[child]) as h:
        seen = ReadsSeen(h.worker.engine.context)
        h.worker.engine.context = seen
        result = await h.run(main)
    assert result.status == "completed", result.error
    assert result.outputs["call"] == 7
    assert keys.child_run_id(result.run_id, "call#0", 1) not in seen.whole


async def test_flowcraft_subflow_inputs_and_outputs() -> None:
    """Flowcraft's 'should execute subflow and merge context correctly' and 'should pass
    outputs from subflow': inputs seed the child's context, outputs write the parent's, and
    with outputs the node's output is the child's whole final context."""
    child = bp([{"id": "process", "uses": "processed", "inputs": "input"}], name="subflow-test")
    main = bp(
        [
            {"id": "input", "uses": "const", "params": {"value": {"value": "test"}}},
            sub(
                "test-subflow",
                "subflow-test",
                inputs={"input": "input"},
                outputs={"subflow_output": "process"},
            ),
            {"id": "output", "uses": "read_subflow_output"},
        ],
        [
            {"source": "input", "target": "test-subflow"},
            {"source": "test-subflow", "target": "output"},
        ],
    )
    writer = bp([{"id": "a", "uses": "set_result"}], name="sub-outputs")
    main2 = bp(
        [
            {"id": "start", "uses": "const", "params": {"value": "start"}},
            sub("call-sub", "sub-outputs", outputs={"subResult": "a"}),
        ],
        [{"source": "start", "target": "call-sub"}],
    )
    async with harness(REGISTRY, blueprints=[child, writer]) as h:
        result = await h.run(main)
        result2 = await h.run(main2)
    assert result.status == "completed", result.error
    assert result.outputs["output"] == "main_complete"
    assert result.context["subflow_output"] == "processed_test"
    assert result.outputs["test-subflow"] == {
        "input": {"value": "test"},
        "_outputs.process": "processed_test",
        "process": "processed_test",
    }
    assert result2.status == "completed", result2.error
    assert result2.context["subResult"] == "sub-result"
    assert result2.outputs["call-sub"] == {
        "result": "sub-value",
        "_outputs.a": "sub-result",
        "a": "sub-result",
    }


async def test_flowcraft_subflow_with_several_terminals() -> None:
    child = bp(
        [
            {"id": "term1", "uses": "const", "params": {"value": "term1"}},
            {"id": "term2", "uses": "const", "params": {"value": "term2"}},
        ],
        name="multi-terminal-subflow",
    )
    main = bp(
        [
            {"id": "input", "uses": "const", "params": {"value": "test"}},
            sub("test-subflow", "multi-terminal-subflow", inputs={"input": "input"}),
        ],
        [{"source": "input", "target": "test-subflow"}],
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        result = await h.run(main)
    assert result.status == "completed", result.error
    assert result.outputs["test-subflow"] == {"term1": "term1", "term2": "term2"}


async def test_without_inputs_the_child_gets_the_node_input() -> None:
    child = bp([{"id": "e", "uses": "echo"}], name="echoer")
    main = bp(
        [{"id": "s", "uses": "const", "params": {"value": [1, 2]}}, sub("c", "echoer")],
        [{"source": "s", "target": "c"}],
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        result = await h.run(main)
    assert result.outputs["c"] == [1, 2]


async def test_flowcraft_subflow_failure_fails_the_parent() -> None:
    """Flowcraft's 'should handle subflow errors and propagate them'."""
    child = bp([{"id": "fail", "uses": "boom"}], name="failing-subflow")
    main = bp(
        [
            {"id": "input", "uses": "const", "params": {"value": "test"}},
            sub("test-subflow", "failing-subflow", inputs={"input": "input"}),
        ],
        [{"source": "input", "target": "test-subflow"}],
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        result = await h.run(main)
        child_id = keys.child_run_id(result.run_id, "test-subflow#0", 1)
        child_status = await h.client.status(child_id)
    assert result.status == "failed"
    assert child_status == "failed"
    error = result.error
    assert error is not None
    assert error["node"] == "test-subflow" and error["type"] == "SubflowFailed"
    assert error["child"] == child_id
    assert "Node 'fail' execution failed" in error["message"]
    assert "Sub-workflow 'failing-subflow' did not complete successfully" in error["message"]


async def test_a_retry_starts_a_fresh_child_and_a_fallback_applies() -> None:
    """Each attempt of a subflow node has its own child run: attempt 1's child failed and is
    kept as it was; attempt 2's child completes. With no attempts left, the fallback runs."""
    CALLS["flaky"] = 0
    child = bp([{"id": "f", "uses": "flaky_child"}], name="flaky")
    main = bp(
        [
            {**sub("s", "flaky"), "config": {"maxRetries": 2}},
        ]
    )
    failing = bp([{"id": "fail", "uses": "boom"}], name="always-fails")
    fallback = bp(
        [
            {**sub("s", "always-fails"), "config": {"maxRetries": 2, "fallback": "r"}},
            {"id": "r", "uses": "rescue"},
        ]
    )
    async with harness(REGISTRY, blueprints=[child, failing]) as h:
        result = await h.run(main)
        first = await h.client.status(keys.child_run_id(result.run_id, "s#0", 1))
        second = await h.client.status(keys.child_run_id(result.run_id, "s#0", 2))
        rescued = await h.run(fallback)
        children = await h.client.children(rescued.run_id)
    assert result.status == "completed", result.error
    assert result.outputs["s"] == "second child"
    assert (first, second) == ("failed", "completed")
    assert rescued.status == "completed", rescued.error
    assert rescued.outputs["r"] == "rescued"
    assert sorted(c["status"] for c in children.values()) == ["failed", "failed"]


async def test_flowcraft_nested_subflow_with_wait_resumed_through_the_parent() -> None:
    """Flowcraft's hitl 'should handle nested subflow with wait node': the parent awaits while
    its child does, and resuming the parent's subflow node resumes the child."""
    child = bp(
        [
            {"id": "sub-start", "uses": "add", "inputs": "input"},
            {"id": "sub-wait", "uses": "wait"},
            {"id": "sub-end", "uses": "sub_end", "inputs": "_outputs.sub-start"},
        ],
        [
            {"source": "sub-start", "target": "sub-wait"},
            {"source": "sub-wait", "target": "sub-end"},
        ],
        name="sub-approval-workflow",
    )
    main = bp(
        [
            {"id": "main-start", "uses": "add", "inputs": "input"},
            sub("subflow", "sub-approval-workflow", inputs={"input": "main-start"}),
            {"id": "main-end", "uses": "main_end"},
        ],
        [
            {"source": "main-start", "target": "subflow"},
            {"source": "subflow", "target": "main-end"},
        ],
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        run_id = await h.client.start(main, context={"input": 42})
        first = await h.client.result(run_id, 10)
        assert first.status == "awaiting"
        child_id = keys.child_run_id(run_id, "subflow#0", 1)
        assert await h.client.status(child_id) == "awaiting"
        assert await h.client.resume(run_id, output={"value": 42}) == "subflow"
        second = await h.client.result(run_id, 10)
    assert second.status == "completed", second.error
    assert second.outputs["main-end"] == {"final": 57}


async def test_resume_on_the_child_continues_the_parent_twice() -> None:
    """A child that awaits twice: the parent awaits each time; resumes on the child's id."""
    child = bp(
        [
            {"id": "w1", "uses": "wait"},
            {"id": "w2", "uses": "wait"},
            {"id": "e", "uses": "echo"},
        ],
        [{"source": "w1", "target": "w2"}, {"source": "w2", "target": "e"}],
        name="two-waits",
    )
    main = bp(
        [sub("s", "two-waits"), {"id": "t", "uses": "echo"}], [{"source": "s", "target": "t"}]
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        run_id = await h.client.start(main)
        child_id = keys.child_run_id(run_id, "s#0", 1)
        assert (await h.client.result(run_id, 10)).status == "awaiting"
        await h.client.resume(child_id, output="one")
        assert (await h.client.result(child_id, 10)).status == "awaiting"
        assert (await h.client.result(run_id, 10)).status == "awaiting"
        await h.client.resume(child_id, output="two")
        done = await h.client.result(run_id, 10)
    assert done.status == "completed", done.error
    assert done.outputs["t"] == "two"


async def test_cancel_of_the_parent_cancels_the_child() -> None:
    child = bp([{"id": "w", "uses": "wait"}], name="waits")
    main = bp([sub("s", "waits")])
    async with harness(REGISTRY, blueprints=[child]) as h:
        run_id = await h.client.start(main)
        assert (await h.client.result(run_id, 10)).status == "awaiting"
        child_id = keys.child_run_id(run_id, "s#0", 1)
        assert await h.client.cancel(run_id)
        assert await h.client.status(child_id) == "cancelled"
        assert await h.client.status(run_id) == "cancelled"
        with pytest.raises(FlowcraftError, match="cancelled"):
            await h.client.resume(child_id, output=1)


async def test_a_subflow_naming_an_unknown_blueprint() -> None:
    """With a catalog: refused at validation, naming the node and the id. Without one (and
    no worker catalog): the run fails with a message naming the id."""
    main = bp(
        [
            {"id": "input", "uses": "const", "params": {"value": "test"}},
            sub("test-subflow", "nonexistent-subflow"),
        ],
        [{"source": "input", "target": "test-subflow"}],
    )
    other = bp([{"id": "x", "uses": "const"}], name="other")
    async with harness(REGISTRY, blueprints=[other]) as h:
        with pytest.raises(BlueprintError, match="'nonexistent-subflow', which is not in the cat"):
            await h.client.start(main)
    async with harness(REGISTRY) as h:
        result = await h.run(main)
    assert result.status == "failed"
    assert result.error is not None and result.error["type"] == "SubflowNotFound"
    assert "'nonexistent-subflow' not found" in result.error["message"]


async def test_missing_blueprint_id_is_a_validation_error() -> None:
    main = bp([{"id": "test-subflow", "uses": "subflow", "params": {"inputs": {"input": "x"}}}])
    async with harness(REGISTRY) as h:
        with pytest.raises(BlueprintError, match="missing 'blueprintId' parameter"):
            await h.client.start(main)


async def test_a_subflow_that_includes_itself() -> None:
    """With a catalog, a cycle of blueprints is refused naming it; a worker-only catalog
    (nothing checked up front) fails the run at the declared depth bound, never hangs."""
    looping = Blueprint.from_dict({"id": "ouro", "nodes": [sub("again", "ouro")], "edges": []})
    a = Blueprint.from_dict({"id": "a", "nodes": [sub("to-b", "b")], "edges": []})
    b = Blueprint.from_dict({"id": "b", "nodes": [sub("to-a", "a")], "edges": []})
    async with harness(REGISTRY, blueprints=[looping, a, b]) as h:
        with pytest.raises(BlueprintError, match=r"includes itself \(blueprints ouro -> ouro\)"):
            await h.client.start("ouro")
        with pytest.raises(BlueprintError, match=r"blueprints a -> b -> a"):
            await h.client.start("a")
    async with harness(REGISTRY, worker_blueprints=[looping]) as h:
        result = await h.run(looping, timeout=60)
    assert result.status == "failed"
    assert result.error is not None
    assert result.error["type"] == "SubflowFailed"
    # The innermost failure names the bound; each level wraps its child's failure.
    assert "SubflowTooDeep" not in result.error["message"]
    cause = result.error
    while "cause" in cause:
        cause = cause["cause"]
    assert cause["type"] == "SubflowTooDeep" and "at most 32" in cause["message"]


async def test_bad_subflow_params_are_validation_errors() -> None:
    main = bp(
        [
            sub("s", "x", inputs={"_input": "a"}, outputs={"ok": 3}),
        ]
    )
    async with harness(REGISTRY) as h:
        with pytest.raises(BlueprintError) as info:
            await h.client.start(main)
    text = str(info.value)
    assert "params.inputs writes the child's context keys ['_input']" in text
    assert "params.outputs must map non-empty strings" in text


class DropFirstParentContinuation:
    """Wraps a queue: the first job of node ``node`` enqueued for a run without the child
    mark (the parent's continuation, sent by its child's end) is lost, as in a crash."""

    def __init__(self, inner: Any, node: str) -> None:
        self.inner = inner
        self.node = node
        self.dropped: list[Any] = []

    def _keep(self, job: Any) -> bool:
        if not self.dropped and job.node_id == self.node and not keys.may_be_child(job.run_id):
            self.dropped.append(job)
            return False
        return True

    async def enqueue(self, job: Any, *, delay: float = 0.0) -> None:
        if self._keep(job):
            await self.inner.enqueue(job, delay=delay)

    async def enqueue_many(self, jobs: Any, *, delay: float = 0.0) -> None:
        await self.inner.enqueue_many([j for j in jobs if self._keep(j)], delay=delay)

    async def consume(self, handler: Any, *, concurrency: int = 1) -> Any:
        return await self.inner.consume(handler, concurrency=concurrency)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_lost_continuation_is_recovered_by_reconcile() -> None:
    """A child that ends continues its parent (inline, or through the queue when a client
    cancels the child). If that is lost, the parent reports running until reconcile's frontier
    re-enqueues the subflow job, which then sees the child's end: here a cancelled child fails
    the parent's node."""
    import asyncio

    from flowcraft_core import open_backends
    from flowcraft_core.drivers import Backends
    from flowcraft_core.engine.reconcile import reconcile

    from .helpers import unique_url

    raw = open_backends(unique_url())
    lossy = DropFirstParentContinuation(raw.queue, "s")
    backends = Backends(lossy, raw.context, raw.coordination, raw.urls)
    child = bp([{"id": "w", "uses": "wait"}], name="kid")
    main = bp(
        [{"id": "a", "uses": "const", "params": {"value": 1}}, sub("s", "kid")],
        [{"source": "a", "target": "s"}],
    )
    async with harness(REGISTRY, blueprints=[child], backends=backends) as h:
        run_id = await h.client.start(main)
        assert (await h.client.result(run_id, 10)).status == "awaiting"
        child_id = keys.child_run_id(run_id, "s#0", 1)
        assert await h.client.cancel(child_id)
        assert lossy.dropped, "the continuation was never sent"
        await asyncio.sleep(0.05)
        assert await h.client.status(run_id) == "awaiting"  # nobody told it
        assert await reconcile(backends, older_than=0) == [run_id]
        for _ in range(500):  # result() would return at once: the run still reads awaiting
            if await h.client.status(run_id) != "awaiting":
                break
            await asyncio.sleep(0.01)
        result = await h.client.result(run_id, 10)
        children = await h.client.children(run_id)
    assert result.status == "failed"
    assert result.error is not None and result.error["type"] == "SubflowFailed"
    assert "Status: cancelled" in result.error["message"]
    assert children == {child_id: {"node": "s", "blueprint": "kid", "status": "cancelled"}}


async def test_a_childs_jobs_carry_the_parent_runs_headers() -> None:
    """A subflow tree is one trace: the child's jobs (and its resume) carry the headers the
    plugins gave the parent run."""
    from .helpers import Recorder
    from .test_job_headers import Headers, manager

    plugin = Headers({"trace": "t-sub"})
    recorder = Recorder()
    pm = manager(plugin, recorder)
    child = bp(
        [{"id": "c", "uses": "const", "params": {"value": 1}}, {"id": "w", "uses": "wait"}],
        [{"source": "c", "target": "w"}],
        name="kid-waits",
    )
    main = bp(
        [{"id": "a", "uses": "const", "params": {"value": 0}}, sub("s", "kid-waits")],
        [{"source": "a", "target": "s"}],
    )
    async with harness(REGISTRY, blueprints=[child], pm=pm) as h:
        run_id = await h.client.start(main)
        assert (await h.client.result(run_id, 10)).status == "awaiting"
        await h.client.resume(run_id, output="ok")
        result = await h.client.result(run_id, 10)
    assert result.status == "completed", result.error
    assert plugin.asked == [(run_id, main.id)]  # the child's headers are the parent's
    started = recorder.of("node_started")
    enqueued = recorder.of("job_enqueued")
    assert {(keys.may_be_child(j.run_id), j.node_id) for j in started} == {
        (False, "a"),
        (True, "c"),
    }
    assert {j.node_id for j in enqueued if keys.may_be_child(j.run_id)} >= {"c", "w"}
    for job in [*started, *enqueued]:
        assert dict(job.headers) == {"trace": "t-sub"}, job


async def test_retrying_a_failed_run_starts_a_fresh_child() -> None:
    """Client.retry numbers the new round of attempts on from the failed ones, so the subflow
    job names a new child run; the failed child is kept as it was."""
    CALLS["flaky"] = 0
    child = bp([{"id": "f", "uses": "flaky_child"}], name="flaky-once")
    main = bp(
        [sub("s", "flaky-once"), {"id": "t", "uses": "echo"}], [{"source": "s", "target": "t"}]
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        failed = await h.run(main)
        assert failed.status == "failed", failed
        await h.client.retry(failed.run_id)
        result = await h.client.result(failed.run_id, 10)
        children = await h.client.children(failed.run_id)
    assert result.status == "completed", result.error
    assert result.outputs == {"s": "second child", "t": "second child"}
    assert sorted(c["status"] for c in children.values()) == ["completed", "failed"]


async def test_flowcraft_class_names_of_built_ins_are_those_built_ins() -> None:
    """A blueprint saved from Flowcraft's builder names a built-in by its class
    (``.node(id, SubflowNode, ...)`` writes ``uses: "SubflowNode"``): it validates and runs
    as the built-in, unchanged, and registering such a name is refused."""
    child = bp([{"id": "a", "uses": "const", "params": {"value": "sub-result"}}], name="sub-c")
    main = bp(
        [
            {"id": "start", "uses": "const", "params": {"value": "start"}},
            {"id": "call-sub", "uses": "SubflowNode", "params": {"blueprintId": "sub-c"}},
            {"id": "nap", "uses": "SleepNode", "params": {"duration": 1}},
            {"id": "w", "uses": "WaitNode"},
            {"id": "end", "uses": "prefixed", "params": {"prefix": "end-"}},
        ],
        [
            {"source": "start", "target": "call-sub"},
            {"source": "call-sub", "target": "nap"},
            {"source": "nap", "target": "w"},
            {"source": "w", "target": "end"},
        ],
    )
    assert [n.uses for n in main.nodes][1:4] == ["subflow", "sleep", "wait"]
    # Written back as Flowcraft wrote it (its digest is of that text).
    assert main.to_dict()["nodes"][1]["uses"] == "SubflowNode"
    assert Blueprint.from_dict(main.to_dict()) == main
    scatter = {
        "id": "b_scatter",
        "uses": "BatchScatterNode",
        "inputs": "start",
        "params": {"workerUsesKey": "echo", "outputKey": "out", "gatherNodeId": "b_gather"},
    }
    gather = {
        "id": "b_gather",
        "uses": "BatchGatherNode",
        "params": {"outputKey": "out", "gatherNodeId": "b_gather"},
        "config": {"joinStrategy": "all"},
    }
    batch = bp(
        [{"id": "start", "uses": "const", "params": {"value": [1, 2]}}, scatter, gather],
        [{"source": "start", "target": "b_scatter"}, {"source": "b_scatter", "target": "b_gather"}],
    )
    async with harness(REGISTRY, blueprints=[child]) as h:
        run_id = await h.client.start(main, None)
        parked = await h.client.result(run_id, 10)
        assert parked.status == "awaiting", parked.error
        await h.client.resume(run_id, None, "resumed")
        result = await h.client.result(run_id, 10)
        batched = await h.run(batch)
    assert result.status == "completed", result.error
    assert result.outputs["call-sub"] == "sub-result"
    assert result.outputs["nap"] == "sub-result"
    assert result.outputs["end"] == "end-resumed"
    assert batched.status == "completed", batched.error
    assert batched.outputs["b_gather"] == [1, 2]
    with pytest.raises(FlowcraftError, match="SubflowNode"):
        Registry({"SubflowNode": echo})
