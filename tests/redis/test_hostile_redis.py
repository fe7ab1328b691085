"""What broke the Redis driver or its workers, each now a clear error or correct behaviour:
node code raising BaseExceptions in real worker processes, a worker with a never-ending node
that must stop on a second signal, a fan-in wider than Lua's unpack(), bad URL parameters."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from procs import Procs, child_env, flowcraft, read_log, wait_until

from flowcraft_core import Blueprint, Client, NodeContext, Registry, Worker, open_backends

RAISED = ["KeyboardInterrupt", "SystemExit", "GeneratorExit", "CancelledError", "custom"]


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_base_exceptions_from_node_code_fail_the_attempt_and_workers_live(
    make_url: Callable[..., str], tmp_path: Path, sync: bool
) -> None:
    url = make_url()
    log = tmp_path / "exec.log"
    uses = "sync_raiser" if sync else "raiser"
    flows = {
        kind: Blueprint.from_dict(
            {
                "id": f"raise-{kind}",
                "nodes": [
                    {"id": "r", "uses": uses, "params": {"kind": kind}, "config": {"maxRetries": 2}}
                ],
            }
        )
        for kind in RAISED
    }
    after = Blueprint.from_dict({"id": "after", "nodes": [{"id": "s", "uses": "step"}]})
    with Procs(tmp_path, log) as procs:
        workers = [procs.worker(url, concurrency=2) for _ in range(2)]
        client = Client(url)
        try:
            run_ids = {kind: await client.start(flow) for kind, flow in flows.items()}
            failed = {k: await client.result(r, timeout=30) for k, r in run_ids.items()}
            later = [await client.result(await client.start(after, {"x": i}), 30) for i in range(4)]
        finally:
            await client.close()
        alive = [w.popen.poll() is None for w in workers]
        stderr = procs.stderr()
    assert alive == [True, True], stderr
    for kind, result in failed.items():
        assert result.status == "failed", (kind, result)
        assert result.error is not None
        assert result.error["type"] == ("NodeBaseException" if kind == "custom" else kind)
    assert [r.status for r in later] == ["completed"] * 4
    started = [(e.run, e.attempt) for e in read_log(log) if e.phase == "start" and e.node == "r"]
    # Each attempt ran once: nothing was redelivered as a poison message.
    assert sorted(started) == sorted((r, a) for r in run_ids.values() for a in (1, 2))


@pytest.mark.parametrize("uses", ["forever", "sync_forever"])
async def test_a_second_sigterm_stops_a_worker_with_a_never_ending_node(
    make_url: Callable[..., str], tmp_path: Path, uses: str
) -> None:
    url = make_url()
    log = tmp_path / "exec.log"
    flow = Blueprint.from_dict({"id": "forever", "nodes": [{"id": "f", "uses": uses}]})
    with Procs(tmp_path, log) as procs:
        first = procs.worker(url, concurrency=2)
        client = Client(url)
        try:
            run_id = await client.start(flow)
            wait_until(lambda: len(read_log(log)) == 1, 20, "the node to start")
            first.signal(signal.SIGTERM)
            await asyncio.sleep(1.5)
            assert first.popen.poll() is None, "the first signal drains: the node never ends"
            stopped_at = time.monotonic()
            first.signal(signal.SIGTERM)
            first.wait(timeout=15)
            took = time.monotonic() - stopped_at
            # Handed back, the job is redelivered: another worker starts the node again.
            procs.worker(url, concurrency=2)
            wait_until(lambda: len(read_log(log)) == 2, 30, "the redelivered node to start")
            status = await client.status(run_id)
        finally:
            await client.close()
        stderr = first.stderr()
    assert took < 10, stderr
    assert "stopping now" in stderr
    assert "Traceback" not in stderr
    assert status == "running"
    pids = [e.pid for e in read_log(log)]
    assert pids[0] == first.pid and pids[1] != first.pid


async def test_a_fan_in_wider_than_luas_unpack_completes(make_url: Callable[..., str]) -> None:
    width = 10_000  # the documented limit; run_load.lua unpack()ed one field per predecessor

    async def one(ctx: NodeContext) -> int:
        return 1

    async def total(ctx: NodeContext) -> int:
        return sum(ctx.input.values())

    nodes = [{"id": "s", "uses": "one"}, {"id": "j", "uses": "total"}]
    nodes += [{"id": f"b{i}", "uses": "one"} for i in range(width)]
    edges = [{"source": "s", "target": f"b{i}"} for i in range(width)]
    edges += [{"source": f"b{i}", "target": "j"} for i in range(width)]
    flow = Blueprint.from_dict({"id": "wide", "nodes": nodes, "edges": edges})
    backends = open_backends(make_url())
    worker = Worker(Registry({"one": one, "total": total}), backends, concurrency=16)
    client = Client(backends)
    async with worker:
        result = await client.result(await client.start(flow), timeout=240)
    await backends.close()
    assert result.status == "completed", result.error
    assert result.outputs["j"] == width


@pytest.mark.parametrize(
    ("query", "named"),
    [("max_connections=-5", "max_connections"), ("retention=5s", "FLOWCRAFT_RETENTION")],
)
def test_bad_url_parameters_exit_2(redis_server: str, query: str, named: str) -> None:
    joiner = "&" if "?" in redis_server else "?"
    proc = flowcraft(
        "status", "nope", "--backend", f"{redis_server}{joiner}{query}", env=child_env()
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert named in proc.stderr and "Traceback" not in proc.stderr


async def test_starts_survive_client_kill_and_create_each_run_once(
    make_url: Callable[..., str],
) -> None:
    import threading
    import uuid

    import redis

    from flowcraft_redis import parse_url

    url = make_url()
    name = f"fc-killed-{uuid.uuid4().hex[:8]}"
    client_url = f"{url}&client_name={name}"
    raw = redis.Redis.from_url(parse_url(url).url)
    stop = threading.Event()
    kills = 0

    def monkey() -> None:
        # Kills only this test's client connections (by name), never anyone else's.
        nonlocal kills
        while not stop.wait(0.01):
            for conn in raw.client_list():
                if conn.get("name") == name:
                    try:
                        raw.client_kill_filter(_id=conn["id"])
                        kills += 1
                    except redis.ResponseError:
                        pass  # already gone

    async def one(ctx: NodeContext) -> int:
        return int(ctx.input["i"])

    flow = Blueprint.from_dict({"id": "killed", "nodes": [{"id": "a", "uses": "one"}]})
    backends = open_backends(url)
    client = Client(client_url)
    thread = threading.Thread(target=monkey, daemon=True)
    thread.start()
    try:
        run_ids = [await client.start(flow, {"i": i}) for i in range(40)]
    finally:
        stop.set()
        thread.join()
        await client.close()
    worker = Worker(Registry({"one": one}), backends, concurrency=8)
    follower = Client(backends)
    async with worker:
        results = [await follower.result(r, timeout=30) for r in run_ids]
    stored = [k for k in raw.scan_iter(match=f"{parse_url(url).prefix}:ctx:*", count=1000)]
    raw.close()
    await backends.close()
    assert kills > 0, "the monkey never killed a connection: the test proves nothing"
    assert len(set(run_ids)) == 40
    assert [r.outputs["a"] for r in results] == list(range(40))
    assert len(stored) == 40  # one context per run: no start stored a second run
