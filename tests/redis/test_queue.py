"""RedisQueue against the Queue contract, with real Dramatiq workers in this process."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.encoder import PickleEncoder

from flowcraft_core.errors import DriverError
from flowcraft_core.protocols import Consumer, Job, Queue
from flowcraft_redis import RedisQueue
from flowcraft_redis.broker import QUEUE_NAME, namespace
from flowcraft_redis.connection import Connections, _Batches
from flowcraft_redis.url import parse_url


def jobs(n: int, run: str = "r") -> list[Job]:
    return [
        Job(run_id=run, node_id=f"n{i}", digest="digest", instance=f"0/{i % 3}") for i in range(n)
    ]


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_is_a_queue(queue: RedisQueue) -> None:
    assert isinstance(queue, Queue)
    consumer = await queue.consume(_noop)
    assert isinstance(consumer, Consumer)
    await consumer.stop()


async def _noop(job: Job) -> None:
    return None


async def test_every_job_is_delivered(queue: RedisQueue) -> None:
    sent = jobs(200)
    await queue.enqueue_many(sent[:150])
    for job in sent[150:]:
        await queue.enqueue(job)
    assert await queue.size() == 200
    seen: Counter[Job] = Counter()

    async def handle(job: Job) -> None:
        seen[job] += 1

    consumer = await queue.consume(handle, concurrency=8)
    await eventually(lambda: set(seen) == set(sent), 10, "all 200 jobs")
    await consumer.stop()
    assert all(job in set(sent) for job in seen)  # nothing invented
    assert await queue.size() == 0  # every delivery acknowledged


async def test_jobs_travel_as_json(queue: RedisQueue, raw: redis.Redis) -> None:
    job = Job(run_id="r", node_id="n", digest="f", instance="0/2", attempt=3)
    await queue.enqueue(job)
    stored = raw.hvals(f"{namespace(queue.settings)}:{QUEUE_NAME}.msgs")
    assert len(stored) == 1
    message = json.loads(stored[0])
    assert message["actor_name"] == "flowcraft_job"
    assert message["args"] == [job.to_dict()]


async def test_enqueues_of_one_loop_turn_share_one_write_and_no_thread(
    queue: RedisQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker's enqueues travel with its commits: the dispatch calls of one loop turn go out
    # in one write on the loop's connection, none through the queue's thread pool, and each
    # is Dramatiq's own message (delayed ones on its delay queue, with their due time).
    await queue.enqueue(jobs(1, "warm")[0])  # the one blocking call, Dramatiq's first use
    writes = 0
    exchange = _Batches._exchange

    async def counted(conn: Any, batch: Any) -> Any:
        nonlocal writes
        writes += 1
        return await exchange(conn, batch)

    monkeypatch.setattr(_Batches, "_exchange", staticmethod(counted))

    def no_thread(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an enqueue went through the thread pool")

    monkeypatch.setattr(queue, "_call", no_thread)
    now, later = jobs(5, "now"), jobs(3, "later")
    await asyncio.gather(
        queue.enqueue_many(now),
        queue.enqueue_many(later, delay=30),
        queue.enqueue(jobs(1, "one")[0]),
    )
    assert writes == 1
    monkeypatch.undo()
    assert await queue.size() == 10
    raw = redis.Redis.from_url(queue.settings.url)
    ns = namespace(queue.settings)
    delayed = [json.loads(m) for m in raw.hvals(f"{ns}:{QUEUE_NAME}.DQ.msgs")]
    raw.close()
    assert sorted(m["args"][0]["n"] for m in delayed) == sorted(j.node_id for j in later)
    assert all(m["options"]["eta"] > time.time() * 1000 + 25_000 for m in delayed)


async def test_an_enqueue_to_a_redis_that_is_away_raises(make_url: Callable[..., str]) -> None:
    queue = RedisQueue(make_url())
    await queue.enqueue(jobs(1)[0])  # prepared while Redis answers
    # The loop's connection now goes nowhere (the broker's own still works).
    queue.connections = Connections(parse_url("redis://127.0.0.1:1/0")).acquire()
    try:
        with pytest.raises((redis.ConnectionError, OSError, DriverError)):
            await asyncio.wait_for(queue.enqueue_many(jobs(3, "lost")), 10)
    finally:
        await queue.close()


async def test_concurrency_is_a_bound(queue: RedisQueue) -> None:
    await queue.enqueue_many(jobs(30))
    running = peak = done = 0

    async def handle(job: Job) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        done += 1

    consumer = await queue.consume(handle, concurrency=3)
    await eventually(lambda: done >= 30, 10, "30 jobs")
    await consumer.stop()
    assert peak == 3


async def test_delays_are_honoured_never_early(queue: RedisQueue) -> None:
    arrived: dict[str, float] = {}

    async def handle(job: Job) -> None:
        arrived.setdefault(job.run_id, time.monotonic())

    consumer = await queue.consume(handle, concurrency=4)
    start = time.monotonic()
    await queue.enqueue(Job("late", "n", "f"), delay=0.6)
    await queue.enqueue_many([Job("batch", "n", "f"), Job("batch2", "n", "f")], delay=0.3)
    await queue.enqueue(Job("now", "n", "f"))
    await eventually(lambda: len(arrived) == 4, 5, "4 jobs")
    await consumer.stop()
    assert arrived["now"] - start < 0.3
    assert 0.3 <= arrived["batch"] - start < 1.0
    assert 0.3 <= arrived["batch2"] - start < 1.0
    assert 0.6 <= arrived["late"] - start < 1.3


async def test_a_handler_that_raises_gets_the_job_again(queue: RedisQueue) -> None:
    attempts: Counter[str] = Counter()

    async def handle(job: Job) -> None:
        attempts[job.node_id] += 1
        if job.node_id == "flaky" and attempts[job.node_id] < 3:
            raise RuntimeError("not yet")

    consumer = await queue.consume(handle, concurrency=2)
    await queue.enqueue_many([Job("r", "flaky", "f"), Job("r", "fine", "f")])
    await eventually(lambda: attempts["flaky"] >= 3, 5, "the third delivery")
    await consumer.stop()
    assert attempts["fine"] == 1
    assert attempts["flaky"] == 3
    assert await queue.size() == 0  # acknowledged once it succeeded, not left behind


async def test_stop_drains_and_hands_back_unstarted_jobs(queue: RedisQueue) -> None:
    sent = jobs(12)
    await queue.enqueue_many(sent)
    release = asyncio.Event()
    first: list[Job] = []

    async def slow(job: Job) -> None:
        first.append(job)
        await release.wait()

    consumer = await queue.consume(slow, concurrency=2)
    await eventually(lambda: len(first) == 2, 5, "two jobs in flight")
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0.3)
    assert not stopping.done()  # draining: waits for the two in-flight handlers
    release.set()
    await asyncio.wait_for(stopping, 5)
    finished = set(first)
    assert await queue.size() == 12 - len(finished)  # the in-flight ones were acknowledged

    rest: list[Job] = []

    async def fast(job: Job) -> None:
        rest.append(job)

    started = time.monotonic()
    successor = await queue.consume(fast, concurrency=4)
    await eventually(lambda: finished | set(rest) == set(sent), 3, "the remaining jobs")
    # Handed back at stop, not recovered after a heartbeat timeout.
    assert time.monotonic() - started < queue.settings.heartbeat
    await successor.stop()
    assert await queue.size() == 0


async def test_stop_without_drain_cancels_and_redelivers(queue: RedisQueue) -> None:
    await queue.enqueue(Job("r", "stuck", "f"))
    started = asyncio.Event()
    cancelled = 0

    async def stuck(job: Job) -> None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    consumer = await queue.consume(stuck)
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.wait_for(consumer.stop(drain=False), 5)
    assert cancelled == 1
    got: list[Job] = []

    async def handle(job: Job) -> None:
        got.append(job)

    successor = await queue.consume(handle)
    await eventually(lambda: got == [Job("r", "stuck", "f")], 5, "the cancelled job again")
    await successor.stop()


async def test_two_deployments_in_one_process_stay_apart(make_url: Callable[..., str]) -> None:
    first, second = RedisQueue(make_url()), RedisQueue(make_url())
    try:
        got: dict[str, list[str]] = {"a": [], "b": []}

        def collect(name: str) -> Callable[[Job], Awaitable[None]]:
            async def handle(job: Job) -> None:
                got[name].append(job.run_id)

            return handle

        consumers = [await first.consume(collect("a")), await second.consume(collect("b"))]
        await first.enqueue(Job("for-a", "n", "f"))
        await second.enqueue(Job("for-b", "n", "f"))
        await eventually(lambda: bool(got["a"] and got["b"]), 5, "both jobs")
        for consumer in consumers:
            await consumer.stop()
        assert got == {"a": ["for-a"], "b": ["for-b"]}
    finally:
        await first.close()
        await second.close()


async def test_two_consumers_share_the_work(queue: RedisQueue) -> None:
    sent = jobs(40)
    await queue.enqueue_many(sent)
    by: dict[str, set[Job]] = {"x": set(), "y": set()}

    async def handle_x(job: Job) -> None:
        by["x"].add(job)
        await asyncio.sleep(0.01)

    async def handle_y(job: Job) -> None:
        by["y"].add(job)
        await asyncio.sleep(0.01)

    x = await queue.consume(handle_x, concurrency=2)
    y = await queue.consume(handle_y, concurrency=2)
    await eventually(lambda: by["x"] | by["y"] == set(sent), 10, "all jobs")
    await x.stop()
    await y.stop()
    assert by["x"] and by["y"]


async def test_close_stops_running_consumers(redis_url: str) -> None:
    q = RedisQueue(redis_url)
    await q.consume(_noop, concurrency=2)
    await asyncio.wait_for(q.close(), 10)


async def test_invalid_concurrency(queue: RedisQueue) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await queue.consume(_noop, concurrency=0)


async def test_size_counts_waiting_and_delayed_jobs_and_purge_drops_them(
    queue: RedisQueue,
) -> None:
    await queue.enqueue_many(jobs(3))
    await queue.enqueue(Job("later", "n", "f"), delay=60)
    assert await queue.size() == 4
    await queue.purge()
    assert await queue.size() == 0


def test_a_pickling_encoder_is_refused(redis_url: str) -> None:
    previous = dramatiq.get_encoder()
    dramatiq.set_encoder(PickleEncoder())
    try:
        with pytest.raises(DriverError, match="JSON"):
            RedisQueue(redis_url)
    finally:
        dramatiq.set_encoder(previous)
