"""Forking a finished run from a node: a new run with the original's pinned blueprint, input,
context and every committed result of the nodes before that node (none of them executes
again), the node and all after it run again there, and the original is left exactly as it
was. Every refusal names its reason. In-process on every backend, and through the CLI with
real worker processes."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flowcraft_core import Blueprint, Client, NodeContext, Registry, Worker, open_backends
from flowcraft_core.client import SyncClient
from flowcraft_core.engine import keys
from flowcraft_core.engine.reconcile import reconcile
from flowcraft_core.errors import FlowcraftError, RunNotFound

RAN: Counter[tuple[str, str]] = Counter()
BROKEN: set[str] = set()  # run ids whose node "b" fails
BROKEN_D: set[str] = set()  # run ids whose node "d" fails


async def _node(ctx: NodeContext) -> Any:
    RAN[(ctx.run_id, ctx.node_id)] += 1
    if ctx.node_id == "b" and ctx.run_id in BROKEN:
        raise RuntimeError("b is broken")
    if ctx.node_id == "d" and ctx.run_id in BROKEN_D:
        raise RuntimeError("d is broken")
    return {"node": ctx.node_id, "input": ctx.input, "attempt": ctx.attempt}


REGISTRY = Registry({"node": _node})
FLOW = Blueprint.from_dict(
    {
        "id": "three",
        "nodes": [
            {"id": "a", "uses": "node"},
            {"id": "b", "uses": "node"},
            {"id": "c", "uses": "node"},
        ],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    }
)
# d joins b and c: forked from c, d must still count b's arrival (b is not run again).
DIAMOND = Blueprint.from_dict(
    {
        "id": "diamond",
        "nodes": [{"id": n, "uses": "node"} for n in "abcd"],
        "edges": [
            {"source": "a", "target": "b"},
            {"source": "a", "target": "c"},
            {"source": "b", "target": "d"},
            {"source": "c", "target": "d"},
        ],
    }
)
# The same with d an "any" join: it fires once, on its first arrival.
ANY = Blueprint.from_dict(
    {
        **DIAMOND.to_dict(),
        "id": "diamond-any",
        "nodes": [
            *({"id": n, "uses": "node"} for n in "abc"),
            {"id": "d", "uses": "node", "config": {"joinStrategy": "any"}},
        ],
    }
)
LOOP = Blueprint.from_dict(
    {
        "id": "looping",
        "nodes": [
            {"id": "start", "uses": "node"},
            {"id": "body", "uses": "node"},
            {"id": "ctl", "uses": "loop-controller", "params": {"condition": "false"}},
            {"id": "after", "uses": "node"},
        ],
        "edges": [
            {"source": "start", "target": "body"},
            {"source": "body", "target": "ctl"},
            {"source": "ctl", "target": "body", "action": "continue"},
            {"source": "ctl", "target": "after", "action": "break"},
        ],
    }
)


def ran(run_id: str) -> dict[str, int]:
    return {node: n for (run, node), n in RAN.items() if run == run_id}


async def test_a_completed_run_forked_from_b_reruns_b_and_c_in_a_new_run(
    backend_url: str,
) -> None:
    client = Client(open_backends(backend_url))
    try:
        async with Worker(REGISTRY, client.backends):
            run_id = await client.start(FLOW, {"x": 1}, context={"region": "eu"})
            original = await client.result(run_id, 30)
            assert original.status == "completed"
            before = await client.history(run_id)
            forked = await client.fork(run_id, from_node="b")
            assert forked != run_id
            done = await client.result(forked, 30)
        assert done.status == "completed", done
        assert done.outputs["a"] == original.outputs["a"]  # copied, not run again
        assert done.outputs["b"]["input"] == original.outputs["a"]
        assert done.outputs["c"]["input"] == done.outputs["b"]
        assert done.context == {"region": "eu"}
        assert ran(run_id) == {"a": 1, "b": 1, "c": 1}
        assert ran(forked) == {"b": 1, "c": 1}  # a executed nowhere again
        meta = await client.backends.context.get(forked, keys.RUN)
        assert meta["digest"] == FLOW.digest() and meta["forked"] == {"run": run_id, "node": "b"}
        assert await client.backends.context.get(forked, keys.INPUT) == {"x": 1}

        # The original is exactly as it was: status, outputs, history.
        assert await client.result(run_id, 5) == original
        assert await client.history(run_id) == before

        listed = [r.run_id for r in (await client.runs(status="completed")).runs]
        assert run_id in listed and forked in listed
        history = await client.history(forked)
        assert [e["event"] for e in history.events] == ["started", "forked", "completed"]
        assert history.events[1]["from"] == run_id and history.events[1]["node"] == "b"
        nodes = {n.node: n for n in history.nodes}
        assert [x.status for x in nodes["a"].attempts] == ["completed"]  # the original's
        assert nodes["a"].attempts == {n.node: n for n in before.nodes}["a"].attempts
        assert [(x.attempt, x.status) for x in nodes["b"].attempts] == [(1, "completed")]
    finally:
        await client.close()


async def test_a_join_after_the_fork_node_counts_the_kept_branch(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    try:
        async with Worker(REGISTRY, client.backends):
            run_id = await client.start(DIAMOND, 7)
            original = await client.result(run_id, 30)
            forked = await client.fork(run_id, from_node="c")
            done = await client.result(forked, 30)
        assert done.status == "completed", done
        assert ran(forked) == {"c": 1, "d": 1}
        assert done.outputs["b"] == original.outputs["b"]
        assert done.outputs["d"]["input"] == {"b": original.outputs["b"], "c": done.outputs["c"]}
    finally:
        await client.close()


async def test_an_any_join_after_the_fork_node_fires_once_on_the_kept_branch(
    backend_url: str,
) -> None:
    # b's arrival at d is kept and is a live arrival at an "any" join: d is ready at once in
    # the fork (on b's output), and the re-run c's arrival does not run it a second time.
    client = Client(open_backends(backend_url))
    try:
        async with Worker(REGISTRY, client.backends):
            run_id = await client.start(ANY, 7)
            original = await client.result(run_id, 30)
            assert ran(run_id)["d"] == 1
            forked = await client.fork(run_id, from_node="c")
            done = await client.result(forked, 30)
        assert done.status == "completed", done
        assert ran(forked) == {"c": 1, "d": 1}
        assert done.outputs["d"]["input"] == original.outputs["b"]
    finally:
        await client.close()


async def test_a_fork_whose_enqueue_was_lost_is_run_by_reconcile(
    backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if the client died right after the fork's bookkeeping: the new run is active with
    # its frontier activated, so reconcile finds it and it runs, exactly once per node.
    client = Client(open_backends(backend_url))
    try:
        async with Worker(REGISTRY, client.backends):
            run_id = await client.start(FLOW, {"x": 1})
            await client.result(run_id, 30)
            real = client.backends.queue.enqueue_many

            async def lost(jobs: Any) -> None:
                return None

            monkeypatch.setattr(client.backends.queue, "enqueue_many", lost)
            forked = await client.fork(run_id, from_node="b")
            monkeypatch.setattr(client.backends.queue, "enqueue_many", real)
            assert await client.status(forked) == "running"
            assert forked in await reconcile(client.backends, older_than=0)
            done = await client.result(forked, 30)
        assert done.status == "completed"
        assert ran(forked) == {"b": 1, "c": 1}
    finally:
        await client.close()


async def test_a_retry_from_a_branch_keeps_the_other_branchs_arrival_at_the_join(
    backend_url: str,
) -> None:
    # The retry shares the fork's rejoin: d's arrival from b (kept) is carried over, so the
    # re-run c completes the join and d runs (it used to be forgotten: the run "completed"
    # with d never run again).
    client = Client(open_backends(backend_url))
    run_id = uuid.uuid4().hex
    BROKEN_D.add(run_id)
    try:
        async with Worker(REGISTRY, client.backends):
            await client.start(DIAMOND, 7, run_id=run_id)
            failed = await client.result(run_id, 30)
            assert failed.status == "failed" and failed.error["node"] == "d"  # type: ignore[index]
            BROKEN_D.discard(run_id)
            await client.retry(run_id, from_node="c")
            done = await client.result(run_id, 30)
        assert done.status == "completed", done
        assert ran(run_id) == {"a": 1, "b": 1, "c": 2, "d": 2}
        assert done.outputs["d"]["input"] == {"b": failed.outputs["b"], "c": done.outputs["c"]}
    finally:
        BROKEN_D.discard(run_id)
        await client.close()


async def test_a_failed_run_forked_after_the_fix_completes_and_stays_failed(
    backend_url: str,
) -> None:
    client = Client(open_backends(backend_url))
    run_id = uuid.uuid4().hex
    BROKEN.add(run_id)
    try:
        async with Worker(REGISTRY, client.backends):
            await client.start(FLOW, {"x": 1}, run_id=run_id)
            failed = await client.result(run_id, 30)
            assert failed.status == "failed"
            forked = await client.fork(run_id, from_node="b")  # not broken: another run id
            done = await client.result(forked, 30)
        assert done.status == "completed" and done.outputs["a"] == failed.outputs["a"]
        assert ran(forked) == {"b": 1, "c": 1}
        assert await client.status(run_id) == "failed"
        assert (await client.result(run_id, 5)).outputs == failed.outputs
    finally:
        BROKEN.discard(run_id)
        await client.close()


async def test_fork_refusals_name_their_reason(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    try:
        pending = await client.start(FLOW, {"x": 1})  # no worker yet: running
        with pytest.raises(FlowcraftError, match=f"run {pending} is running: only a finished"):
            await client.fork(pending, from_node="b")
        with pytest.raises(RunNotFound, match="no run 'nope'"):
            await client.fork("nope", from_node="b")
        async with Worker(REGISTRY, client.backends):
            run_id = await client.start(FLOW, {"x": 1})
            looped = await client.start(LOOP, 1)
            assert (await client.result(run_id, 30)).status == "completed"
            assert (await client.result(looped, 30)).status == "completed"
        with pytest.raises(FlowcraftError, match="has no node 'zzz' \\(its nodes: a, b, c\\)"):
            await client.fork(run_id, from_node="zzz")
        with pytest.raises(FlowcraftError, match="needs the node to re-run from"):
            await client.fork(run_id)
        for inside in ("body", "ctl"):
            with pytest.raises(FlowcraftError, match="part of a loop, batch or subflow; fork"):
                await client.fork(looped, from_node=inside)
        # The pinned blueprint expired (as after run_ttl): a fresh client cannot fork.
        await client.coordination.delete(keys.blueprint_key(FLOW.digest()))
        other = Client(open_backends(backend_url))
        try:
            with pytest.raises(FlowcraftError, match=r"pinned blueprint 'three' .* has expired"):
                await other.fork(run_id, from_node="b")
        finally:
            await other.close()
        # Refused: nothing was started.
        assert {r.run_id for r in (await client.runs()).runs} == {pending, run_id, looped}
    finally:
        await client.close()


def test_the_sync_client_forks() -> None:
    with SyncClient("memory://fork-sync") as client:
        run_id = client.start(FLOW, {"x": 2})
        with pytest.raises(FlowcraftError, match="is running"):
            client.fork(run_id, from_node="c")
        assert client.cancel(run_id)
        forked = client.fork(run_id, from_node="c")
        # Cancelled before anything ran: a (kept, unfinished) runs in the fork, then b, c.
        assert client.status(forked) == "running"
        assert client.status(run_id) == "cancelled"


# -- through the CLI, with real worker processes ---------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("family", ["redis", "sqlite"])
def test_the_cli_forks_a_completed_run_exactly(
    family: str, make_backend_url: Callable[[str], str], tmp_path: Path
) -> None:
    from procs import Procs, flowcraft, read_log, starts_per_node

    url = make_backend_url(family)
    blueprint = tmp_path / "three.json"
    blueprint.write_text(
        json.dumps(
            {
                "id": "three-steps",
                "nodes": [
                    {"id": "a", "uses": "step", "params": {"add": 1}},
                    {"id": "b", "uses": "step", "params": {"add": 10}},
                    {"id": "c", "uses": "step", "params": {"add": 100}},
                ],
                "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
            }
        )
    )
    log = tmp_path / "exec.log"

    def cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = flowcraft(*args, "--backend", url)
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def last(proc: subprocess.CompletedProcess[str]) -> Any:
        return json.loads(proc.stdout.strip().splitlines()[-1])

    with Procs(tmp_path, log) as procs:
        procs.worker(url)
        run_id = cli("start", str(blueprint), "--input", '{"x": 1}').stdout.strip().splitlines()[-1]
        original = last(cli("wait", run_id, "--timeout", "60", "--json"))
        assert original["status"] == "completed"
        shown = last(cli("runs", "show", run_id, "--json"))

        # Refusals, each one line on stderr with exit 1.
        for args, reason in [
            (("fork", "nope", "--from", "b"), "no run 'nope'"),
            (("fork", run_id, "--from", "zz"), "has no node 'zz'"),
        ]:
            refused = cli(*args, code=1)
            assert reason in refused.stderr and len(refused.stderr.splitlines()) == 1

        forked = cli("fork", run_id, "--from", "b").stdout.strip().splitlines()[-1]
        assert forked != run_id
        done = last(cli("wait", forked, "--timeout", "60", "--json"))
        assert done["status"] == "completed", done
        assert done["outputs"]["a"] == original["outputs"]["a"]
        assert done["outputs"]["c"] == original["outputs"]["c"]  # same steps, same values

        waited = last(cli("fork", forked, "--from", "c", "--wait", "--timeout", "60", "--json"))
        assert waited["status"] == "completed" and waited["run_id"] not in (run_id, forked)

        # The original is unchanged; the forks are listed.
        assert last(cli("wait", run_id, "--timeout", "5", "--json")) == original
        assert last(cli("runs", "show", run_id, "--json")) == shown
        listed = {r["run_id"] for r in last(cli("runs", "list", "--json"))}
        assert listed == {run_id, forked, waited["run_id"]}
        events = last(cli("runs", "show", forked, "--json"))["events"]
        assert [e["event"] for e in events] == ["started", "forked", "completed"]

    per_node = starts_per_node(read_log(log))
    assert per_node[(run_id, "a")] == 1
    assert (forked, "a") not in per_node  # copied, never executed in the fork
    assert per_node[(forked, "b")] == 1 and per_node[(forked, "c")] == 1
    assert per_node[(waited["run_id"], "c")] == 1
    assert (waited["run_id"], "b") not in per_node
