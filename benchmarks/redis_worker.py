"""A benchmark worker process: the flowcraft worker with counters, run as
``python -m benchmarks.redis_worker URL CONCURRENCY STATS_FILE``, for any backend URL.

Round trips to Redis are counted at redis-py's asyncio client (every command, script or
pipeline is one) and at the driver's own script calls; the queue's own traffic goes through
Dramatiq's synchronous client and is not counted. On SQL, every statement and transaction of
the worker (the queue's and the polls' included) is counted at SQLAlchemy's engine events. On
SIGTERM it writes its counts and peak RSS to STATS_FILE as JSON.
"""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import sys
from typing import Any

import redis.asyncio.client as aclient

from benchmarks.shapes import registry
from flowcraft_core.drivers import open_backends
from flowcraft_core.engine import EngineSettings
from flowcraft_core.worker import Worker
from flowcraft_redis.connection import _Batches

COUNTS = {"round_trips": 0, "messages": 0, "statements": 0, "transactions": 0}


def _count_round_trips() -> None:
    execute_command: Any = aclient.Redis.execute_command
    pipeline_execute: Any = aclient.Pipeline.execute

    async def counted_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["round_trips"] += 1
        return await execute_command(self, *args, **kwargs)

    async def counted_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["round_trips"] += 1
        return await pipeline_execute(self, *args, **kwargs)

    # The driver's scripts go out in batches on a pooled connection (connection._Batches), not
    # through execute_command: each batch's write and reads are one round trip.
    exchange: Any = _Batches._exchange

    async def counted_exchange(*args: Any, **kwargs: Any) -> Any:
        COUNTS["round_trips"] += 1
        return await exchange(*args, **kwargs)

    aclient.Redis.execute_command = counted_command  # type: ignore[method-assign]
    aclient.Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
    _Batches._exchange = staticmethod(counted_exchange)  # type: ignore[method-assign]


def _count_statements() -> None:
    """Count SQL statements and transactions (every engine of this process): each statement
    is at least one round trip, and so are a transaction's BEGIN and COMMIT."""
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
    except ModuleNotFoundError:  # the SQL extra is not installed: nothing to count
        return

    def statement(*_args: Any) -> None:
        COUNTS["statements"] += 1

    def transaction(*_args: Any) -> None:
        COUNTS["transactions"] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Engine, "begin", transaction)


def count_messages(queue: Any) -> None:
    """Count the jobs ``queue`` (any driver's queue object) enqueues."""
    enqueue, enqueue_many = queue.enqueue, queue.enqueue_many

    async def one(job: Any, *, delay: float = 0.0) -> None:
        COUNTS["messages"] += 1
        await enqueue(job, delay=delay)

    async def many(jobs: Any, *, delay: float = 0.0) -> None:
        COUNTS["messages"] += len(jobs)
        await enqueue_many(jobs, delay=delay)

    queue.enqueue = one
    queue.enqueue_many = many


async def serve(url: str, concurrency: int, stats_file: str) -> None:
    _count_round_trips()
    _count_statements()
    backends = open_backends(url)
    count_messages(backends.queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Tuned as a CLI worker is, by FLOWCRAFT_<SETTING> variables (none: the defaults).
    settings = EngineSettings.from_env()
    async with Worker(registry, backends, concurrency=concurrency, settings=settings):
        ready = resource.getrusage(resource.RUSAGE_SELF)
        print("ready", flush=True)
        await stop.wait()
        done = resource.getrusage(resource.RUSAGE_SELF)
    await backends.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # CPU from ready to stop (start-up excluded): on a shared machine a steadier measure of
    # what a node costs this process than nodes/s.
    cpu = done.ru_utime + done.ru_stime - ready.ru_utime - ready.ru_stime
    with open(stats_file, "w") as out:
        json.dump({**COUNTS, "rss_mb": round(rss, 1), "cpu_s": round(cpu, 3)}, out)


if __name__ == "__main__":
    import os

    profile = os.environ.get("FLOWCRAFT_BENCH_PROFILE")
    if profile:  # one profile per worker process, for finding what dominates
        import cProfile

        cProfile.run(
            "asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))",
            f"{profile}.{os.getpid()}",
        )
    else:
        asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
