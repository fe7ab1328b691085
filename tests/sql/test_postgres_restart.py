"""PostgreSQL restarted in the middle of runs: every run completes, exactly.

The test starts a PostgreSQL of its own (``initdb`` into a temporary directory, ``pg_ctl`` on a
free port), never the shared one, and restarts it while a worker of this process is busy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from proc_nodes import registry
from procs import SLOW_FLOW, results, step_blueprint, step_outputs

from flowcraft_core import Client, Worker, open_backends

BIN = Path(os.environ.get("FLOWCRAFT_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(*args: str) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return list(args)


class PrivatePostgres:
    def __init__(self, root: Path, port: int) -> None:
        self.data = root / "data"
        self.port = port
        self.log = root / "postgres.log"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        self.ctl("-w", "-o", options, "start")

    def restart(self) -> None:
        self.ctl("-w", "-m", "fast", "stop")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (BIN / "initdb").exists():
        pytest.fail(
            f"this test starts a PostgreSQL of its own and needs its programs in {BIN} "
            "(apt-get install postgresql-15, or set FLOWCRAFT_TEST_PG_BIN)",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="flowcraft-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PrivatePostgres(root, _free_port())
    subprocess.run(
        _as_postgres(str(BIN / "initdb"), "-D", str(server.data), "-U", "postgres", "-A", "trust"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    server.start()
    try:
        yield server
    finally:
        subprocess.run(
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(server.data), "-m", "immediate", "stop"),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_runs_complete_across_a_postgres_restart(private_postgres: PrivatePostgres) -> None:
    url = private_postgres.url + "?lease=3"
    flow = step_blueprint("restart", SLOW_FLOW, delay=0.2)
    backends = open_backends(url)
    client = Client(backends)
    worker = Worker(registry, backends, concurrency=8)
    async with worker:
        run_ids = [await client.start(flow, {"x": x}) for x in range(20)]
        await asyncio.sleep(1.0)  # some nodes committed, others in flight
        await asyncio.to_thread(private_postgres.restart)
        got = await results(client, run_ids, 180)
    await client.close()
    await backends.close()
    for x, result in enumerate(got):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(SLOW_FLOW, x)
