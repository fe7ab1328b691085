"""Contract: the queue (:class:`flowcraft_core.protocols.Queue`).

* **delivery**: every enqueued job (``enqueue`` or ``enqueue_many``, before or after a consumer
  starts) is delivered at least once, equal to what was enqueued (its JSON round trip), its
  headers included, and no job is invented; stopping a consumer loses nothing;
* **redelivery**: a job whose handler raised is delivered again within
  ``redelivery_after_error_s`` (default ``redelivery_after_crash_s``), one whose handler was
  cancelled by ``stop(drain=False)`` within ``redelivery_after_crash_s`` (both plus
  ``delay_tolerance_s``);
* **delays**: a delayed job is never delivered early, nor later than ``delay_tolerance_s``
  after it is due, and does not hold back jobs without delay;
* **concurrency**: a consumer never runs more than ``concurrency`` handlers at once, and
  ``stop(drain=True)`` lets in-flight handlers finish.

Each test opens a fresh queue. On a driver without isolation the queue may be shared: a test's
jobs carry its own run-id prefix and its handler acknowledges and ignores every other job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from flowcraft_core.protocols import Job

from .capabilities import present, requires
from .harness import Harness

STOP_BOUND = 15.0  # seconds a consume() or stop() may take
EARLY_SLACK = 0.01  # seconds of clock granularity forgiven on "never early"
SETTLE = 0.1  # seconds to let stray deliveries arrive before judging
LONGEST_DELAY = 30.0  # seconds: the longest delay the suite waits for

Behaviour = Callable[[Job, int], Awaitable[None]]
T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float, what: str) -> T:
    """``awaitable``'s result, or a failure naming ``what`` if it takes over ``seconds``."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError:
        raise AssertionError(f"{what} did not return within {seconds}s") from None


def make_jobs(prefix: str, count: int) -> list[Job]:
    """``count`` distinct jobs of this test, with unicode ids and varied fields; every other
    one carries headers (a trace context, a unicode one), which must travel with it."""
    names = ("a", "ноде", "n:ü#1", "emoji-\U0001f642", "sp ace", '"q"\\')
    return [
        Job(
            run_id=f"{prefix}-{i}",
            node_id=f"{names[i % len(names)]}-{i}",
            digest=f"sha256:{i:064x}",
            instance=f"0/{i * 7919 % 1000}" if i % 2 else "0",
            attempt=1 + i % 3,
            headers=(
                {"traceparent": f"00-{i:032x}-{i + 1:016x}-01", "ü-key": f'"v"\\{i}'}
                if i % 2
                else {}
            ),
        )
        for i in range(count)
    ]


@dataclass
class Collector:
    """A handler recording this test's deliveries (time, job); ``behaviour(job, n)`` runs on the
    n-th delivery of a job (1-based) and may raise to refuse it."""

    prefix: str
    behaviour: Behaviour | None = None
    deliveries: list[tuple[float, Job]] = field(default_factory=list)
    foreign: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, job: Job) -> int:
        return sum(1 for _, j in self.deliveries if j == job)

    async def handler(self, job: Job) -> None:
        if not job.run_id.startswith(self.prefix + "-"):
            self.foreign += 1  # another test's job on a shared queue: acknowledge, ignore
            return
        self.deliveries.append((time.monotonic(), job))
        self._changed.set()
        if self.behaviour is not None:
            await self.behaviour(job, self.count(job))

    def delivered(self) -> set[Job]:
        return {j for _, j in self.deliveries}

    def times(self, job: Job) -> list[float]:
        return [t for t, j in self.deliveries if j == job]

    async def wait_until(
        self, done: Callable[[], bool], timeout: float, *, idle: float | None = None
    ) -> bool:
        """Wait until ``done()``; give up after ``timeout`` seconds, or after ``idle`` seconds
        without a new delivery."""
        start = time.monotonic()
        while not done():
            now = time.monotonic()
            if now - start >= timeout:
                return False
            if idle is not None:
                last = max(self.deliveries[-1][0] if self.deliveries else start, start)
                if now - last >= idle:
                    return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.1)
        return True


def _idle(conformance: Harness) -> float:
    """How long a queue with work left may go without delivering anything."""
    return 1.0 + 2 * conformance.delay_tolerance


def _report(expected: set[Job], collector: Collector) -> list[str]:
    delivered = collector.delivered()
    problems = []
    missing = expected - delivered
    if missing:
        problems.append(
            f"{len(missing)} of {len(expected)} jobs never delivered, e.g. {min(missing, key=repr)}"
        )
    invented = delivered - expected
    if invented:
        problems.append(
            f"{len(invented)} delivered jobs were never enqueued, e.g. {min(invented, key=repr)}"
        )
    # Headers are not part of a job's identity (equality), so they are compared on their own.
    sent = {job: dict(job.headers) for job in expected}
    changed = [j for _, j in collector.deliveries if j in sent and dict(j.headers) != sent[j]]
    if changed:
        job = changed[0]
        problems.append(
            f"{len(changed)} deliveries lost or changed their job's headers, e.g. {job} "
            f"arrived with {dict(job.headers)!r} instead of {sent[job]!r}"
        )
    return problems


@requires("queue")
class QueueDeliveryContract:
    """At least once, nothing invented, nothing lost on stop."""

    contract = "queue delivery"

    def test_every_job_delivered_none_invented(self, conformance: Harness) -> None:
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        jobs = make_jobs(prefix, 120)
        idle = _idle(conformance)

        async def body() -> list[str]:
            collector = Collector(prefix)
            for job in jobs[:20]:
                await queue.enqueue(job)
            await queue.enqueue_many(jobs[20:40])
            consumer = await within(
                queue.consume(collector.handler, concurrency=4), STOP_BOUND, "Queue.consume()"
            )
            await queue.enqueue_many(jobs[40:100])
            for job in jobs[100:]:
                await queue.enqueue(job)
            expected = set(jobs)
            await collector.wait_until(lambda: collector.delivered() >= expected, 30.0, idle=idle)
            await asyncio.sleep(SETTLE)
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            return _report(expected, collector)

        problems = conformance.run(body())
        assert not problems, "; ".join(problems)

    def test_stopping_a_consumer_loses_nothing(self, conformance: Harness) -> None:
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        jobs = make_jobs(prefix, 30)
        idle = _idle(conformance)

        async def slow(job: Job, n: int) -> None:
            await asyncio.sleep(0.01)

        async def body() -> list[str]:
            collector = Collector(prefix, slow)
            consumer = await within(
                queue.consume(collector.handler, concurrency=2), STOP_BOUND, "Queue.consume()"
            )
            await queue.enqueue_many(jobs)
            await collector.wait_until(lambda: len(collector.deliveries) >= 5, 10.0)
            await within(consumer.stop(drain=True), STOP_BOUND, "Consumer.stop(drain=True)")
            consumer = await within(
                queue.consume(collector.handler, concurrency=4), STOP_BOUND, "Queue.consume()"
            )
            expected = set(jobs)
            await collector.wait_until(lambda: collector.delivered() >= expected, 30.0, idle=idle)
            await asyncio.sleep(SETTLE)
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            return _report(expected, collector)

        problems = conformance.run(body())
        assert not problems, "after stopping a consumer mid-way: " + "; ".join(problems)


@requires("queue", "redelivery_after_crash_s")
class QueueRedeliveryContract:
    """A job that was not acknowledged comes back within the declared bound."""

    contract = "queue redelivery"

    def _bound(self, conformance: Harness, *, error: bool) -> float:
        declared = float(conformance.capability("redelivery_after_crash_s"))
        after_error = conformance.capability("redelivery_after_error_s")
        if error and isinstance(after_error, int | float) and not isinstance(after_error, bool):
            declared = float(after_error)
        return declared + conformance.delay_tolerance

    def test_handler_that_raises_gets_the_job_again(self, conformance: Harness) -> None:
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        jobs = make_jobs(prefix, 10)
        bound = self._bound(conformance, error=True)

        async def crash_first(job: Job, n: int) -> None:
            if n == 1:
                raise RuntimeError("conformance: simulated crash before acknowledging")

        async def body() -> list[str]:
            collector = Collector(prefix, crash_first)
            consumer = await within(
                queue.consume(collector.handler, concurrency=4), STOP_BOUND, "Queue.consume()"
            )
            await queue.enqueue_many(jobs)
            await collector.wait_until(
                lambda: all(collector.count(j) >= 1 for j in jobs), 30.0, idle=_idle(conformance)
            )
            await collector.wait_until(
                lambda: all(collector.count(j) >= 2 for j in jobs), bound + 0.5
            )
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            problems = []
            never = [j for j in jobs if collector.count(j) < 2]
            if never:
                problems.append(f"{len(never)} of {len(jobs)} crashed jobs never came back")
            for job in jobs:
                times = collector.times(job)
                if len(times) >= 2 and times[1] - times[0] > bound:
                    problems.append(f"{job.node_id} came back after {times[1] - times[0]:.2f}s")
            return problems

        problems = conformance.run(body())
        assert not problems, f"redelivery bound {bound:.2f}s: " + "; ".join(problems)

    def test_cancelled_handler_gets_the_job_again(self, conformance: Harness) -> None:
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        (job,) = make_jobs(prefix, 1)
        bound = self._bound(conformance, error=False)
        started = asyncio.Event()

        async def hang_first(job: Job, n: int) -> None:
            if n == 1:
                started.set()
                await asyncio.sleep(60)

        async def body() -> int:
            collector = Collector(prefix, hang_first)
            consumer = await within(queue.consume(collector.handler), STOP_BOUND, "Queue.consume()")
            await queue.enqueue(job)
            await asyncio.wait_for(started.wait(), 10)
            await within(consumer.stop(drain=False), STOP_BOUND, "Consumer.stop(drain=False)")
            consumer = await within(queue.consume(collector.handler), STOP_BOUND, "Queue.consume()")
            await collector.wait_until(lambda: collector.count(job) >= 2, bound + 0.5)
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            return collector.count(job)

        count = conformance.run(body())
        assert count >= 2, "a job whose handler was cancelled by stop(drain=False) was lost"


@requires("queue", "delays")
class QueueDelayContract:
    """Delayed jobs arrive on time: never early, not much late."""

    contract = "queue delays"

    def test_delays_are_honoured(self, conformance: Harness) -> None:
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        jobs = make_jobs(prefix, 12)
        delays = [0.0, 0.2, 0.5]
        tolerance = conformance.delay_tolerance

        async def body() -> list[str]:
            collector = Collector(prefix)
            consumer = await within(
                queue.consume(collector.handler, concurrency=4), STOP_BOUND, "Queue.consume()"
            )
            due: dict[Job, tuple[float, float]] = {}
            for i, delay in enumerate(delays):
                group = jobs[i * 4 : i * 4 + 4]
                start = time.monotonic()
                await queue.enqueue(group[0], delay=delay)
                await queue.enqueue(group[1], delay=delay)
                due[group[0]] = due[group[1]] = (start, delay)
                start = time.monotonic()
                await queue.enqueue_many(group[2:], delay=delay)
                due[group[2]] = due[group[3]] = (start, delay)
            expected = set(jobs)
            await collector.wait_until(lambda: collector.delivered() >= expected, 5 + tolerance)
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            problems = _report(expected, collector)
            for job, (start, delay) in due.items():
                times = collector.times(job)
                if not times:
                    continue
                after = times[0] - start
                if after < delay - EARLY_SLACK:
                    problems.append(f"a job with delay {delay}s arrived early, after {after:.3f}s")
                elif after > delay + tolerance:
                    problems.append(f"a job with delay {delay}s arrived late, after {after:.3f}s")
            return problems

        problems = conformance.run(body())
        assert not problems, "; ".join(problems)

    def test_delays_past_the_redelivery_bound_are_honoured(self, conformance: Harness) -> None:
        """Delays longer than a second and than the driver's redelivery bound (where a broker
        may keep delayed jobs somewhere else, or expire them) arrive on time too."""
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        declared = conformance.capability("redelivery_after_crash_s")
        bound = max(float(declared) if present(declared) else 0.0, 1.0)
        longest = min(bound + 1.0, LONGEST_DELAY)
        delays = sorted({1.5, (1.5 + longest) / 2, longest})
        jobs = make_jobs(prefix, 2 * len(delays))
        tolerance = conformance.delay_tolerance

        async def body() -> list[str]:
            collector = Collector(prefix)
            consumer = await within(
                queue.consume(collector.handler, concurrency=4), STOP_BOUND, "Queue.consume()"
            )
            due: dict[Job, tuple[float, float]] = {}
            for i, delay in enumerate(delays):
                one, many = jobs[2 * i], jobs[2 * i + 1]
                start = time.monotonic()
                await queue.enqueue(one, delay=delay)
                due[one] = (start, delay)
                start = time.monotonic()
                await queue.enqueue_many([many], delay=delay)
                due[many] = (start, delay)
            expected = set(jobs)
            await collector.wait_until(
                lambda: collector.delivered() >= expected, longest + tolerance + 2
            )
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            problems = _report(expected, collector)
            for job, (start, delay) in due.items():
                times = collector.times(job)
                if not times:
                    problems.append(f"a job with delay {delay:.2f}s never arrived")
                    continue
                after = times[0] - start
                if after < delay - EARLY_SLACK:
                    problems.append(
                        f"a job with delay {delay:.2f}s arrived early, after {after:.3f}s"
                    )
                elif after > delay + tolerance:
                    problems.append(
                        f"a job with delay {delay:.2f}s arrived late, after {after:.3f}s"
                    )
            return problems

        problems = conformance.run(body())
        assert not problems, "; ".join(dict.fromkeys(problems))

    def test_delayed_jobs_do_not_hold_back_others(self, conformance: Harness) -> None:
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        late, now = make_jobs(prefix, 2)

        async def body() -> tuple[float | None, float | None]:
            collector = Collector(prefix)
            consumer = await within(queue.consume(collector.handler), STOP_BOUND, "Queue.consume()")
            start = time.monotonic()
            await queue.enqueue(late, delay=1.0)
            await queue.enqueue(now)
            await collector.wait_until(lambda: collector.count(now) > 0, 5.0)
            now_at = collector.times(now)[0] - start if collector.count(now) else None
            late_at = collector.times(late)[0] - start if collector.count(late) else None
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            return now_at, late_at

        now_at, late_at = conformance.run(body())
        assert now_at is not None, "a job without delay was never delivered"
        assert now_at < 0.9, f"a job without delay waited {now_at:.2f}s behind a delayed one"
        assert late_at is None, f"a job with delay 1.0s arrived after {late_at}s"


@requires("queue")
class QueueConcurrencyContract:
    """A consumer runs at most ``concurrency`` handlers at once."""

    contract = "queue concurrency"

    def test_concurrency_limit_holds(self, conformance: Harness) -> None:
        queue = conformance.queue()

        async def run(limit: int) -> tuple[int, list[str]]:
            prefix = conformance.new_id("job")
            jobs = make_jobs(prefix, 12)
            active = peak = 0

            async def busy(job: Job, n: int) -> None:
                nonlocal active, peak
                active += 1
                peak = max(peak, active)
                try:
                    await asyncio.sleep(0.03)
                finally:
                    active -= 1

            collector = Collector(prefix, busy)
            consumer = await within(
                queue.consume(collector.handler, concurrency=limit), STOP_BOUND, "Queue.consume()"
            )
            await queue.enqueue_many(jobs)
            await collector.wait_until(lambda: collector.delivered() >= set(jobs), 10.0)
            await asyncio.sleep(SETTLE)
            await within(consumer.stop(), STOP_BOUND, "Consumer.stop()")
            return peak, _report(set(jobs), collector)

        for limit in (1, 3):
            peak, problems = conformance.run(run(limit))
            assert not problems, f"concurrency={limit}: " + "; ".join(problems)
            assert peak <= limit, f"concurrency={limit} but {peak} handlers ran at once"

    def test_stop_with_drain_lets_handlers_finish(self, conformance: Harness) -> None:
        queue = conformance.queue()
        prefix = conformance.new_id("job")
        (job,) = make_jobs(prefix, 1)
        started = asyncio.Event()
        finished: list[Job] = []

        async def slow(job: Job, n: int) -> None:
            started.set()
            await asyncio.sleep(0.3)
            finished.append(job)

        async def body() -> int:
            collector = Collector(prefix, slow)
            consumer = await within(queue.consume(collector.handler), STOP_BOUND, "Queue.consume()")
            await queue.enqueue(job)
            await asyncio.wait_for(started.wait(), 10)
            await within(consumer.stop(drain=True), STOP_BOUND, "Consumer.stop(drain=True)")
            return len(finished)

        assert conformance.run(body()) == 1, "stop(drain=True) did not wait for the handler"
