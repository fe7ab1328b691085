"""AmqpQueue against the Queue contract, with real Dramatiq workers on a real RabbitMQ."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable

import dramatiq
import pika
import pika.exceptions
import pytest
from dramatiq.encoder import PickleEncoder

from flowcraft_amqp.queue import AmqpQueue
from flowcraft_amqp.url import parse_url
from flowcraft_core.errors import DriverError
from flowcraft_core.protocols import Consumer, Job, Queue


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


async def _noop(job: Job) -> None:
    return None


async def test_every_job_is_delivered_as_enqueued(queue: AmqpQueue) -> None:
    assert isinstance(queue, Queue)
    sent = jobs(200)
    await queue.enqueue_many(sent[:150])
    for job in sent[150:]:
        await queue.enqueue(job)
    assert await queue.size() == 200
    seen: Counter[Job] = Counter()

    async def handle(job: Job) -> None:
        seen[job] += 1

    consumer = await queue.consume(handle, concurrency=8)
    assert isinstance(consumer, Consumer)
    await eventually(lambda: set(seen) == set(sent), 20, "all 200 jobs")
    await consumer.stop()
    assert set(seen) == set(sent)  # nothing invented
    assert await queue.size() == 0  # every delivery acknowledged
    with pytest.raises(ValueError, match="concurrency"):
        await queue.consume(_noop, concurrency=0)


async def test_jobs_travel_as_json(queue: AmqpQueue, amqp_url: str) -> None:
    job = Job("r", "ноде", "f", instance="0/3", attempt=2)
    await queue.enqueue(job)
    connection = pika.BlockingConnection(pika.URLParameters(parse_url(amqp_url).url))
    try:
        method, _, body = connection.channel().basic_get(queue.queue_name, auto_ack=True)
    finally:
        connection.close()
    assert method is not None, "the job is not on the deployment's queue"
    message = json.loads(body)
    assert message["actor_name"] == "flowcraft_job"
    assert message["args"] == [job.to_dict()]


def test_a_pickling_encoder_is_refused(amqp_url: str) -> None:
    previous = dramatiq.get_encoder()
    dramatiq.set_encoder(PickleEncoder())
    try:
        with pytest.raises(DriverError, match="JSON"):
            AmqpQueue(amqp_url)
    finally:
        dramatiq.set_encoder(previous)


async def test_an_unreachable_server_is_a_one_line_error_naming_it() -> None:
    queue = AmqpQueue("amqp://guest:s3cret@127.0.0.1:1/?queue=nowhere")
    try:
        for attempt in (queue.enqueue(Job("r", "n", "f")), queue.consume(_noop)):
            with pytest.raises(DriverError) as caught:
                await asyncio.wait_for(attempt, 30)
            message = str(caught.value)
            assert message.startswith("cannot reach RabbitMQ at amqp://guest:***@127.0.0.1:1/")
            assert "s3cret" not in message and "\n" not in message
    finally:
        await queue.close()


async def test_a_handler_that_raises_gets_its_job_again(queue: AmqpQueue) -> None:
    calls: Counter[Job] = Counter()

    async def flaky(job: Job) -> None:
        calls[job] += 1
        if calls[job] < 3:
            raise RuntimeError("not yet")

    consumer = await queue.consume(flaky, concurrency=2)
    await queue.enqueue_many(jobs(3))
    await eventually(lambda: all(calls[j] >= 3 for j in jobs(3)), 15, "third deliveries")
    await consumer.stop()
    await asyncio.sleep(0.3)
    assert all(calls[j] == 3 for j in jobs(3))  # acknowledged once a delivery succeeded
    assert await queue.size() == 0


async def test_a_draining_stop_hands_back_prefetched_jobs_at_once(queue: AmqpQueue) -> None:
    started = asyncio.Event()
    done: list[Job] = []

    async def slow(job: Job) -> None:
        started.set()
        await asyncio.sleep(0.5)
        done.append(job)

    consumer = await queue.consume(slow, concurrency=1)  # prefetches 2
    await queue.enqueue_many(jobs(10))
    await asyncio.wait_for(started.wait(), 10)
    await consumer.stop(drain=True)
    assert len(done) == 1  # the job in flight finished
    assert await queue.size() == 9  # everything else is back on the queue, none held


async def test_a_delayed_job_past_the_redelivery_bound_arrives_once_on_time(
    queue: AmqpQueue,
) -> None:
    """Dramatiq holds a delayed message unacknowledged until it is due; held longer than
    the redelivery bound, and across a consumer restart, it still arrives once, not early."""
    delay = queue.settings.redelivery_bound + 1.0
    arrivals: list[float] = []
    other: list[float] = []

    async def record(job: Job) -> None:
        (arrivals if job.run_id == "late" else other).append(time.monotonic())

    first = await queue.consume(record, concurrency=2)
    start = time.monotonic()
    await queue.enqueue(Job("late", "n", "f"), delay=delay)
    await queue.enqueue(Job("now", "n", "f"))
    await eventually(lambda: bool(other), 5, "the job without delay")
    await asyncio.sleep(1.0)
    await first.stop()  # held the delayed job; RabbitMQ takes it back
    second = await queue.consume(record, concurrency=2)
    await eventually(lambda: bool(arrivals), delay + 5, "the delayed job")
    await asyncio.sleep(1.0)
    await second.stop()
    assert len(arrivals) == 1, f"the delayed job arrived {len(arrivals)} times"
    assert delay <= arrivals[0] - start <= delay + 1.0, arrivals[0] - start


async def test_unused_queues_expire_when_asked(make_url: Callable[..., str]) -> None:
    url = make_url(expires=1)
    queue = AmqpQueue(url)
    await queue.enqueue(Job("r", "n", "f"))
    await queue.close()
    await asyncio.sleep(3.5)  # RabbitMQ deletes a queue unused for x-expires
    connection = pika.BlockingConnection(pika.URLParameters(parse_url(url).url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            connection.channel().queue_declare(parse_url(url).queue, passive=True)
        assert caught.value.reply_code == 404
    finally:
        connection.close()


async def test_a_delay_longer_than_max_hold_travels_in_legs_and_arrives_once_on_time(
    make_url: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """RabbitMQ takes back a delivery held past its consumer_timeout; with max_hold no
    consumer holds a delayed job longer than that, and the job still arrives once, on time."""
    queue = AmqpQueue(make_url(max_hold=1))
    delay = 3.5
    arrivals: list[float] = []

    async def record(job: Job) -> None:
        arrivals.append(time.monotonic())

    caplog.set_level(logging.DEBUG, logger="flowcraft_dramatiq.consumer")
    consumer = await queue.consume(record)
    try:
        start = time.monotonic()
        await queue.enqueue(Job("single", "n", "f"), delay=delay)
        await queue.enqueue_many([Job("many", "n", "f")], delay=delay)
        await eventually(lambda: len(arrivals) >= 2, delay + 5, "both delayed jobs")
        await asyncio.sleep(1.0)
    finally:
        await consumer.stop()
        await queue.close()
    assert len(arrivals) == 2, f"{len(arrivals)} deliveries of 2 delayed jobs"
    for at in arrivals:
        assert delay <= at - start <= delay + 1.0, at - start
    legs = [r for r in caplog.records if "on the delay queue again" in r.getMessage()]
    assert len(legs) >= 4, f"{len(legs)} legs for two 3.5 s delays held at most 1 s each"


def test_max_hold_defaults_under_rabbitmqs_consumer_timeout() -> None:
    assert parse_url("amqp://h/").max_hold == 900.0  # consumer_timeout defaults to 1800 s
    assert parse_url("amqp://h/?max_hold=60").max_hold == 60.0
    with pytest.raises(DriverError, match="max_hold must be between"):
        parse_url("amqp://h/?max_hold=0")
