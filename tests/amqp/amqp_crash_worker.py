"""A worker process for the crash test: ``python amqp_crash_worker.py URL``.

It consumes the RabbitMQ queue at ``URL`` with a handler that prints each job's run id and then
blocks forever, so the test can kill it while it holds a job.
"""

from __future__ import annotations

import asyncio
import sys

from flowcraft_amqp.queue import AmqpQueue
from flowcraft_core.protocols import Job


async def main(url: str) -> None:
    queue = AmqpQueue(url)

    async def hold(job: Job) -> None:
        print(job.run_id, flush=True)
        await asyncio.Event().wait()

    await queue.consume(hold, concurrency=1)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
