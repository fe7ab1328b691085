"""Redis restarts under running workflows: a private ``redis-server`` with AOF persistence is
stopped (SIGTERM: it writes its AOF on shutdown) and started again on the same port and
directory while two ``flowcraft worker`` processes are mid-run. Every run must complete, with
exact outputs, and no node committed before the restart may run again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from procs import (
    EXAMPLE,
    FLOWCRAFT,
    REPO,
    SLOW_FLOW,
    Procs,
    child_env,
    committed,
    flowcraft,
    read_log,
    starts_per_node,
    step_blueprint,
    step_outputs,
    wait_until,
)

from flowcraft_core import Client, RunResult, open_backends
from flowcraft_core.errors import DriverError

# a private redis-server stopped and started under running workers
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class PrivateRedis:
    """A ``redis-server`` on ``port`` keeping an AOF (fsync always) in ``workdir``."""

    def __init__(self, exe: str, port: int, workdir: Path, extra: tuple[str, ...] = ()) -> None:
        self.exe = exe
        self.port = port
        self.workdir = workdir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                *self.extra,
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 10
        while not answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, as a service manager would; Redis flushes its AOF and exits."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(20) == 0

    def blocked_clients(self) -> int:
        """Clients blocked in a command (a waiter's ``BLMOVE``); this server is ours alone."""
        client = redis.Redis(port=self.port, socket_connect_timeout=2, socket_timeout=2)
        try:
            return int(client.info("clients")["blocked_clients"])
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("restarting Redis needs redis-server on PATH (apt-get install redis-server)")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = PrivateRedis(exe, free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def result_across_outages(client: Client, run_id: str, timeout: float) -> RunResult:
    """``client.result``, asked again when the connection drops (the client is not what is
    tested here: it sees the restart too)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"run {run_id} did not finish within {timeout} s"
        try:
            return await client.result(run_id, timeout=remaining)
        except (redis.ConnectionError, OSError, DriverError) as exc:
            print(f"client.result({run_id}) raised {type(exc).__name__}: {exc}; asking again")
            await asyncio.sleep(0.2)


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    "outage",
    [1.5, 7.0],
    ids=["short-outage", "outage-longer-than-the-heartbeat"],
)
async def test_runs_complete_across_a_redis_restart(
    private_redis: PrivateRedis, tmp_path: Path, outage: float
) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0?prefix=restart"
    log = tmp_path / "exec.log"
    flow = step_blueprint("slow", SLOW_FLOW, delay=0.2)

    with Procs(tmp_path, log) as procs:
        workers = [procs.worker(url, concurrency=4, ready=False) for _ in range(2)]
        for worker in workers:
            worker.wait_ready()
        client = Client(open_backends(url))
        try:
            run_ids = [await client.start(flow, {"x": x}) for x in range(10)]
            deadline = time.monotonic() + 30
            while sum(1 for e in read_log(log) if e.phase == "end") < 10:
                assert time.monotonic() < deadline, procs.stderr()
                await asyncio.sleep(0.02)

            before = committed(url, run_ids)
            private_redis.stop()
            # The workers notice: fetches, heartbeats and commits fail. After an outage longer
            # than the heartbeat timeout (5 s), each worker's heartbeat looks stale to the
            # other, whose maintenance hands its in-flight jobs out again: duplicates.
            await asyncio.sleep(outage)
            private_redis.start()
            print(f"restarted Redis with {len(before)} of {len(run_ids) * 7} nodes committed")
            assert committed(url, run_ids) >= before  # the AOF kept them

            got = [await result_across_outages(client, r, 120) for r in run_ids]
        finally:
            await client.close()
        alive = [w.popen.poll() is None for w in workers]
        assert all(alive), procs.stderr()

    for x, result in enumerate(got):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(SLOW_FLOW, x)
    per_node = starts_per_node(read_log(log))
    assert set(per_node) == {(r, n.id) for r in run_ids for n in SLOW_FLOW}
    assert all(per_node[key] == 1 for key in before), {k: per_node[k] for k in before}


@pytest.mark.timeout(120)
def test_flowcraft_wait_follows_a_run_across_a_redis_restart(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{private_redis.port}/0?prefix=waiter"
    started = flowcraft(
        "start", str(EXAMPLE), "--input", '{"order_id": "W-1", "items": []}', "--backend", url
    )
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    waiter = subprocess.Popen(
        [FLOWCRAFT, "wait", run_id, "--backend", url, "--timeout", "60", "--json"],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: private_redis.blocked_clients() > 0 or waiter.poll() is not None,
            30,
            "the waiter to block on the run's completion signal",
        )
        assert waiter.poll() is None, waiter.communicate()
        private_redis.stop()
        time.sleep(1.0)  # the outage the waiter must live through
        private_redis.start()
        with Procs(tmp_path) as procs:
            procs.worker(url, "examples.orders:registry", concurrency=2)
            out, err = waiter.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert waiter.returncode == 0, err
        data = json.loads(out.strip().splitlines()[-1])
        assert data["run_id"] == run_id
        assert data["status"] == "completed"
        assert data["outputs"]["reject"] == {
            "order_id": "W-1",
            "rejected": ["the order has no items"],
        }
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait(10)


@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill-9"])
async def test_a_pooled_connection_a_restart_broke_is_replaced_not_used(
    private_redis: PrivateRedis, kill: bool
) -> None:
    # The chaos soak's late re-runs: a connection idle in the pool across a restart failed the
    # next command it carried (a commit), seconds after the fault, so the node ran again.
    from flowcraft_redis.connection import HEALTH_CHECK_INTERVAL, async_client, sync_client
    from flowcraft_redis.url import parse_url

    settings = parse_url(f"redis://127.0.0.1:{private_redis.port}/0")
    client, blocking = async_client(settings), sync_client(settings)
    try:
        assert await client.incr("n") == 1  # each client now has an idle pooled connection
        assert blocking.incr("n") == 2
        private_redis.kill() if kill else private_redis.stop()
        private_redis.start()
        await asyncio.sleep(HEALTH_CHECK_INTERVAL + 0.2)
        # Sent once each, on a fresh connection: neither raises, neither is applied twice.
        assert await client.incr("n") == 3
        assert blocking.incr("n") == 4
    finally:
        await client.aclose()
        blocking.close()
