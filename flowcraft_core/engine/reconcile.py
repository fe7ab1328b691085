"""Reconcile: find runs without progress and re-enqueue their frontier.

The frontier is every job activated but not finished, except wait nodes still parked. Handling
any of them again is safe — a committed node is never run again, an executing one is protected
by its lease — so reconcile may run anywhere, at any time, as often as wanted.

What reconcile cannot revive it reports (:func:`orphans`): an unfinished run whose bookkeeping
is gone — it expires ``run_ttl`` (30 days) after it is written, while the run's context is kept
until the run finishes or is cancelled — or whose start died before activating it. Such a run
stays "running" and keeps its context until someone cancels it.
"""

from __future__ import annotations

import dataclasses

from flowcraft_core.drivers import Backends
from flowcraft_core.engine import keys
from flowcraft_core.engine.settings import EngineSettings
from flowcraft_core.engine.state import ComposedRunState, RunState

RUN_TTL = EngineSettings().run_ttl


async def reconcile(
    backends: Backends, *, older_than: float = 300.0, state: RunState | None = None
) -> list[str]:
    """Re-enqueue the frontier of every unfinished run idle for ``older_than`` seconds.
    Returns the ids of the runs it touched. ``state`` is the run state to use (by default
    the reference composed over ``backends``; a driver's fused one keeps the same contract)."""
    if state is None:
        state = ComposedRunState(backends.context, backends.coordination, ttl=RUN_TTL)
    touched: list[str] = []
    for run_id in sorted(await state.active_runs()):
        jobs = await state.frontier(run_id, idle=older_than)
        if jobs:
            # The run's jobs carry its plugins' headers (a trace context) from its metadata.
            headers = keys.run_headers(await backends.context.get(run_id, keys.RUN))
            jobs = [dataclasses.replace(job, headers=headers).stamped() for job in jobs]
            await backends.queue.enqueue_many(jobs)
            touched.append(run_id)
    return touched


async def orphans(backends: Backends, *, state: RunState | None = None) -> list[str]:
    """The unfinished runs that nothing will ever move again: no job of theirs is activated
    (their bookkeeping expired, or their start died half way). Cancel them to free their
    context; reconcile cannot revive them."""
    if state is None:
        state = ComposedRunState(backends.context, backends.coordination, ttl=RUN_TTL)
    found: list[str] = []
    for run_id in sorted(await state.active_runs()):
        census = await state.census(run_id)
        if census.final is None and census.activated == 0:
            found.append(run_id)
    return found
