"""Recovery from a worker that dies holding a job, with a real process and SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowcraft_amqp.driver import flowcraft_driver_info
from flowcraft_amqp.queue import AmqpQueue
from flowcraft_core.protocols import Job

pytestmark = pytest.mark.slow  # worker processes, seconds of waiting by design

WORKER = Path(__file__).with_name("amqp_crash_worker.py")


async def test_a_killed_workers_job_is_redelivered_within_the_bound(
    queue: AmqpQueue, amqp_url: str
) -> None:
    bound = flowcraft_driver_info().capabilities["redelivery_after_crash_s"]
    assert queue.settings.redelivery_bound == bound  # the test URL keeps the defaults
    await queue.enqueue(Job("victim", "n", "f"))
    got: list[tuple[Job, float]] = []

    async def handle(job: Job) -> None:
        got.append((job, time.monotonic()))

    worker = subprocess.Popen(
        [sys.executable, str(WORKER), amqp_url], stdout=subprocess.PIPE, text=True
    )
    survivor = None
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 30)
        assert line.strip() == "victim", "the worker process never got the job"
        # A consumer that runs alongside a live worker must not take its job ...
        survivor = await queue.consume(handle, concurrency=2)
        await asyncio.sleep(1.0)
        assert got == []
        # ... but gets it once the worker is dead.
        killed = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.to_thread(worker.wait, 10)
        deadline = killed + bound + 5
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert got, f"the job was not redelivered within {bound + 5} s"
        elapsed = got[0][1] - killed
        print(f"redelivered {elapsed:.3f} s after SIGKILL (bound {bound} s)")
        assert got[0][0] == Job("victim", "n", "f")
        assert elapsed <= bound
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if survivor is not None:
            await survivor.stop()
    assert await queue.size() == 0
