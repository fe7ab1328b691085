"""A worker process for the crash test: ``python crash_worker.py URL REPORT_KEY``.

It consumes the queue at ``URL`` with a handler that pushes each job's run id onto the Redis
list ``REPORT_KEY`` and then blocks forever, so the test can kill it while it holds a job.
"""

from __future__ import annotations

import asyncio
import sys

import redis

from flowcraft_core.protocols import Job
from flowcraft_redis import RedisQueue, parse_url


async def main(url: str, report: str) -> None:
    reporter = redis.Redis.from_url(parse_url(url).url)
    queue = RedisQueue(url)

    async def hold(job: Job) -> None:
        await asyncio.to_thread(reporter.rpush, report, job.run_id)
        await asyncio.Event().wait()

    await queue.consume(hold, concurrency=1)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
