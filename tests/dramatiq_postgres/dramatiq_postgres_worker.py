"""A worker process for the crash test: ``python dramatiq_postgres_worker.py URL QUEUE``.

It consumes the queue with a handler that prints each job's run id and then blocks forever, so
the test can kill it while it holds a job.
"""

from __future__ import annotations

import asyncio
import sys

from flowcraft_core.protocols import Job
from flowcraft_dramatiq_postgres import PostgresDramatiqQueue, PostgresQueueSettings


async def main(url: str, name: str) -> None:
    queue = PostgresDramatiqQueue(PostgresQueueSettings(url=url, queue=name))

    async def hold(job: Job) -> None:
        print(job.run_id, flush=True)
        await asyncio.Event().wait()

    await queue.consume(hold, concurrency=1)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
