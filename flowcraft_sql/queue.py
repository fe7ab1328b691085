"""The SQL queue: a jobs table with leases, on SQLite, PostgreSQL and MariaDB/MySQL alike.

A job is a row of ``{prefix}_jobs`` holding :meth:`Job.to_dict` as JSON, visible from its
``available_at``. A consumer *claims* due rows by moving ``available_at`` to the end of a lease
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB, so consumers never wait on each other;
SQLite's writers are serial anyway), renews the lease of running jobs every third of it, and
deletes a row only when its handler returned. So:

* a job whose handler raised is made due again after a backoff (100 ms doubling, at most 2 s);
* one cancelled by ``stop(drain=False)`` is made due at once;
* one whose worker died reappears by itself when its lease lapses (``lease`` seconds);
* a delay is an ``available_at`` in the future.

Consumers learn of new jobs at once within a process, by NOTIFY on PostgreSQL, and otherwise
by looking again every ``poll`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowcraft_core.protocols.queue import Handler, Job
from flowcraft_sql.database import Database, shared
from flowcraft_sql.url import SQLSettings, parse_url

log = logging.getLogger("flowcraft.sql.queue")

#: Longest backoff before a job whose handler raised is due again (seconds).
MAX_BACKOFF = 2.0


def backoff(deliveries: int) -> float:
    return min(MAX_BACKOFF, 0.1 * 2.0 ** max(0, deliveries - 1))


class SQLQueue:
    """Jobs delivered at least once, with delays, from a table (see the module docstring)."""

    def __init__(self, url: str | SQLSettings, *, database: Database | None = None) -> None:
        self.settings = parse_url(url) if isinstance(url, str) else url
        self.db = (database or shared(self.settings)).acquire()
        self.ns = self.settings.ns
        self._consumers: set[SQLConsumer] = set()
        self._closed = False

    # -- producing ----------------------------------------------------------------------------

    def rows(self, jobs: Sequence[Job], delay: float) -> list[dict[str, Any]]:
        due = time.time() + max(0.0, delay)
        return [
            {
                "ns": self.ns,
                "body": json.dumps(job.to_dict(), separators=(",", ":")),
                "available_at": due,
                "deliveries": 0,
            }
            for job in jobs
        ]

    async def insert_in(self, conn: AsyncConnection, jobs: Sequence[Job], delay: float) -> None:
        """Enqueue ``jobs`` inside ``conn``'s transaction; call :meth:`enqueued` after commit."""
        await conn.execute(self.db.tables.jobs.insert(), self.rows(jobs, delay))
        await self.db.notify(conn, "jobs", self.ns)

    def enqueued(self) -> None:
        self.db.wake_jobs(self.ns)

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        await self.enqueue_many([job], delay=delay)

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        """Enqueue ``jobs`` in one transaction: all of them or, on error, none."""
        if not jobs:
            return

        async def body(conn: AsyncConnection) -> None:
            await self.insert_in(conn, jobs, delay)

        await self.db.run(body)
        self.enqueued()

    # -- consuming ----------------------------------------------------------------------------

    async def claim(self, limit: int, owner: str) -> list[tuple[int, Job]]:
        """Up to ``limit`` due jobs, leased to ``owner``, oldest due first."""
        jobs = self.db.tables.jobs
        lease = self.settings.lease

        async def body(conn: AsyncConnection) -> list[tuple[int, Job]]:
            now = time.time()
            if self.db.family == "postgresql":
                return await self._claim_in_one(conn, limit, owner, now)
            query = (
                select(jobs.c.id, jobs.c.body)
                .where(jobs.c.ns == self.ns, jobs.c.available_at <= now)
                .order_by(jobs.c.available_at, jobs.c.id)
                .limit(limit)
            )
            if self.db.family != "sqlite":
                query = query.with_for_update(skip_locked=True)
            rows = list(await conn.execute(query))
            if not rows:
                return []
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_([r[0] for r in rows]))
                .values(
                    available_at=now + lease,
                    owner=owner,
                    deliveries=jobs.c.deliveries + 1,
                )
            )
            return [(int(i), Job.from_dict(json.loads(b))) for i, b in rows]

        return await self.db.run(body)

    async def _claim_in_one(
        self, conn: AsyncConnection, limit: int, owner: str, now: float
    ) -> list[tuple[int, Job]]:
        """PostgreSQL's claim in one statement (one round trip, not two): an UPDATE of the
        rows its subquery locks, RETURNING them. MySQL cannot update a table it selects
        from in a subquery, so it selects and then updates."""
        jobs = self.db.tables.jobs
        due = (
            select(jobs.c.id)
            .where(jobs.c.ns == self.ns, jobs.c.available_at <= now)
            .order_by(jobs.c.available_at, jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = await conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(due.scalar_subquery()))
            .values(
                available_at=now + self.settings.lease,
                owner=owner,
                deliveries=jobs.c.deliveries + 1,
            )
            .returning(jobs.c.id, jobs.c.body)
        )
        # RETURNING has no order: by id, which is the order of enqueueing.
        return [(int(i), Job.from_dict(json.loads(b))) for i, b in sorted(rows)]

    async def ack(self, ids: Sequence[int]) -> None:
        jobs = self.db.tables.jobs

        async def body(conn: AsyncConnection) -> None:
            await conn.execute(delete(jobs).where(jobs.c.id.in_(list(ids))))

        await self.db.run(body)

    async def retry_later(self, ids: Sequence[int], owner: str, *, after_error: bool) -> None:
        """Make jobs still leased to ``owner`` due again: after a backoff if their handler
        raised, at once if it was cancelled."""
        jobs = self.db.tables.jobs

        async def body(conn: AsyncConnection) -> None:
            now = time.time()
            if after_error:
                rows = await conn.execute(
                    select(jobs.c.id, jobs.c.deliveries).where(
                        jobs.c.id.in_(list(ids)), jobs.c.owner == owner
                    )
                )
                for job_id, deliveries in rows:
                    await conn.execute(
                        update(jobs)
                        .where(jobs.c.id == job_id)
                        .values(available_at=now + backoff(deliveries), owner=None)
                    )
            else:
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(list(ids)), jobs.c.owner == owner)
                    .values(available_at=now, owner=None)
                )
            await self.db.notify(conn, "jobs", self.ns)

        await self.db.run(body)
        self.enqueued()

    async def renew(self, ids: Sequence[int], owner: str) -> None:
        jobs = self.db.tables.jobs

        async def body(conn: AsyncConnection) -> None:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(list(ids)), jobs.c.owner == owner)
                .values(available_at=time.time() + self.settings.lease)
            )

        await self.db.run(body)

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> SQLConsumer:
        consumer = SQLConsumer(self, handler, concurrency)
        await consumer.start()
        self._consumers.add(consumer)
        return consumer

    def _forget(self, consumer: SQLConsumer) -> None:
        self._consumers.discard(consumer)

    # -- inspection ---------------------------------------------------------------------------

    async def size(self) -> int:
        """Jobs enqueued and not yet acknowledged: waiting, delayed or in flight."""
        jobs = self.db.tables.jobs

        async def body(conn: AsyncConnection) -> int:
            count = await conn.scalar(select(func.count()).where(jobs.c.ns == self.ns))
            return int(count or 0)

        return await self.db.run(body, write=False)

    async def purge(self) -> None:
        """Drop every job of this deployment's queue (tests and benchmarks)."""
        jobs = self.db.tables.jobs

        async def body(conn: AsyncConnection) -> None:
            await conn.execute(delete(jobs).where(jobs.c.ns == self.ns))

        await self.db.run(body)

    async def close(self) -> None:
        """Stop any consumer still running (draining), then release the connections."""
        for consumer in list(self._consumers):
            await consumer.stop()
        if not self._closed:
            self._closed = True
            await self.db.release()


class SQLConsumer:
    """Delivers the jobs of a :class:`SQLQueue` to ``handler`` on this event loop, at most
    ``concurrency`` at once. It claims only as many jobs as it can start, so a stop never
    strands a claimed job that had not started."""

    def __init__(self, queue: SQLQueue, handler: Handler, concurrency: int) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._running: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._cancelling = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        db = self.queue.db
        await db.engine()  # the schema, and a bad URL fails here rather than in the loop
        await db.listen()
        self._tasks = [
            asyncio.create_task(self._loop(), name="flowcraft-sql-consumer"),
            asyncio.create_task(self._heartbeat(), name="flowcraft-sql-heartbeat"),
        ]

    async def _loop(self) -> None:
        queue, settings = self.queue, self.queue.settings
        failures = 0
        with queue.db.job_event(queue.ns) as due:
            while not self._stopping:
                self._wake.clear()
                due.clear()
                free = self.concurrency - len(self._running)
                claimed: list[tuple[int, Job]] = []
                if free > 0:
                    try:
                        claimed = await queue.claim(free, self.owner)
                        failures = 0
                    except Exception as exc:
                        failures += 1
                        log.warning("claiming jobs from %s failed: %s", settings.display, exc)
                        await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                        continue
                    if self._stopping:
                        # Claimed while stopping: hand them straight back.
                        if claimed:
                            await queue.retry_later(
                                [i for i, _ in claimed], self.owner, after_error=False
                            )
                        break
                    for job_id, job in claimed:
                        self._running[job_id] = asyncio.create_task(self._run(job_id, job))
                if free > 0 and len(claimed) == free:
                    continue  # there may be more: look again before sleeping
                waits = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(due.wait()),
                ]
                try:
                    await asyncio.wait(waits, timeout=settings.poll, return_when="FIRST_COMPLETED")
                finally:
                    for w in waits:
                        w.cancel()
                if queue.db.push:
                    with contextlib.suppress(Exception):
                        await queue.db.listen()

    async def _run(self, job_id: int, job: Job) -> None:
        queue = self.queue
        try:
            try:
                await self.handler(job)
            except asyncio.CancelledError:
                if self._cancelling:
                    return  # stop(drain=False) hands these back
                raise
            except Exception:
                log.warning("handler raised for %s; retried later", job, exc_info=True)
                with contextlib.suppress(Exception):
                    await queue.retry_later([job_id], self.owner, after_error=True)
                return
            try:
                await queue.ack([job_id])
            except Exception as exc:
                # The lease lapses and the job is delivered again; the engine makes it a no-op.
                log.warning("acknowledging %s failed (%s): it will be delivered again", job, exc)
        finally:
            self._running.pop(job_id, None)
            self._wake.set()

    async def _heartbeat(self) -> None:
        every = self.queue.settings.lease / 3
        while True:
            await asyncio.sleep(every)
            ids = list(self._running)
            if ids:
                try:
                    await self.queue.renew(ids, self.owner)
                except Exception as exc:
                    log.warning("renewing job leases failed: %s", exc)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop claiming. With ``drain``, let running handlers finish; without, cancel them
        and make their jobs due again at once."""
        self._stopping = True
        self._wake.set()
        loop_task, heartbeat = self._tasks or (None, None)
        if loop_task is not None:
            await asyncio.gather(loop_task, return_exceptions=True)
        running = dict(self._running)
        if not drain:
            self._cancelling = True
            for task in running.values():
                task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
        if not drain and running:
            await self.queue.retry_later(list(running), self.owner, after_error=False)
        if heartbeat is not None:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
        self.queue._forget(self)
