"""Reconcile: find runs without progress and re-enqueue their frontier.

The frontier is every job activated but not finished, except wait nodes still parked. Handling
any of them again is safe — a committed node is never run again, an executing one is protected
by its lease — so reconcile may run anywhere, at any time, as often as wanted.
"""

from __future__ import annotations

import time

from flowcraft_core.drivers import Backends
from flowcraft_core.engine import keys
from flowcraft_core.protocols import Job, Op


async def reconcile(backends: Backends, *, older_than: float = 300.0) -> list[str]:
    """Re-enqueue the frontier of every unfinished run idle for ``older_than`` seconds.
    Returns the ids of the runs it touched."""
    coordination = backends.coordination
    touched: list[str] = []
    now = time.time()
    active: set[str] = await coordination.members(keys.ACTIVE_RUNS)
    for run_id in sorted(active):
        rk = keys.RunKeys(run_id)
        final, progress, activated, finished, waiting, resumed = await coordination.batch(
            [
                Op.get(rk.final),
                Op.get(rk.progress),
                Op.members(rk.activated),
                Op.members(rk.finished),
                Op.members(rk.waiting),
                Op.members(rk.resumed),
            ]
        )
        if final is not None:
            await coordination.remove_member(keys.ACTIVE_RUNS, run_id)
            continue
        if progress is not None and now - float(progress) < older_than:
            continue
        meta = await backends.context.get(run_id, keys.RUN)
        if not isinstance(meta, dict):
            continue  # its context expired: nothing left to resume from
        frontier = sorted(activated - finished - (waiting - resumed))
        if not frontier:
            continue
        # Each job resumes at the attempt after its last failed one, never an attempt that
        # already failed (that one would only re-announce its retry).
        failures = await coordination.batch([Op.count(rk.failures(k)) for k in frontier])
        jobs = []
        for job_key, failed in zip(frontier, failures, strict=True):
            node_id, _, instance = job_key.rpartition("#")
            jobs.append(
                Job(run_id, node_id, str(meta["digest"]), int(instance or 0), int(failed) + 1)
            )
        await backends.queue.enqueue_many(jobs)
        await coordination.set(rk.progress, repr(now))
        touched.append(run_id)
    return touched
