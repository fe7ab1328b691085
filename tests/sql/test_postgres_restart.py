"""PostgreSQL restarted in the middle of runs: every run completes, exactly.

The test starts a PostgreSQL of its own (``initdb`` into a temporary directory, ``pg_ctl`` on a
free port), never the shared one, and restarts it while a worker of this process is busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from private_servers import PrivatePostgres
from proc_nodes import registry
from procs import SLOW_FLOW, results, step_blueprint, step_outputs

from flowcraft_core import Client, Worker, open_backends


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    missing = PrivatePostgres.missing()
    if missing is not None:
        pytest.fail(f"this test starts a PostgreSQL of its own: {missing}", pytrace=False)
    server = PrivatePostgres.create()
    server.start()
    try:
        yield server
    finally:
        server.destroy()


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
