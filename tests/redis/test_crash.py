"""Recovery from a worker that dies holding a job, with a real process and SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from flowcraft_core.protocols import Job
from flowcraft_redis import RedisQueue
from flowcraft_redis.driver import flowcraft_driver_info

# a worker process killed, and waits as long as the redelivery bound
pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("crash_worker.py")


async def test_a_killed_workers_job_is_redelivered_within_the_bound(
    queue: RedisQueue, redis_url: str, raw: redis.Redis
) -> None:
    bound = flowcraft_driver_info().capabilities["redelivery_after_crash_s"]
    assert queue.settings.redelivery_bound == bound  # the test URL keeps the defaults
    report = f"{queue.settings.prefix}:test:started"
    await queue.enqueue(Job("victim", "n", "f"))

    got: list[tuple[Job, float]] = []

    async def handle(job: Job) -> None:
        got.append((job, time.monotonic()))

    worker = subprocess.Popen([sys.executable, str(WORKER), redis_url, report])
    survivor = None
    try:
        started = await asyncio.to_thread(raw.blpop, [report], 30)
        assert started is not None, "the worker process never got the job"
        # A consumer that runs alongside a live worker must not take its job ...
        survivor = await queue.consume(handle, concurrency=2)
        await asyncio.sleep(1.0)
        assert got == []
        # ... but gets it once the worker is dead.
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        killed = time.monotonic()
        deadline = killed + bound + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert got, f"the job was not redelivered within {bound + 5} s"
        elapsed = got[0][1] - killed
        print(f"redelivered {elapsed:.2f} s after SIGKILL (bound {bound} s)")
        assert got[0][0] == Job("victim", "n", "f")
        assert elapsed <= bound
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if survivor is not None:
            await survivor.stop()
    assert await queue.size() == 0


async def test_a_live_worker_holding_a_job_past_the_heartbeat_keeps_it(
    make_url: Callable[..., str],
) -> None:
    # heartbeat=1: a worker silent for 1 s is dead. This one is busy for 2.5 s, but alive.
    queue = RedisQueue(make_url(heartbeat=1))
    try:
        deliveries: list[str] = []

        async def slow(job: Job) -> None:
            deliveries.append("slow")
            await asyncio.sleep(2.5)

        async def other(job: Job) -> None:
            deliveries.append("other")

        holder = await queue.consume(slow, concurrency=1)
        await queue.enqueue(Job("r", "long", "f"))
        deadline = time.monotonic() + 5
        while not deliveries and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        bystander = await queue.consume(other, concurrency=1)
        await holder.stop()
        await bystander.stop()
        assert deliveries == ["slow"]
        assert await queue.size() == 0
    finally:
        await queue.close()
