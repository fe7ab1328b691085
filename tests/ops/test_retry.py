"""Retrying a failed or cancelled run in place: committed outputs are kept and never
re-executed, the nodes that did not complete (or a node and all after it) run again, and
every refusal names its reason. In-process on every backend, and through the CLI with real
worker processes."""

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
from flowcraft_core.engine import keys
from flowcraft_core.errors import FlowcraftError, RunNotFound

RAN: Counter[tuple[str, str]] = Counter()
BROKEN: set[str] = set()  # run ids whose node "b" fails


async def _node(ctx: NodeContext) -> Any:
    RAN[(ctx.run_id, ctx.node_id)] += 1
    if ctx.node_id == "b" and ctx.run_id in BROKEN:
        raise RuntimeError("b is broken")
    return {"node": ctx.node_id, "input": ctx.input, "attempt": ctx.attempt}


REGISTRY = Registry({"node": _node})
FLOW = Blueprint.from_dict(
    {
        "id": "three",
        "nodes": [
            {"id": "a", "uses": "node"},
            {"id": "b", "uses": "node", "config": {"maxRetries": 2}},
            {"id": "c", "uses": "node"},
        ],
        "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
    }
)


def ran(run_id: str) -> dict[str, int]:
    return {node: n for (run, node), n in RAN.items() if run == run_id}


async def test_a_failed_run_retried_after_the_fix_keeps_committed_outputs(
    backend_url: str,
) -> None:
    client = Client(open_backends(backend_url))
    run_id = uuid.uuid4().hex
    BROKEN.add(run_id)
    try:
        async with Worker(REGISTRY, client.backends):
            await client.start(FLOW, {"x": 1}, run_id=run_id)
            failed = await client.result(run_id, 30)
            assert failed.status == "failed" and failed.error["node"] == "b"  # type: ignore[index]
            assert ran(run_id) == {"a": 2 - 1, "b": 2}  # b used its two attempts
            a_output = failed.outputs["a"]
            listed = await client.runs(status="failed")
            assert run_id in [r.run_id for r in listed.runs]

            BROKEN.discard(run_id)  # the fix
            assert await client.retry(run_id) == run_id
            done = await client.result(run_id, 30)
        assert done.status == "completed", done
        assert done.outputs["a"] == a_output  # untouched
        assert ran(run_id) == {"a": 1, "b": 3, "c": 1}  # b exactly once more
        assert done.outputs["b"]["attempt"] == 3  # numbered on, a fresh round of two
        assert (await client.runs(status="failed")).runs == [] or run_id not in [
            r.run_id for r in (await client.runs(status="failed")).runs
        ]
        assert run_id in [r.run_id for r in (await client.runs(status="completed")).runs]
        history = await client.history(run_id)
        b = {n.node: n for n in history.nodes}["b"]
        assert [(x.attempt, x.status) for x in b.attempts] == [
            (1, "retried"),
            (2, "failed"),
            (3, "completed"),
        ]
        assert [e["event"] for e in history.events] == ["started", "retried", "completed"]
        assert history.events[1]["ended"] == "failed"
        with pytest.raises(FlowcraftError, match="is completed: only a failed or cancelled"):
            await client.retry(run_id)
    finally:
        BROKEN.discard(run_id)
        await client.close()


async def test_retry_from_a_node_reruns_it_and_all_after_it(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    run_id = uuid.uuid4().hex
    BROKEN.add(run_id)
    try:
        async with Worker(REGISTRY, client.backends):
            await client.start(FLOW, {"x": 1}, run_id=run_id)
            assert (await client.result(run_id, 30)).status == "failed"
            BROKEN.discard(run_id)
            await client.retry(run_id, from_node="a")
            done = await client.result(run_id, 30)
        assert done.status == "completed"
        assert ran(run_id) == {"a": 2, "b": 3, "c": 1}
        assert done.outputs["a"]["attempt"] == 1  # run afresh: attempts start again
        b = {n.node: n for n in (await client.history(run_id)).nodes}["b"]
        assert [(x.superseded, x.attempt, x.status) for x in b.attempts] == [
            (1, 1, "retried"),
            (1, 2, "failed"),
            (None, 1, "completed"),
        ]
    finally:
        BROKEN.discard(run_id)
        await client.close()


async def test_a_cancelled_run_is_retried_from_what_did_not_run(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    try:
        run_id = await client.start(FLOW, {"x": 1})
        assert await client.cancel(run_id)
        assert await client.retry(run_id) == run_id
        async with Worker(REGISTRY, client.backends):
            done = await client.result(run_id, 30)
        assert done.status == "completed"
        assert ran(run_id) == {"a": 1, "b": 1, "c": 1}
    finally:
        await client.close()


async def test_retry_refusals_name_their_reason(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    run_id = uuid.uuid4().hex
    BROKEN.add(run_id)
    try:
        pending = await client.start(FLOW, {"x": 1})  # no worker yet: running
        with pytest.raises(FlowcraftError, match=f"run {pending} is running"):
            await client.retry(pending)
        with pytest.raises(RunNotFound, match="no run 'nope'"):
            await client.retry("nope")
        async with Worker(REGISTRY, client.backends):
            await client.start(FLOW, {"x": 1}, run_id=run_id)
            assert (await client.result(run_id, 30)).status == "failed"
        with pytest.raises(FlowcraftError, match="has no node 'zzz' \\(its nodes: a, b, c\\)"):
            await client.retry(run_id, from_node="zzz")
        # The pinned blueprint expired (as after run_ttl): a fresh client cannot retry.
        await client.coordination.delete(keys.blueprint_key(FLOW.digest()))
        other = Client(open_backends(backend_url))
        try:
            with pytest.raises(FlowcraftError, match=r"pinned blueprint 'three' .* has expired"):
                await other.retry(run_id)
        finally:
            await other.close()
        assert await client.status(run_id) == "failed"  # refused: nothing changed
    finally:
        BROKEN.discard(run_id)
        await client.close()


# -- through the CLI, with real worker processes ---------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("family", ["redis", "sqlite", "postgresql"])
def test_the_cli_contract_retries_a_failed_run_exactly(
    family: str, make_backend_url: Callable[[str], str], tmp_path: Path
) -> None:
    from procs import Procs, flowcraft, read_log, starts_per_node

    url = make_backend_url(family)
    fixed = tmp_path / "fixed"
    blueprint = tmp_path / "three.json"
    blueprint.write_text(
        json.dumps(
            {
                "id": "three-steps",
                "nodes": [
                    {"id": "a", "uses": "step", "params": {"add": 1}},
                    {"id": "b", "uses": "fixable", "params": {"add": 10, "fixed": str(fixed)}},
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
        key = f"k-{uuid.uuid4().hex}"
        first = cli("start", str(blueprint), "--input", '{"x": 1}', "--idempotency-key", key)
        run_id = first.stdout.strip().splitlines()[-1]
        again = cli("start", str(blueprint), "--input", '{"x": 1}', "--idempotency-key", key)
        assert again.stdout.strip().splitlines()[-1] == run_id
        failed = last(cli("wait", run_id, "--timeout", "60", "--json", code=1))
        assert failed["status"] == "failed" and failed["error"]["node"] == "b"
        a_output = failed["outputs"]["a"]

        listed = last(cli("runs", "list", "--status", "failed", "--json"))
        assert [r["run_id"] for r in listed] == [run_id]
        assert list(listed[0]) == ["run_id", "flow", "status", "started", "finished"]
        assert listed[0]["flow"] == "three-steps" and listed[0]["finished"] is not None
        assert last(cli("runs", "list", "--flow", "other", "--json")) == []
        assert last(cli("runs", "list", "--since", "10m", "--json"))[0]["run_id"] == run_id
        shown = last(cli("runs", "show", run_id, "--json"))
        assert list(shown) == ["run_id", "flow", "status", "nodes", "events"]
        assert [n["node"] for n in shown["nodes"]] == ["a", "b"]
        b = shown["nodes"][1]
        assert list(b) == ["node", "instance", "attempts"]
        assert [list(x) for x in b["attempts"]] == [
            ["attempt", "status", "started", "finished", "error"]
        ]
        assert b["attempts"][0]["status"] == "failed"
        assert b["attempts"][0]["error"]["type"] == "RuntimeError"
        table = cli("runs", "show", run_id).stdout
        assert "fixable" not in table and "b" in table and "failed" in table
        assert run_id in cli("runs", "list").stdout

        # Refusals: an unknown run, an unknown node, then a completed run.
        assert "no run 'nope'" in cli("retry", "nope", code=1).stderr
        assert "has no node 'zz'" in cli("retry", run_id, "--from", "zz", code=1).stderr
        assert "no run 'nope'" in cli("runs", "show", "nope", code=1).stderr

        fixed.touch()  # the fix
        done = last(cli("retry", run_id, "--wait", "--timeout", "60", "--json"))
        assert done["run_id"] == run_id and done["status"] == "completed", done
        assert done["outputs"]["a"] == a_output
        assert done["outputs"]["c"]["value"] == 112
        refused = cli("retry", run_id, code=1)
        assert "is completed" in refused.stderr and len(refused.stderr.splitlines()) == 1

    per_node = starts_per_node(read_log(log))
    assert per_node[(run_id, "a")] == 1
    assert per_node[(run_id, "b")] == 2  # once more after the fix
    assert per_node[(run_id, "c")] == 1
