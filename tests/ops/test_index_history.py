"""The run index (Client.runs) and the per-node history (Client.history) on every backend."""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest
from flowcraft_conformance.scenarios import SCENARIOS_BY_NAME, registry

from flowcraft_core import Client, EngineSettings, Worker, open_backends
from flowcraft_core.errors import FlowcraftError, RunNotFound

S = SCENARIOS_BY_NAME


async def _finish(client: Client, *runs: str) -> None:
    async with Worker(registry(), client.backends, settings=client.settings):
        for run_id in runs:
            await client.result(run_id, 30)


async def test_history_records_each_attempt_once_with_times_worker_and_errors(
    backend_url: str,
) -> None:
    client = Client(open_backends(backend_url))
    try:
        retry = await client.start(S["retry"].flow, S["retry"].input)
        failure = await client.start(S["failure"].flow, S["failure"].input)
        cond = await client.start(S["conditions_dead_path_into_all_join"].flow, 5)
        before = time.time()
        await _finish(client, retry, failure, cond)

        h = await client.history(retry)
        assert (h.run_id, h.flow, h.status, h.error) == (retry, "retry", "completed", None)
        nodes = {n.node: n for n in h.nodes}
        assert [n.node for n in h.nodes] == ["f", "g"]  # in the order they started
        f = nodes["f"]
        assert f.status == "completed" and f.instance == "0"
        assert [(a.attempt, a.status) for a in f.attempts] == [
            (1, "retried"),
            (2, "retried"),
            (3, "completed"),
        ]
        assert f.attempts[0].error is not None and f.attempts[0].error["type"] == "RuntimeError"
        for a in f.attempts:
            assert a.started is not None and a.finished is not None
            assert a.started <= a.finished and a.worker and ":" in a.worker
        assert f.attempts[0].finished <= f.attempts[1].started  # type: ignore[operator]
        assert [(a.attempt, a.status) for a in nodes["g"].attempts] == [(1, "completed")]
        assert [e["event"] for e in h.events] == ["started", "completed"]
        assert h.finished is not None and h.started <= h.finished

        h = await client.history(failure)
        nodes = {n.node: n for n in h.nodes}
        assert h.status == "failed" and h.error is not None and h.error["node"] == "bad"
        assert nodes["a"].status == "completed"
        assert nodes["bad"].status == "failed"
        (attempt,) = nodes["bad"].attempts
        assert attempt.status == "failed" and attempt.error is not None
        assert attempt.error["type"] == "ValueError"
        assert "never" not in nodes  # never activated
        assert [e["event"] for e in h.events] == ["started", "failed"]

        h = await client.history(cond)
        status = {n.node: n.status for n in h.nodes}
        assert status == {
            "a": "completed",
            "big": "skipped",
            "big2": "skipped",
            "small": "completed",
            "j": "completed",
        }
        assert {n.node: len(n.attempts) for n in h.nodes}["big"] == 0
        assert h.started >= before - 60

        with pytest.raises(RunNotFound, match="no run 'nope'"):
            await client.history("nope")
    finally:
        await client.close()


async def test_wait_nodes_show_awaiting_then_resumed(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    scenario = S["wait_resume"]
    try:
        run_id = await client.start(scenario.flow, scenario.input)
        async with Worker(registry(), client.backends):
            assert (await client.result(run_id, 30)).status == "awaiting"
            h = await client.history(run_id)
            approval = {n.node: n for n in h.nodes}["approval"]
            assert approval.status == "awaiting"
            assert [a.status for a in approval.attempts] == ["awaiting"]
            assert h.status == "awaiting"
            page = await client.runs(status="awaiting")
            assert [r.run_id for r in page.runs] == [run_id]
            assert (await client.runs(status="running")).runs == []
            await client.resume(run_id, "approve", {"by": "alice"})
            assert (await client.result(run_id, 30)).status == "completed"
        h = await client.history(run_id)
        approval = {n.node: n for n in h.nodes}["approval"]
        assert approval.status == "completed"
        assert [a.status for a in approval.attempts] == ["resumed"]
        assert {n.node: n.status for n in h.nodes}["no"] == "skipped"
    finally:
        await client.close()


async def test_the_index_lists_filters_and_pages_newest_first(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    chain, failure = S["chain"], S["failure"]
    try:
        ids = []
        for i in range(5):
            scenario = chain if i % 2 == 0 else failure
            ids.append(await client.start(scenario.flow, scenario.input))
        await _finish(client, *ids)
        pending = await client.start(chain.flow, chain.input)  # no worker now: running
        newest_first = [pending, *reversed(ids)]

        page = await client.runs()
        assert [r.run_id for r in page.runs] == newest_first and page.cursor is None
        by_id = {r.run_id: r for r in page.runs}
        assert by_id[pending].status == "running" and by_id[pending].finished is None
        assert by_id[ids[0]].status == "completed" and by_id[ids[1]].status == "failed"
        assert by_id[ids[0]].flow == "chain" and by_id[ids[1]].flow == "failure"
        assert by_id[ids[0]].started <= by_id[ids[0]].finished  # type: ignore[operator]

        assert [r.run_id for r in (await client.runs(status="failed")).runs] == [ids[3], ids[1]]
        assert [r.run_id for r in (await client.runs(flow="chain")).runs] == [
            pending,
            ids[4],
            ids[2],
            ids[0],
        ]
        both = await client.runs(flow="chain", status="completed")
        assert [r.run_id for r in both.runs] == [ids[4], ids[2], ids[0]]
        assert [r.run_id for r in (await client.runs(status="running")).runs] == [pending]
        assert (await client.runs(flow="no-such-flow")).runs == []

        # Pages of two, by cursor, give the whole listing once.
        seen: list[str] = []
        cursor = None
        while True:
            page = await client.runs(limit=2, cursor=cursor)
            seen += [r.run_id for r in page.runs]
            assert len(page.runs) <= 2
            if page.cursor is None:
                break
            cursor = page.cursor
        assert seen == newest_first

        assert (await client.runs(since=time.time() + 5)).runs == []
        recent = await client.runs(since=datetime.timedelta(minutes=10))
        assert [r.run_id for r in recent.runs] == newest_first

        for bad, match in [
            ({"status": "done"}, "unknown run status 'done'"),
            ({"limit": 0}, "limit must be an integer"),
            ({"cursor": "x"}, "not a cursor"),
        ]:
            with pytest.raises(FlowcraftError, match=match):
                await client.runs(**bad)  # type: ignore[arg-type]
        # Cancelling moves a run in the index too.
        await client.cancel(pending)
        assert [r.run_id for r in (await client.runs(status="cancelled")).runs] == [pending]
        assert (await client.runs(status="running")).runs == []
    finally:
        await client.close()


async def test_finished_runs_leave_the_index_with_their_retention(backend_url: str) -> None:
    settings = EngineSettings(retention=1.0)
    client = Client(open_backends(backend_url), settings=settings)
    try:
        done = await client.start(S["chain"].flow, S["chain"].input)
        await _finish(client, done)
        kept = await client.start(S["chain"].flow, S["chain"].input)  # unfinished: kept
        assert {r.run_id for r in (await client.runs()).runs} == {done, kept}
        await asyncio.sleep(2.5)
        assert [r.run_id for r in (await client.runs()).runs] == [kept]
        assert (await client.runs(status="completed")).runs == []
    finally:
        await client.close()
