"""dramatiq-postgres through the shared glue: a SIGKILLed worker's job comes back within the
declared bound, a delay longer than that bound arrives once and on time across a consumer
restart, jobs are JSON rows, and a refused connection is a one-line error."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flowcraft_core.errors import DriverError
from flowcraft_core.protocols import Job
from flowcraft_dramatiq_postgres import (
    PostgresDramatiqQueue,
    PostgresQueueSettings,
    libpq_url,
    queue_name,
)

WORKER = Path(__file__).with_name("dramatiq_postgres_worker.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def queue(postgres: str) -> AsyncIterator[PostgresDramatiqQueue]:
    q = PostgresDramatiqQueue(
        PostgresQueueSettings(url=postgres, queue=f"t-{uuid.uuid4().hex[:12]}")
    )
    yield q
    await q.purge()
    await q.close()


@pytest.mark.slow
async def test_a_killed_workers_job_is_redelivered_within_the_bound(
    queue: PostgresDramatiqQueue, postgres: str
) -> None:
    bound = queue.settings.redelivery_bound
    await queue.enqueue(Job("victim", "n", "f"))
    got: list[float] = []

    async def handle(job: Job) -> None:
        got.append(time.monotonic())

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), postgres, queue.queue_name],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    survivor = None
    try:
        assert worker.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 30)
        assert line.strip() == "victim", "the worker process never got the job"
        survivor = await queue.consume(handle, concurrency=2)
        await asyncio.sleep(1.0)
        assert got == [], "a live worker's job was taken from it"
        killed = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        await asyncio.to_thread(worker.wait, 10)
        while not got and time.monotonic() < killed + bound + 10:
            await asyncio.sleep(0.01)
        assert got, f"the job was not redelivered within {bound + 10:.1f} s"
        print(f"redelivered {got[0] - killed:.3f} s after SIGKILL (bound {bound:.2f} s)")
        assert got[0] - killed <= bound
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        if survivor is not None:
            await survivor.stop()
    assert await queue.size() == 0


@pytest.mark.slow
async def test_a_delay_past_the_bound_arrives_once_on_time_as_json(
    queue: PostgresDramatiqQueue, postgres: str
) -> None:
    delay = queue.settings.redelivery_bound + 1.0
    job = Job("late", "ноде", "f", instance="0/2")
    arrivals: list[float] = []

    async def record(got: Job) -> None:
        assert got == job
        arrivals.append(time.monotonic())

    start = time.monotonic()
    await queue.enqueue(job, delay=delay)
    with psycopg.connect(postgres) as conn:
        row = conn.execute(
            "SELECT message FROM flowcraft_dramatiq.queue WHERE queue_name = %s",
            (f"{queue.queue_name}.DQ",),
        ).fetchone()
    assert row is not None, "the delayed job is not a row of the delay queue"
    assert row[0]["args"] == [json.loads(json.dumps(job.to_dict()))]
    first = await queue.consume(record)
    await asyncio.sleep(1.0)
    await first.stop()
    second = await queue.consume(record)
    while not arrivals and time.monotonic() < start + delay + 5:
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)
    await second.stop()
    assert len(arrivals) == 1, f"the delayed job arrived {len(arrivals)} times"
    assert delay <= arrivals[0] - start <= delay + 1.0, arrivals[0] - start


async def test_a_stop_hands_back_claimed_jobs_it_never_started_at_once(
    queue: PostgresDramatiqQueue, postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dramatiq-postgres claims rows into a buffer Dramatiq's stop does not know of. A stop
    that comes between a claim and the buffer's last pop (here forced: the claim returns only
    once the stop has begun) must put those rows back at once, not leave them claimed until
    the stopped worker's heartbeat is heartbeat_ttl old."""
    from dramatiq_postgres.broker import PostgresConsumer as Claiming

    claim = Claiming.claim
    claimed = threading.Event()

    def claim_then_wait_for_the_stop(self: Any, limit: int) -> None:
        claim(self, limit)
        if self.buffer and not claimed.is_set():
            claimed.set()
            thread = threading.current_thread()
            deadline = time.monotonic() + 10
            while getattr(thread, "running", False) and time.monotonic() < deadline:
                time.sleep(0.01)

    monkeypatch.setattr(Claiming, "claim", claim_then_wait_for_the_stop)
    jobs = [Job(f"claimed-{i}", "n", "f") for i in range(6)]
    got: list[Job] = []

    async def handle(job: Job) -> None:
        got.append(job)

    await queue.enqueue_many(jobs)
    first = await queue.consume(handle, concurrency=1)
    assert await asyncio.to_thread(claimed.wait, 10), "the consumer never claimed"
    await first.stop(drain=True)
    with psycopg.connect(postgres) as conn:
        (held,) = conn.execute(
            "SELECT count(*) FROM flowcraft_dramatiq.queue "
            "WHERE queue_name = %s AND state = 'consumed'",
            (queue.queue_name,),
        ).fetchone() or (0,)
    assert held == 0, f"{held} job(s) still claimed by a consumer that stopped cleanly"
    monkeypatch.undo()
    second = await queue.consume(handle, concurrency=2)
    try:
        # Well within heartbeat_ttl: only a hand-back brings them this soon.
        deadline = time.monotonic() + queue.settings.heartbeat_ttl / 2
        while set(got) != set(jobs) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await second.stop()
    assert set(got) == set(jobs), f"never delivered: {sorted(set(jobs) - set(got), key=repr)}"


async def test_a_refused_connection_is_a_one_line_error_naming_the_server() -> None:
    queue = PostgresDramatiqQueue(
        PostgresQueueSettings(url="postgresql://u:s3cret@127.0.0.1:1/test", queue="nowhere")
    )
    try:
        with pytest.raises(DriverError) as caught:
            await asyncio.wait_for(queue.enqueue(Job("r", "n", "f")), 30)
        message = str(caught.value)
        assert message.startswith("cannot reach PostgreSQL at postgresql://u:***@127.0.0.1:1/")
        assert "s3cret" not in message and "\n" not in message
    finally:
        await queue.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(DriverError, match="postgresql://"):
        PostgresDramatiqQueue(PostgresQueueSettings(url="mysql://h/db"))
    with pytest.raises(DriverError, match="1 to 40 bytes"):
        PostgresDramatiqQueue(PostgresQueueSettings(url="postgresql://h/db", queue="q" * 41))


async def test_repeated_failures_back_off_no_longer_than_max_backoff(postgres: str) -> None:
    settings = PostgresQueueSettings(
        url=postgres, queue=f"b-{uuid.uuid4().hex[:12]}", max_backoff=0.4
    )
    queue = PostgresDramatiqQueue(settings)
    times: list[float] = []

    async def fail(job: Job) -> None:
        times.append(time.monotonic())
        if len(times) < 6:
            raise RuntimeError("again")

    consumer = await queue.consume(fail)
    try:
        await queue.enqueue(Job("r", "n", "f"))
        deadline = time.monotonic() + 30
        while len(times) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await consumer.stop()
        await queue.purge()
        await queue.close()
    assert len(times) == 6, f"{len(times)} deliveries of a job that fails 5 times"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # the backoff doubles from 100 ms, jittered, and stops at 0.4 s: never more than the bound
    assert max(gaps) <= settings.redelivery_after_error + 0.5, gaps


def test_names_and_urls_from_a_sql_deployment() -> None:
    assert queue_name("flowcraft", "") == "flowcraft"
    assert queue_name("app", "ns1") == "app-ns1"
    long_a, long_b = queue_name("p" * 40, "a" * 40), queue_name("p" * 40, "b" * 40)
    assert len(long_a.encode()) <= 40 and len(long_b.encode()) <= 40 and long_a != long_b
    assert libpq_url("postgresql+asyncpg://u:pw@h:5433/db?prepared_statement_cache_size=0") == (
        "postgresql://u:pw@h:5433/db"
    )
