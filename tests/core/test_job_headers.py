"""Job headers: what plugins ask every job of a run to carry (a trace context) reaches every
job the run ever has — its start jobs, successors, retries, a resume and reconcile — while a
run without them keeps the old wire form, and a misbehaving plugin is left out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowcraft_core import NodeContext, open_backends
from flowcraft_core.engine import keys
from flowcraft_core.engine.reconcile import reconcile
from flowcraft_core.hookspecs import hookimpl
from flowcraft_core.plugins import Guests, new_manager
from flowcraft_core.protocols import Job
from flowcraft_core.protocols.queue import MAX_HEADER_BYTES

from .helpers import Recorder, bp, harness, unique_url


class Headers:
    def __init__(self, headers: Any) -> None:
        self.headers = headers
        self.asked: list[tuple[str, str]] = []

    @hookimpl
    def flowcraft_run_headers(self, run_id: str, flow_id: str) -> Any:
        self.asked.append((run_id, flow_id))
        if isinstance(self.headers, Exception):
            raise self.headers
        return self.headers


def manager(*plugins: Any) -> Any:
    pm = new_manager()
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_wire_form_without_headers_is_unchanged_and_round_trips_with_them() -> None:
    plain = Job("r", "n", "d", "0/2", 3)
    assert plain.to_dict() == {"r": "r", "n": "n", "f": "d", "i": "0/2", "a": 3}
    carried = Job("r", "n", "d", headers={"traceparent": "00-ab-cd-01", "ü": '"x"'})
    back = Job.from_dict(carried.to_dict())
    assert dict(back.headers) == {"traceparent": "00-ab-cd-01", "ü": '"x"'}
    # Not part of the identity: the job is the same job whatever it carries.
    assert back == plain.__class__("r", "n", "d") and hash(back) == hash(Job("r", "n", "d"))


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        (["x"], "must be an object"),
        ({"k": 1}, "must map non-empty strings to strings"),
        ({"": "v"}, "must map non-empty strings to strings"),
        ({"k": "v" * MAX_HEADER_BYTES}, f"at most {MAX_HEADER_BYTES}"),
    ],
)
def test_bad_headers_on_the_wire_are_a_clear_error(headers: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        Job.from_dict({"r": "r", "n": "n", "f": "d", "h": headers})
    assert "a job's headers" in str(caught.value)


async def test_every_job_of_a_run_carries_its_headers() -> None:
    """Start jobs, inline successors, enqueued siblings, a retry and the job a resume sends."""
    plugin = Headers({"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    recorder = Recorder()
    pm = manager(plugin, recorder)
    tries: dict[str, int] = {}

    async def step(ctx: NodeContext) -> str:
        tries[ctx.node_id] = tries.get(ctx.node_id, 0) + 1
        if ctx.node_id == "b" and ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return ctx.node_id

    blueprint = bp(
        [
            {"id": "a", "uses": "step"},
            {"id": "b", "uses": "step", "config": {"maxRetries": 2}},
            {"id": "c", "uses": "step"},
            {"id": "w", "uses": "wait"},
            {"id": "d", "uses": "step"},
        ],
        [
            {"source": "a", "target": "b"},
            {"source": "a", "target": "c"},
            {"source": "c", "target": "w"},
            {"source": "w", "target": "d"},
        ],
    )
    async with harness({"step": step}, pm=pm) as h:
        run_id = await h.client.start(blueprint)
        assert plugin.asked == [(run_id, blueprint.id)]
        assert (await h.client.result(run_id, 10)).status == "awaiting"
        await h.client.resume(run_id, output="go")
        result = await h.client.result(run_id, 10)
    assert result.status == "completed", result
    started = recorder.of("node_started")
    enqueued = recorder.of("job_enqueued")
    assert {j.node_id for j in started} == {"a", "b", "c", "d"}
    assert [j.attempt for j in started if j.node_id == "b"] == [1, 2]
    assert {j.node_id for j in enqueued} >= {"a", "b", "w"}  # a start, a retry, the resume
    for job in [*started, *enqueued]:
        assert dict(job.headers) == plugin.headers, job


async def test_reconcile_enqueues_the_frontier_with_the_runs_headers() -> None:
    plugin = Headers({"trace": "t-1"})
    pm = manager(plugin)
    backends = open_backends(unique_url(), pm=pm)
    from flowcraft_core import Client

    client = Client(backends, pm=pm)
    blueprint = bp([{"id": "a", "uses": "step"}])
    run_id = await client.start(blueprint)  # no worker: the start job stays queued
    meta = await backends.context.get(run_id, keys.RUN)
    assert keys.run_headers(meta) == {"trace": "t-1"}
    got: list[Job] = []

    async def handler(job: Job) -> None:
        got.append(job)

    consumer = await backends.queue.consume(handler)
    await asyncio.sleep(0.05)
    got.clear()
    assert await reconcile(backends, older_than=0.0) == [run_id]
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    await consumer.stop()
    await backends.close()
    assert [dict(j.headers) for j in got] == [{"trace": "t-1"}]


async def test_a_run_without_header_plugins_stores_none() -> None:
    async def step(ctx: NodeContext) -> int:
        return 1

    recorder = Recorder()
    async with harness({"step": step}, pm=manager(recorder)) as h:
        run_id = await h.client.start(bp([{"id": "a", "uses": "step"}]))
        assert (await h.client.result(run_id, 10)).status == "completed"
        meta = await h.backends.context.get(run_id, keys.RUN)
    assert keys.RUN_HEADERS not in meta
    assert all(not j.headers for j in recorder.of("node_started"))


def test_misbehaving_header_plugins_are_left_out_and_the_first_called_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good_early = Headers({"a": "early", "shared": "early"})
    good_late = Headers({"b": "late", "shared": "late"})
    raising = Headers(RuntimeError("boom"))
    wrong = Headers({"k": 5})
    huge = Headers({"big": "x" * (MAX_HEADER_BYTES - 10)})
    pm = new_manager(load_entry_points=False)
    for name, plugin in [
        ("early", good_early),
        ("raising", raising),
        ("wrong", wrong),
        ("late", good_late),
        ("huge", huge),
    ]:
        pm.register(plugin, name=name)
    merged = Guests(pm).run_headers(run_id="r", flow_id="f")
    # pluggy calls the last registered first: huge (fits alone), late (would overflow: out)...
    assert merged == {"big": "x" * (MAX_HEADER_BYTES - 10)}
    logged = caplog.text
    for name in ("raising", "wrong", "late", "early"):
        assert f"plugin {name!r}" in logged

    pm2 = manager(good_early, good_late)  # good_late registered last: called first, wins
    assert Guests(pm2).run_headers(run_id="r", flow_id="f") == {
        "a": "early",
        "b": "late",
        "shared": "late",
    }


def test_a_stamped_job_carries_when_it_was_due() -> None:
    import time

    before = time.time()
    job = Job("r", "n", "d").stamped(5.0)
    assert job.due is not None and before + 5.0 <= job.due <= time.time() + 5.0
    back = Job.from_dict(job.to_dict())
    assert back.due is not None and abs(back.due - job.due) < 0.001
    assert back == Job("r", "n", "d")  # not part of the identity
    assert "t" not in Job("r", "n", "d").to_dict()


def test_a_stamped_job_keeps_every_other_field() -> None:
    import dataclasses

    job = Job("r", "n", "d", "0/2", 3, {"h": "v"})
    stamped = job.stamped(1.0)
    for f in dataclasses.fields(Job):
        if f.name != "due":
            assert getattr(stamped, f.name) == getattr(job, f.name), f.name


async def test_queued_jobs_are_stamped_inline_ones_are_not() -> None:
    recorder = Recorder()

    async def step(ctx: NodeContext) -> str:
        return ctx.node_id

    blueprint = bp(
        [{"id": "a", "uses": "step"}, {"id": "b", "uses": "step"}, {"id": "c", "uses": "step"}],
        [{"source": "a", "target": "b"}, {"source": "a", "target": "c"}],
    )
    async with harness({"step": step}, pm=manager(recorder)) as h:
        assert (await h.run(blueprint)).status == "completed"
    started = {j.node_id: j for j in recorder.of("node_started")}
    enqueued = {j.node_id for j in recorder.of("job_enqueued")}
    assert enqueued == {"a", "b"} or enqueued == {"a", "c"}
    for node_id, job in started.items():
        assert (job.due is not None) == (node_id in enqueued), job
