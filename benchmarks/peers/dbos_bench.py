"""DBOS Transact (pip ``dbos``) for `make bench-peers` (run with .bench/venv's Python).

``python -m benchmarks.peers.dbos_bench SYSTEM_DB_URL SCHEMA SHAPE SIZE RUNS``: one process of
a DBOS application. chain-N is one workflow of N sequential steps; fanout-N is one step, N
steps at once (asyncio.gather) and one more step (N + 2 steps, as our fanout-N). It launches,
prints ``ready``, waits for a line on stdin, runs R workflows at once, and prints one JSON
line with its wall-clock start and end (the orchestrator runs two such processes at once, as
we run two workers).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from dbos import DBOS, DBOSConfig


@DBOS.step()
async def noop() -> None:
    return None


@DBOS.workflow()
async def chain_wf(size: int) -> None:
    for _ in range(size):
        await noop()


@DBOS.workflow()
async def fanout_wf(size: int) -> None:
    await noop()
    await asyncio.gather(*(noop() for _ in range(size)))
    await noop()


async def measure(shape: str, size: int, runs: int) -> dict[str, Any]:
    wf = chain_wf if shape == "chain" else fanout_wf

    async def one() -> float:
        t0 = time.perf_counter()
        handle = await DBOS.start_workflow_async(wf, size)
        await handle.get_result()
        return (time.perf_counter() - t0) * 1000

    await asyncio.gather(*(one() for _ in range(min(runs, 4))))  # warm-up
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    started = time.time()
    latencies = await asyncio.gather(*(one() for _ in range(runs)))
    return {"started": started, "ended": time.time(), "latencies": list(latencies)}


def main(url: str, schema: str, shape: str, size: int, runs: int) -> None:
    config: DBOSConfig = {
        "name": "flowcraft-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    if url.startswith("postgres"):
        config["dbos_system_schema"] = schema
    DBOS(config=config)
    DBOS.launch()
    try:
        out = asyncio.run(measure(shape, size, runs))
    finally:
        DBOS.destroy()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
