"""Plugins are guests: a lifecycle hook that raises is logged with its plugin's name and the job
goes on; a handler that always fails cannot starve the memory driver's event loop."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

import pytest

from flowcraft_core import Client, NodeContext, Registry, Worker, open_backends
from flowcraft_core.client import RunTimeout
from flowcraft_core.hookspecs import LIFECYCLE, hookimpl
from flowcraft_core.plugins import Guests, new_manager
from flowcraft_core.protocols import Job
from flowcraft_memory.queue import ERROR_BACKOFF_MAX, MemoryQueue

from .helpers import Recorder, bp, harness, unique_url


class Boom:
    """Raises in the hooks it is told to, and counts every call it gets."""

    def __init__(self, *raising: str) -> None:
        self.raising = set(raising)
        self.calls: dict[str, int] = {}

    def _called(self, hook: str) -> None:
        self.calls[hook] = self.calls.get(hook, 0) + 1
        if hook in self.raising:
            raise RuntimeError(f"boom in {hook}")

    @hookimpl
    def flowcraft_run_started(self, run_id: str, flow_id: str, input: Any) -> None:
        self._called("flowcraft_run_started")

    @hookimpl
    def flowcraft_run_finished(self, run_id: str, status: str, error: Any) -> None:
        self._called("flowcraft_run_finished")

    @hookimpl
    def flowcraft_node_started(self, job: Job) -> None:
        self._called("flowcraft_node_started")

    @hookimpl
    def flowcraft_node_finished(self, job: Job, output: Any, action: str | None) -> None:
        self._called("flowcraft_node_finished")

    @hookimpl
    def flowcraft_node_skipped(self, job: Job) -> None:
        self._called("flowcraft_node_skipped")

    @hookimpl
    def flowcraft_node_failed(self, job: Job, error: dict[str, Any]) -> None:
        self._called("flowcraft_node_failed")

    @hookimpl
    def flowcraft_node_retried(self, job: Job, error: dict[str, Any], delay: float) -> None:
        self._called("flowcraft_node_retried")

    @hookimpl
    def flowcraft_expression_failed(self, job: Job, where: str, error: str) -> None:
        self._called("flowcraft_expression_failed")

    @hookimpl
    def flowcraft_job_enqueued(self, job: Job, delay: float) -> None:
        self._called("flowcraft_job_enqueued")


def test_boom_covers_the_lifecycle_family() -> None:
    implemented = {name for name in dir(Boom) if name.startswith("flowcraft_")}
    assert implemented == LIFECYCLE


def flaky_registry() -> dict[str, Any]:
    attempts: list[int] = []

    async def add(ctx: NodeContext) -> int:
        return int(ctx.input) + 1

    async def flaky(ctx: NodeContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return int(ctx.input) * 10

    async def broken(ctx: NodeContext) -> None:
        raise KeyError("always")

    return {"add": add, "flaky": flaky, "broken": broken}


# a -> f (fails once, retried) -> b: every hook of a completed run, node_retried included;
# b -> d's condition cannot be evaluated (a number against a string): expression_failed, and d
# is skipped (node_skipped).
COMPLETES = bp(
    [
        {"id": "a", "uses": "add"},
        {"id": "f", "uses": "flaky", "config": {"maxRetries": 2, "retryDelay": 1}},
        {"id": "b", "uses": "add"},
        {"id": "d", "uses": "add"},
    ],
    [
        {"source": "a", "target": "f"},
        {"source": "f", "target": "b"},
        {"source": "b", "target": "d", "condition": "result > 'x'"},
    ],
    name="guests-completes",
)
# a -> x (always fails): node_failed and a failed run_finished.
FAILS = bp(
    [{"id": "a", "uses": "add"}, {"id": "x", "uses": "broken"}],
    [{"source": "a", "target": "x"}],
    name="guests-fails",
)


def boom_records(caplog: pytest.LogCaptureFixture, hook: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "flowcraft_core.plugins" and "'boom'" in r.getMessage() and hook in r.message
    ]


@pytest.mark.timeout(30)  # before the fix, node_started spun the event loop forever
@pytest.mark.parametrize("hook", sorted(LIFECYCLE))
async def test_a_raising_plugin_cannot_hurt_a_run(
    hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="flowcraft_core.plugins")
    recorder = Recorder()
    boom = Boom(hook)
    pm = new_manager(load_entry_points=True)
    pm.register(recorder, name="recorder")
    pm.register(boom, name="boom")  # registered last: called first, before the recorder
    async with harness(flaky_registry(), pm=pm) as h:
        done = await h.run(COMPLETES, 1, timeout=10)
        failed = await h.run(FAILS, 1, timeout=10)
    assert done.status == "completed", done.error
    assert done.outputs == {"a": 2, "f": 20, "b": 21}
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error["node"], failed.error["type"]) == ("x", "KeyError")
    assert failed.outputs == {"a": 2}
    # Each hook fired as often as without the raising plugin, and the recorder behind boom
    # saw every call too: nothing was retried because of the plugin, nothing skipped.
    assert recorder.count("node_started") == 4 + 2  # a, f twice, b; a, x
    assert recorder.count("node_retried") == 1
    assert recorder.count("node_finished") == 4
    assert recorder.count("node_failed") == 1
    assert recorder.count("expression_failed") == 1
    assert recorder.nodes("node_skipped") == {"d": 1}
    assert recorder.count("run_started") == recorder.count("run_finished") == 2
    assert (
        boom.calls[hook]
        == {
            "flowcraft_run_started": 2,
            "flowcraft_run_finished": 2,
            "flowcraft_node_started": 6,
            "flowcraft_node_finished": 4,
            "flowcraft_node_failed": 1,
            "flowcraft_node_retried": 1,
            "flowcraft_expression_failed": 1,
            "flowcraft_node_skipped": 1,
            "flowcraft_job_enqueued": recorder.count("job_enqueued"),
        }[hook]
    )
    records = boom_records(caplog, hook)
    assert len(records) == boom.calls[hook]
    assert all(r.exc_info and f"boom in {hook}" in str(r.exc_info[1]) for r in records)


async def test_every_implementation_runs_when_several_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pm = new_manager(load_entry_points=False)
    first, second = Boom("flowcraft_node_started"), Boom("flowcraft_node_started")
    pm.register(first, name="first")
    pm.register(second, name="second")
    Guests(pm).flowcraft_node_started(job=Job("r", "n", "d"))
    assert first.calls == second.calls == {"flowcraft_node_started": 1}
    named = {r.getMessage().split()[2] for r in caplog.records if r.levelno == logging.ERROR}
    assert named == {"'first'", "'second'"}


def test_guests_offer_only_lifecycle_hooks() -> None:
    with pytest.raises(AttributeError, match="flowcraft_make_queue"):
        Guests(new_manager(load_entry_points=False)).flowcraft_make_queue  # noqa: B018


async def test_cancellation_is_not_swallowed() -> None:
    class Cancelling:
        @hookimpl
        def flowcraft_node_started(self, job: Job) -> None:
            raise asyncio.CancelledError

    pm = new_manager(load_entry_points=False)
    pm.register(Cancelling(), name="cancelling")
    with pytest.raises(asyncio.CancelledError):
        Guests(pm).flowcraft_node_started(job=Job("r", "n", "d"))


# -- a handler that always fails ------------------------------------------------------------


@pytest.mark.timeout(30)  # before the fix, the redelivery loop never let the waiter run
async def test_a_job_that_always_fails_does_not_starve_the_loop() -> None:
    deliveries = 0

    def crash(step: str, job: Job) -> None:
        nonlocal deliveries
        if step == "loaded":
            deliveries += 1
            raise RuntimeError("this job never gets past its load")

    backends = open_backends(unique_url())
    client = Client(backends)
    flow = bp([{"id": "a", "uses": "add"}])
    async with Worker(Registry(flaky_registry()), backends, checkpoint=crash):
        run_id = await client.start(flow, 1)
        started = time.monotonic()
        with pytest.raises(RunTimeout):
            await client.result(run_id, timeout=0.5)
        waited = time.monotonic() - started
    assert 0.5 <= waited < 1.5
    # Redelivered with a backoff, not thousands of times in a tight loop.
    assert 2 <= deliveries <= 0.5 / 0.001


async def test_memory_redelivery_after_errors_backs_off_to_its_bound() -> None:
    queue = MemoryQueue()
    times: list[float] = []

    async def always_raises(job: Job) -> None:
        times.append(time.monotonic())
        raise RuntimeError("poison")

    consumer = await queue.consume(always_raises, concurrency=4)
    await queue.enqueue(Job("r", "n", "d"))
    ticks = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # the loop stays responsive throughout
        await asyncio.sleep(0.01)
        ticks += 1
    await consumer.stop(drain=False)
    await queue.close()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert ticks > 50
    assert 5 <= len(times) <= 30
    assert max(gaps) <= ERROR_BACKOFF_MAX + 0.1
    assert max(gaps) >= ERROR_BACKOFF_MAX * 0.9
