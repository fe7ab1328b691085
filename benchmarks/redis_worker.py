"""A benchmark worker process: the flowcraft worker with counters, run as
``python -m benchmarks.redis_worker URL CONCURRENCY STATS_KEY``.

Round trips to Redis are counted at redis-py's asyncio client (every command, script or
pipeline is one); the queue's own traffic goes through Dramatiq's synchronous client and is
not counted. On SIGTERM it writes its counts and peak RSS to the hash STATS_KEY.
"""

from __future__ import annotations

import asyncio
import resource
import signal
import sys
from typing import Any

import redis
import redis.asyncio.client as aclient

from benchmarks.shapes import registry
from flowcraft_core.drivers import open_backends
from flowcraft_core.worker import Worker
from flowcraft_redis.queue import RedisQueue

COUNTS = {"round_trips": 0, "messages": 0}


def _count_round_trips() -> None:
    execute_command: Any = aclient.Redis.execute_command
    pipeline_execute: Any = aclient.Pipeline.execute

    async def counted_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["round_trips"] += 1
        return await execute_command(self, *args, **kwargs)

    async def counted_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["round_trips"] += 1
        return await pipeline_execute(self, *args, **kwargs)

    aclient.Redis.execute_command = counted_command  # type: ignore[method-assign]
    aclient.Pipeline.execute = counted_pipeline  # type: ignore[method-assign]


def count_messages() -> None:
    """Count the jobs every RedisQueue of this process enqueues."""
    enqueue, enqueue_many = RedisQueue.enqueue, RedisQueue.enqueue_many

    async def one(self: Any, job: Any, *, delay: float = 0.0) -> None:
        COUNTS["messages"] += 1
        await enqueue(self, job, delay=delay)

    async def many(self: Any, jobs: Any, *, delay: float = 0.0) -> None:
        COUNTS["messages"] += len(jobs)
        await enqueue_many(self, jobs, delay=delay)

    RedisQueue.enqueue = one  # type: ignore[method-assign]
    RedisQueue.enqueue_many = many  # type: ignore[method-assign]


async def serve(url: str, concurrency: int, stats_key: str) -> None:
    _count_round_trips()
    count_messages()
    backends = open_backends(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with Worker(registry, backends, concurrency=concurrency):
        print("ready", flush=True)
        await stop.wait()
    await backends.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    client = redis.Redis.from_url(url.split("?")[0])
    client.hincrby(stats_key, "round_trips", COUNTS["round_trips"])
    client.hincrby(stats_key, "messages", COUNTS["messages"])
    client.hset(stats_key, f"rss:{id(client)}", f"{rss:.1f}")
    client.close()


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
