"""Contract: with ``multi_process``, processes that open the same URL share one state.

Other Python processes open the driver by URL (isolated to the test's namespace) and:

* race ``incr`` and ``add_member`` against this process: the totals are exact;
* write context keys that this process reads;
* enqueue jobs that this process's consumer receives;
* signal a key that a waiter of this process is blocked on: it wakes within the signal
  contract's bound across clients (:func:`~flowcraft_conformance.signals.wake_bound`), by push
  or by the poll the driver declares (``signal_poll_s``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from flowcraft_core.protocols import Job, Op

from .capabilities import requires
from .harness import Harness
from .queueing import Collector, make_jobs, within
from .signals import wake_bound

CHILD = r"""
import asyncio, json, sys
from flowcraft_core.plugins import default_manager
from flowcraft_core.protocols import Job

async def main(url, key, count, run_id, jobs):
    hook = default_manager().hook
    coordination = hook.flowcraft_make_coordination(url=url)
    context = hook.flowcraft_make_context(url=url) if run_id else None
    queue = hook.flowcraft_make_queue(url=url) if jobs else None
    results = []
    for i in range(count):
        results.append(await coordination.incr(key + ":n"))
        await coordination.add_member(key + ":s", f"m{i % 25}")
    if context is not None:
        await context.patch(run_id, {"from_child": {"ok": True}})
    if queue is not None:
        await queue.enqueue_many([Job.from_dict(j) for j in jobs])
    for part in {id(p): p for p in (queue, context, coordination) if p is not None}.values():
        await part.close()
    print(json.dumps(results))

asyncio.run(main(*json.loads(sys.argv[1])))
"""

SIGNALLER = r"""
import asyncio, json, sys, time
from flowcraft_core.plugins import default_manager

async def main(url, key, after):
    coordination = default_manager().hook.flowcraft_make_coordination(url=url)
    await coordination.get(key)  # connected before the clock starts
    await asyncio.sleep(after)
    await coordination.signal(key)
    print(json.dumps(time.time()))
    await coordination.close()

asyncio.run(main(*json.loads(sys.argv[1])))
"""

PER_PROCESS = 100
CHILDREN = 2


async def _child(args: list[Any], script: str = CHILD) -> Any:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        json.dumps(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    if process.returncode != 0:
        raise AssertionError(f"child process failed ({process.returncode}): {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


@requires("multi_process", "url", "coordination")
class MultiProcessContract:
    """The multi-process contract (see the module docstring)."""

    contract = "multi-process"

    def test_counters_are_atomic_across_processes(self, conformance: Harness) -> None:
        namespace = conformance.new_id("mp")
        url = conformance.target.url_for(namespace)
        assert url is not None
        store = conformance.open(namespace, components=["coordination"]).coordination
        assert store is not None
        key = namespace + ":k"

        async def body() -> tuple[list[int], list[Any]]:
            async def local() -> list[int]:
                results = []
                for i in range(PER_PROCESS):
                    results.append(await store.incr(key + ":n"))
                    await store.add_member(key + ":s", f"m{i % 25}")
                return results

            children = [_child([url, key, PER_PROCESS, "", []]) for _ in range(CHILDREN)]
            parts = await asyncio.gather(local(), *children)
            totals = await store.batch([Op.get(key + ":n"), Op.count(key + ":s")])
            return [n for part in parts for n in part], totals

        results, (final, members) = conformance.run(body(), timeout=300)
        total = PER_PROCESS * (CHILDREN + 1)
        assert sorted(results) == list(range(1, total + 1)), (
            f"incr across {CHILDREN + 1} processes lost or repeated values"
        )
        assert final == str(total), f"counter holds {final!r} after {total} incr"
        assert members == 25, f"member set counts {members}, expected 25 distinct members"

    @requires("context", "queue")
    def test_context_and_jobs_cross_processes(self, conformance: Harness) -> None:
        namespace = conformance.new_id("mp")
        url = conformance.target.url_for(namespace)
        assert url is not None
        parts = conformance.open(namespace)
        assert parts.context is not None and parts.queue is not None
        context, queue = parts.context, parts.queue
        prefix = conformance.new_id("job")
        jobs = make_jobs(prefix, 20)
        run_id = prefix + "-run"

        async def body() -> tuple[Any, set[Job]]:
            collector = Collector(prefix)
            consumer = await within(
                queue.consume(collector.handler, concurrency=4), 15.0, "Queue.consume()"
            )
            payload = [j.to_dict() for j in jobs]
            await _child([url, namespace + ":k", 1, run_id, payload])
            await collector.wait_until(lambda: collector.delivered() >= set(jobs), 15.0)
            await within(consumer.stop(), 15.0, "Consumer.stop()")
            return await context.get(run_id, "from_child"), collector.delivered()

        value, delivered = conformance.run(body(), timeout=300)
        assert value == {"ok": True}, f"a context write from another process reads {value!r}"
        missing = set(jobs) - delivered
        assert not missing, f"{len(missing)} jobs enqueued by another process never arrived"

    @requires("signal")
    def test_a_signal_from_another_process_wakes_a_waiter(self, conformance: Harness) -> None:
        namespace = conformance.new_id("mp")
        url = conformance.target.url_for(namespace)
        assert url is not None
        store = conformance.open(namespace, components=["coordination"]).coordination
        assert store is not None
        key = namespace + ":sig"

        async def wait() -> tuple[str | None, float]:
            got = await store.wait_any([key], 60.0)
            return got, time.time()

        async def body() -> tuple[str | None, float, float]:
            waiter = asyncio.create_task(wait())
            # The child signals 1 s after it has connected: the waiter is blocked by then.
            signalled_at = await _child([url, key, 1.0], SIGNALLER)
            got, woke_at = await waiter
            return got, woke_at, float(signalled_at)

        got, woke_at, signalled_at = conformance.run(body(), timeout=120)
        assert got == key, f"a signal from another process returned {got!r}"
        late, bound = woke_at - signalled_at, wake_bound(conformance, across=True)
        how = (
            f"declared poll {conformance.capability('signal_poll_s')}s"
            if conformance.has("signal_poll_s")
            else "push"
        )
        assert late < bound, (
            f"a waiter woke {late:.3f}s after another process's signal ({how}, bound {bound}s)"
        )
