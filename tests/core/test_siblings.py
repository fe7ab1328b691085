"""Ready siblings travel together: the targets a completion makes ready share queue messages
(``EngineSettings.siblings_per_message``), each still its own job with its own commit, and a
worker still runs no more node code at once than its concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from flowcraft_core.drivers import Backends
from flowcraft_core.engine import EngineSettings
from flowcraft_core.node import NodeContext
from flowcraft_core.protocols import Job
from flowcraft_core.registry import Registry
from flowcraft_core.worker import Worker
from flowcraft_memory import MemoryQueue
from flowcraft_memory.run_state import MemoryRunState

from .helpers import bp, harness, unique_url


def fanout(width: int) -> Any:
    nodes = [{"id": "a", "uses": "work"}] + [{"id": f"b{i}", "uses": "work"} for i in range(width)]
    nodes.append({"id": "j", "uses": "work"})
    edges = [{"source": "a", "target": f"b{i}"} for i in range(width)]
    edges += [{"source": f"b{i}", "target": "j"} for i in range(width)]
    return bp(nodes, edges)


class Recording(MemoryQueue):
    """The memory queue, keeping every message it was given, and taking siblings together as
    a queue between processes does (the memory queue itself sends each job alone)."""

    sibling_messages = True

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Job] = []

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        self.messages.append(job)
        await super().enqueue(job, delay=delay)

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        self.messages.extend(jobs)
        for job in jobs:
            await super().enqueue(job, delay=delay)


@pytest.fixture(params=[False, True], ids=["bounded-from-load", "pipelined"])
def pipelined(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways a worker bounds its jobs: from load to commit by its concurrency (a run state
    whose steps in flight hold connections, as SQL's), or, for a pipelined run state (Redis's:
    a message's members load and commit in one write), its node code by its concurrency and
    its jobs between load and commit by that times the siblings a message carries."""
    monkeypatch.setattr(MemoryRunState, "pipelined", request.param)
    return bool(request.param)


def recording_backends() -> tuple[Backends, Recording]:
    from flowcraft_core.drivers import open_backends

    plain = open_backends(unique_url())
    queue = Recording()
    return Backends(queue, plain.context, plain.coordination, plain.urls), queue


def test_a_message_of_siblings_round_trips_and_names_its_members() -> None:
    job = Job("r", "b0", "d", "0", 2, {"k": "v"}, due=5.0, siblings=("b1", "b2"))
    again = Job.from_dict(job.to_dict())
    assert again == job and again.siblings == ("b1", "b2")
    assert [(m.node_id, m.attempt, m.headers, m.due, m.siblings) for m in again.members()] == [
        ("b0", 2, {"k": "v"}, 5.0, ()),
        ("b1", 2, {"k": "v"}, 5.0, ()),
        ("b2", 2, {"k": "v"}, 5.0, ()),
    ]
    assert job != Job("r", "b0", "d", "0", 2)  # a message of three is not its first job
    assert "s" not in Job("r", "b0", "d").to_dict()  # a job on its own: the old wire form
    with pytest.raises(ValueError, match="siblings must be a list of node ids"):
        Job.from_dict({**job.to_dict(), "s": "b1"})


@pytest.mark.parametrize(
    ("per_message", "sizes"),
    [(8, [7, 6, 6]), (1, [1] * 19), (19, [19]), (4, [4, 4, 4, 4, 3])],
)
async def test_a_fan_outs_branches_share_messages_split_evenly(
    per_message: int, sizes: list[int]
) -> None:
    ran: Counter[str] = Counter()

    async def work(ctx: NodeContext) -> Any:
        ran[ctx.node_id] += 1
        return 1

    backends, queue = recording_backends()
    settings = EngineSettings(siblings_per_message=per_message)
    async with harness({"work": work}, settings=settings, backends=backends) as h:
        result = await h.run(fanout(20), None)
    assert result.status == "completed", result.error
    assert ran == Counter({"a": 1, "j": 1, **{f"b{i}": 1 for i in range(20)}})
    branches = [m for m in queue.messages if m.node_id.startswith("b")]
    # One branch continued inline with the start node's delivery; 19 went to the queue.
    assert sorted((1 + len(m.siblings) for m in branches), reverse=True) == sizes
    carried = [member.node_id for m in branches for member in m.members()]
    assert len(carried) == len(set(carried)) == 19


async def test_siblings_in_one_message_run_no_more_node_code_at_once_than_the_concurrency(
    pipelined: bool,
) -> None:
    running = peak = 0

    async def work(ctx: NodeContext) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return 1

    backends, queue = recording_backends()
    async with harness({"work": work}, concurrency=2, backends=backends) as h:
        result = await h.run(fanout(24), None)
    assert result.status == "completed", result.error
    assert max(len(m.siblings) for m in queue.messages) >= 2  # messages did carry several
    assert peak == 2  # reached, never passed


async def test_a_member_that_crashes_redelivers_the_message_and_only_it_runs_again(
    pipelined: bool,
) -> None:
    ran: Counter[str] = Counter()

    async def work(ctx: NodeContext) -> Any:
        ran[ctx.node_id] += 1
        return 1

    crashed: list[str] = []

    def checkpoint(step: str, job: Job) -> None:
        # Branch b3 (queued with others) dies between running and committing, once.
        if step == "executed" and job.node_id == "b3" and not crashed:
            crashed.append(job.node_id)
            raise RuntimeError("simulated crash")

    backends, queue = recording_backends()
    async with harness({"work": work}, checkpoint=checkpoint, backends=backends) as h:
        result = await h.run(fanout(20), None)
    assert result.status == "completed", result.error
    assert crashed == ["b3"]
    (carrier,) = [m for m in queue.messages if "b3" in {x.node_id for x in m.members()}]
    assert len(carrier.siblings) >= 2  # b3 was one of several in its message
    # Its message came again: the members that had committed routed again without running,
    # b3 ran a second time, and the join ran once.
    assert ran == Counter({"a": 1, "j": 1, "b3": 2, **{f"b{i}": 1 for i in range(20) if i != 3}})
    assert result.outputs == {"a": 1, "j": 1, **{f"b{i}": 1 for i in range(20)}}


async def test_a_sibling_its_busy_worker_cannot_start_goes_to_a_free_worker(
    pipelined: bool,
) -> None:
    # Gates pass two at a time, so a fan-out of four completes only if two workers of
    # concurrency 1 share it. The start node's worker continues with one gate; the other three
    # travel in one message to the other worker, which can run one of them at a time: the
    # rest must go back to the queue for the first worker, or the run never finishes.
    barrier = asyncio.Barrier(2)
    ran: Counter[str] = Counter()

    async def gate(ctx: NodeContext) -> Any:
        ran[ctx.node_id] += 1
        await asyncio.wait_for(barrier.wait(), 5)
        return 1

    async def plain(ctx: NodeContext) -> Any:
        ran[ctx.node_id] += 1
        return 1

    flow = bp(
        [{"id": "a", "uses": "plain"}, {"id": "j", "uses": "plain"}]
        + [{"id": f"g{i}", "uses": "gate"} for i in range(4)],
        [{"source": "a", "target": f"g{i}"} for i in range(4)]
        + [{"source": f"g{i}", "target": "j"} for i in range(4)],
    )
    nodes = {"gate": gate, "plain": plain}
    backends, queue = recording_backends()
    other = Worker(Registry.of(nodes), backends, concurrency=1)
    async with harness(nodes, concurrency=1, backends=backends) as h, other:
        result = await h.run(flow, None, timeout=10)
    assert result.status == "completed", result.error
    assert ran == Counter({"a": 1, "j": 1, **{f"g{i}": 1 for i in range(4)}})
    assert any(len(m.siblings) == 2 for m in queue.messages)  # the three did travel together
    handed_back = [m.node_id for m in queue.messages if m.node_id.startswith("g")][1:]
    assert handed_back, "no gate went back to the queue on its own"


async def test_a_job_waits_for_a_slot_before_it_loads_anything() -> None:
    # A job that must wait for a slot (siblings elsewhere hold them all) has not loaded yet:
    # it holds no lease and no backend connection while it waits, and whatever happened to
    # its node meanwhile (here: another delivery takes the lease) it finds when it loads.
    ran: Counter[str] = Counter()

    async def work(ctx: NodeContext) -> Any:
        ran[ctx.node_id] += 1
        return 1

    flow = bp([{"id": "n", "uses": "work"}], [])
    async with harness({"work": work}, concurrency=1) as h:
        engine = h.worker.engine
        assert engine.slots.take()  # the only slot, as a sibling running elsewhere would
        try:
            run_id = await h.client.start(flow)
            await asyncio.sleep(0.3)
            other = await engine._load(Job(run_id, "n", h.client.compile(flow).digest))
            assert other is not None
            assert other.held, "the waiting job took the lease before it had a slot"
            await other.give_back(engine.state)
            assert ran == Counter()  # nothing ran while the slot was taken
        finally:
            engine.slots.give()
        result = await h.client.result(run_id, timeout=5)
    assert result.status == "completed", result.error
    assert ran == Counter({"n": 1})


async def test_a_pipelined_state_loads_a_messages_members_together(pipelined: bool) -> None:
    # One worker of concurrency 1, a fan-out of 8 in one message. While the first branch's node
    # code is held, the other seven have loaded too (pipelined: their loads meet in one write)
    # or have not (bounded from load: one job at a time), and no second node code started.
    release = asyncio.Event()
    started: list[str] = []

    async def work(ctx: NodeContext) -> Any:
        started.append(ctx.node_id)
        if ctx.node_id.startswith("b"):
            await asyncio.wait_for(release.wait(), 5)
        return 1

    backends, queue = recording_backends()
    settings = EngineSettings(sibling_wait=5.0, continue_steps=1)
    async with harness({"work": work}, concurrency=1, settings=settings, backends=backends) as h:
        engine = h.worker.engine
        loads = 0
        load = engine.state.load

        async def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal loads
            loads += 1
            return await load(*args, **kwargs)

        engine.state.load = counting  # type: ignore[method-assign]
        run_id = await h.client.start(fanout(8))
        for _ in range(200):
            if len(started) >= 2 and loads >= (9 if pipelined else 2):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert [n for n in started if n.startswith("b")] == [started[1]]  # one at a time
        assert loads == (9 if pipelined else 2)  # a, then all eight (or one) of the message
        release.set()
        result = await h.client.result(run_id, timeout=5)
    assert result.status == "completed", result.error
    assert max(len(m.siblings) for m in queue.messages) == 7  # the eight travelled together


async def test_a_job_waiting_for_node_code_keeps_its_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a pipelined state a job loads before it has a slot for its node code. Waiting longer
    # than its lease lasts, it keeps the lease (renewed), so a duplicate delivery meanwhile
    # finds it taken and the node runs once.
    monkeypatch.setattr(MemoryRunState, "pipelined", True)
    ran: Counter[str] = Counter()

    async def work(ctx: NodeContext) -> Any:
        ran[ctx.node_id] += 1
        return 1

    flow = bp([{"id": "n", "uses": "work"}], [])
    settings = EngineSettings(lease_ttl=0.3)
    backends, _ = recording_backends()
    async with harness({"work": work}, concurrency=1, settings=settings, backends=backends) as h:
        engine = h.worker.engine
        assert engine.node_slots is not None and engine.node_slots.take()
        try:
            run_id = await h.client.start(flow)
            await asyncio.sleep(1.0)  # over three lease lifetimes
            other = await engine._load(Job(run_id, "n", h.client.compile(flow).digest))
            assert other is not None
            assert not other.held, "a duplicate delivery took the lease of a waiting job"
            assert ran == Counter()
        finally:
            engine.node_slots.give()
        result = await h.client.result(run_id, timeout=5)
    assert result.status == "completed", result.error
    assert ran == Counter({"n": 1})
