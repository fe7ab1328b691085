"""The README's "Across processes on Redis" flow, scripted: a ``flowcraft worker`` subprocess,
and ``start`` / ``wait`` / ``status`` / ``resume`` / ``cancel`` / ``reconcile`` run as real
commands against a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from procs import (
    FLOWCRAFT,
    REPO,
    Procs,
    StepNode,
    child_env,
    flowcraft,
    read_log,
    step_blueprint,
    wait_until,
)

from flowcraft_core import Client, NodeContext, Registry, Worker, open_backends
from flowcraft_redis import RedisQueue

# `flowcraft` subprocesses: worker processes and a CLI call per step
pytestmark = pytest.mark.slow

EXAMPLE = "examples/order_fulfilment.json"
ORDERS = "examples.orders:registry"
SMALL = (REPO / "examples" / "order.json").read_text()
BIG = json.dumps({"order_id": "B-7", "items": [{"sku": "desk", "qty": 2, "price": 400}]})


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


RESULT_KEYS = ["run_id", "status", "outputs", "error", "context"]


def last_json(
    proc: subprocess.CompletedProcess[str], keys: list[str] = RESULT_KEYS
) -> dict[str, Any]:
    """The last stdout line as JSON, holding exactly ``keys`` in order (``run``/``wait``'s
    object by default; ``status --json`` adds the run's ``children``)."""
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    data: dict[str, Any] = json.loads(lines[-1])
    assert list(data) == keys, data
    return data


def start(url: str, order: str) -> str:
    proc = ok(flowcraft("start", EXAMPLE, "--input", order, "--backend", url))
    run_id = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{32}", run_id), proc.stdout
    return run_id


def status(url: str, run_id: str) -> str:
    return ok(flowcraft("status", run_id, "--backend", url)).stdout.strip()


def settle(url: str, run_id: str, timeout: float = 30) -> str:
    """The run's status once it is no longer running."""
    deadline = time.monotonic() + timeout
    while (now := status(url, run_id)) == "running":
        assert time.monotonic() < deadline, f"run {run_id} still running after {timeout} s"
        time.sleep(0.1)
    return now


@pytest.mark.timeout(150)
def test_the_three_terminal_flow(make_url: Callable[..., str], tmp_path: Path) -> None:
    url = make_url()
    with Procs(tmp_path) as procs:
        worker = procs.worker(url, ORDERS, concurrency=4)

        # A small order completes; `wait --json` prints what `run --json` prints.
        run_id = start(url, SMALL)
        waited = last_json(
            ok(flowcraft("wait", run_id, "--backend", url, "--timeout", "30", "--json"))
        )
        local = last_json(
            ok(flowcraft("run", EXAMPLE, "--registry", ORDERS, "--input", SMALL, "--json"))
        )
        assert waited["run_id"] == run_id
        assert waited["status"] == "completed"
        assert waited["error"] is None
        assert {**waited, "run_id": None} == {**local, "run_id": None}
        assert status(url, run_id) == "completed"
        ok(flowcraft("status", run_id, "--backend", url, "--json"))

        # An order over 500 waits for a manager; FLOWCRAFT_BACKEND works as --backend does.
        env = child_env(FLOWCRAFT_BACKEND=url)
        started = ok(flowcraft("start", EXAMPLE, "--input", BIG, env=env))
        big = started.stdout.strip().splitlines()[-1]
        assert settle(url, big) == "awaiting"
        parked = last_json(ok(flowcraft("wait", big, "--timeout", "30", "--json", env=env), 1))
        assert parked["status"] == "awaiting"
        assert "ship" not in parked["outputs"]
        resumed = ok(
            flowcraft(
                "resume",
                big,
                "--action",
                "approve",
                "--output",
                '{"approved_by": "maria"}',
                "--backend",
                url,
            )
        )
        assert "manager_approval" in resumed.stdout
        done = last_json(ok(flowcraft("wait", big, "--timeout", "30", "--json", env=env)))
        assert done["status"] == "completed"
        assert done["outputs"]["manager_approval"] == {"approved_by": "maria"}
        assert done["outputs"]["ship"] == {"status": "shipped", "approved_by": "maria"}
        assert "auto_approve" not in done["outputs"]

        # Cancelling an awaiting run.
        doomed = start(url, BIG)
        assert settle(url, doomed) == "awaiting"
        cancelled = ok(flowcraft("cancel", doomed, "--backend", url))
        assert f"cancelled {doomed}" in cancelled.stdout
        assert status(url, doomed) == "cancelled"
        final = last_json(
            ok(flowcraft("wait", doomed, "--backend", url, "--timeout", "10", "--json"), 1)
        )
        assert final["status"] == "cancelled"
        again = ok(flowcraft("cancel", doomed, "--backend", url), 1)
        assert "already finished" in again.stderr
        late = ok(flowcraft("resume", doomed, "--action", "approve", "--backend", url), 1)
        assert "cancelled" in late.stderr
        assert (
            "ship"
            not in last_json(
                ok(flowcraft("status", doomed, "--backend", url, "--json")),
                [*RESULT_KEYS, "children"],
            )["outputs"]
        )

        # Reconcile is always safe.
        swept = ok(flowcraft("reconcile", "--backend", url, "--older-than", "0"))
        assert "reconciled" in swept.stderr
        assert worker.popen.poll() is None, worker.stderr()


@pytest.mark.timeout(60)
def test_a_run_that_does_not_finish_in_time_exits_1_with_its_snapshot(
    make_url: Callable[..., str],
) -> None:
    url = make_url()  # no worker: the run never progresses
    run_id = start(url, SMALL)
    proc = ok(flowcraft("wait", run_id, "--backend", url, "--timeout", "0.5", "--json"), 1)
    data = last_json(proc)
    assert data["status"] == "running"
    assert data["error"]["type"] == "Timeout"
    assert "did not finish within 0.5 s" in proc.stderr


SLOW_NODES = """
import asyncio


async def slow(ctx):
    await asyncio.sleep(30)
    return "late"


registry = {"slow": slow}
"""


@pytest.mark.timeout(90)
async def test_run_on_redis_gives_up_on_time_and_hands_the_node_back(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    (tmp_path / "fc_slow_nodes.py").write_text(SLOW_NODES)
    (tmp_path / "slow.json").write_text(
        json.dumps({"id": "slow", "nodes": [{"id": "s", "uses": "slow"}]})
    )
    env = child_env(PYTHONPATH=f"{tmp_path}{os.pathsep}{child_env()['PYTHONPATH']}")
    started = time.monotonic()
    proc = flowcraft(
        "run", str(tmp_path / "slow.json"), "--registry", "fc_slow_nodes:registry",
        "--backend", url, "--timeout", "0.5", "--json", env=env,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    ok(proc, 1)
    data = last_json(proc)
    assert data["status"] == "running"
    assert data["outputs"] == {}
    assert elapsed < 20, elapsed  # the node sleeps 30 s: nobody waited for it
    # Nothing of the cancelled attempt was committed, and its job went back to the queue: a
    # worker with a quick implementation finishes the very same run.

    async def quick(ctx: NodeContext) -> str:
        return "quick"

    backends = open_backends(url)
    try:
        client = Client(backends)
        assert (await client.snapshot(data["run_id"])).outputs == {}
        async with Worker(Registry({"slow": quick}), backends):
            result = await client.result(data["run_id"], timeout=30)
    finally:
        await backends.close()
    assert result.status == "completed", result.error
    assert result.outputs == {"s": "quick"}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "command",
    [
        ["status", "0123456789abcdef"],
        ["wait", "0123456789abcdef", "--timeout", "5"],
        ["cancel", "0123456789abcdef"],
        ["resume", "0123456789abcdef", "--action", "approve"],
    ],
)
def test_an_unknown_run_id_is_a_clear_error(
    make_url: Callable[..., str], command: list[str]
) -> None:
    url = make_url()
    proc = flowcraft(*command, "--backend", url)
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no run '0123456789abcdef'" in lines[0]


UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "command",
    [
        ["start", EXAMPLE, "--input", SMALL],
        ["worker", "--registry", ORDERS],
        ["wait", "0123456789abcdef", "--timeout", "5"],
        ["status", "0123456789abcdef"],
        ["reconcile"],
    ],
    ids=lambda c: c[0],
)
def test_an_unreachable_redis_is_one_line_naming_the_url(command: list[str]) -> None:
    proc = flowcraft(*command, "--backend", UNREACHABLE, timeout=30)
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert UNREACHABLE in lines[0]
    assert lines[0].startswith("error: ")


@pytest.mark.timeout(60)
def test_cancel_stops_a_running_run(make_url: Callable[..., str], tmp_path: Path) -> None:
    url = make_url()
    log = tmp_path / "exec.log"
    gate = tmp_path / "gate"
    # a is held at its gate until the run is cancelled: the cancel cannot come too late.
    chain = (
        StepNode("a", 1, uses="gated", params={"gate": str(gate)}),
        StepNode("b", 1, ("a",)),
        StepNode("c", 1, ("b",)),
    )
    blueprint = tmp_path / "chain.json"
    blueprint.write_text(step_blueprint("chain", chain).to_json())
    with Procs(tmp_path, log) as procs:
        procs.worker(url, concurrency=2)
        started = ok(flowcraft("start", str(blueprint), "--input", '{"x": 1}', "--backend", url))
        run_id = started.stdout.strip().splitlines()[-1]
        wait_until(lambda: any(e.node == "a" for e in read_log(log)), 20, "node a to start")
        assert status(url, run_id) == "running"
        ok(flowcraft("cancel", run_id, "--backend", url))
        gate.touch()
        wait_until(lambda: any(e.phase == "end" for e in read_log(log)), 20, "node a to end")
        # Once a's job is acknowledged its worker is done with it: a successor it continued
        # with would be in the log, one it enqueued would be in the queue.
        wait_until(lambda: queue_size(url) == 0, 20, "a's job to be acknowledged")
        assert status(url, run_id) == "cancelled"
        final = last_json(ok(flowcraft("wait", run_id, "--backend", url, "--json"), 1))
    assert final["status"] == "cancelled"
    assert "b" not in final["outputs"]
    assert [e.node for e in read_log(log) if e.phase == "start"] == ["a"]


def queue_size(url: str) -> int:
    """Jobs enqueued and not yet acknowledged (waiting, delayed or in flight)."""

    async def go() -> int:
        queue = RedisQueue(url)
        try:
            return await queue.size()
        finally:
            await queue.close()

    return asyncio.run(go())


def purge(url: str) -> None:
    """Lose every queued job, as a flushed or failed-over Redis might."""

    async def go() -> None:
        queue = RedisQueue(url)
        try:
            await queue.purge()
            assert await queue.size() == 0
        finally:
            await queue.close()

    asyncio.run(go())


@pytest.mark.timeout(60)
def test_flowcraft_reconcile_revives_a_run_whose_jobs_were_lost(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    run_id = start(url, SMALL)
    purge(url)
    with Procs(tmp_path) as procs:
        procs.worker(url, ORDERS, concurrency=2)  # no sweeper
        time.sleep(1.0)
        assert status(url, run_id) == "running"  # nothing left to deliver
        young = ok(flowcraft("reconcile", "--backend", url, "--older-than", "3600"))
        assert run_id not in young.stdout
        swept = ok(flowcraft("reconcile", "--backend", url, "--older-than", "0"))
        assert swept.stdout.split() == [run_id]
        assert "reconciled 1 run(s)" in swept.stderr
        done = last_json(
            ok(flowcraft("wait", run_id, "--backend", url, "--timeout", "30", "--json"))
        )
    assert done["status"] == "completed"
    assert done["outputs"]["ship"] == {"status": "shipped", "approved_by": "policy"}


@pytest.mark.timeout(60)
def test_a_workers_sweeper_revives_a_run_whose_jobs_were_lost(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    run_id = start(url, SMALL)
    purge(url)
    with Procs(tmp_path) as procs:
        procs.worker(url, ORDERS, concurrency=2, reconcile_every=0.5, stale_after=1.0)
        done = last_json(
            ok(flowcraft("wait", run_id, "--backend", url, "--timeout", "30", "--json"))
        )
    assert done["status"] == "completed"


@pytest.mark.timeout(90)
def test_worker_processes_stop_together_on_sigterm(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    url = make_url()
    err = tmp_path / "worker.stderr"
    children: list[int] = []
    with err.open("wb") as sink:
        parent = subprocess.Popen(
            [FLOWCRAFT, "worker", "--registry", ORDERS, "--backend", url, "--processes", "2"],
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        ready = re.compile(r"flowcraft worker (\d+) ready")
        wait_until(lambda: len(ready.findall(err.read_text())) == 2, 30, "two worker processes")
        children = [int(pid) for pid in ready.findall(err.read_text())]
        assert parent.pid not in children
        run_ids = [start(url, SMALL) for _ in range(4)]
        for run_id in run_ids:
            done = last_json(
                ok(flowcraft("wait", run_id, "--backend", url, "--timeout", "30", "--json"))
            )
            assert done["status"] == "completed"
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(30) == 0, err.read_text()
        for pid in children:
            assert not Path(f"/proc/{pid}").exists(), f"worker process {pid} outlived its parent"
        assert err.read_text().count("stopping: finishing in-flight jobs") == 2
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_start_with_a_context_on_worker_processes(
    make_url: Callable[..., str], tmp_path: Path
) -> None:
    """``flowcraft start --context``: the initial context reaches node code, ``inputs`` and
    conditions on another process (a Flowcraft case: conditions on a context key)."""
    url = make_url()
    blueprint = tmp_path / "ctx.json"
    blueprint.write_text(
        json.dumps(
            {
                "id": "ctx",
                "nodes": [
                    {"id": "first", "uses": "passthrough", "inputs": "input"},
                    {"id": "big", "uses": "read", "params": {"key": "tenant"}},
                    {"id": "small", "uses": "read", "params": {"key": "tenant"}},
                ],
                "edges": [
                    {"source": "first", "target": "big", "condition": "limit < first.n"},
                    {"source": "first", "target": "small", "condition": "!(limit < first.n)"},
                ],
            }
        )
    )
    context = json.dumps({"input": {"n": 7}, "tenant": "acme", "limit": 5})
    with Procs(tmp_path) as procs:
        procs.worker(url, "flowcraft_conformance.scenarios:REGISTRY", concurrency=2)
        started = ok(flowcraft("start", str(blueprint), "--context", context, "--backend", url))
        run_id = started.stdout.strip().splitlines()[-1]
        final = last_json(ok(flowcraft("wait", run_id, "--backend", url, "--json")))
    assert final["status"] == "completed", final
    assert final["outputs"] == {"first": {"n": 7}, "big": "acme"}
    assert final["context"] == {"input": {"n": 7}, "tenant": "acme", "limit": 5}
