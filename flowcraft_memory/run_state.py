"""The run state's hot steps (load, complete) done directly on the in-memory stores' dicts.

Each step runs without yielding to the event loop, so it is atomic, and it skips the
operation objects and awaits of the composed steps: the in-memory driver's per-node cost is
then mostly the engine's own. Semantics are those of
:class:`flowcraft_core.engine.state.ComposedRunState`, whose other steps (start, park, resume,
fail_attempt, missing, sleep, release, renew, finalize, census, wait, frontier) it inherits:
on these stores no await of theirs yields to the loop between a read and its write, so they are
atomic too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowcraft_core.engine.keys import (
    ARRIVED,
    FAILURES,
    FIRST,
    HISTORY,
    JOB_KEY_KINDS,
    JOIN_ANY,
    LEASE,
    LIVE,
    RunKeys,
    run_keys,
)
from flowcraft_core.engine.state import (
    Arrival,
    Census,
    Completion,
    ComposedRunState,
    Loaded,
    Prefetch,
    decide,
)
from flowcraft_core.protocols import Job
from flowcraft_memory.context import MemoryContextStore
from flowcraft_memory.coordination import MemoryCoordinationStore


class MemoryRunState(ComposedRunState):
    def __init__(
        self, context: MemoryContextStore, coordination: MemoryCoordinationStore, *, ttl: float
    ) -> None:
        super().__init__(context, coordination, ttl=ttl)
        self._ctx = context
        self._co = coordination

    async def load(
        self, job: Job, keys: Sequence[str], *, join: bool, lease_ttl: float, token: str
    ) -> Loaded:
        co, rk, jk = self._co, run_keys(job.run_id), job.key
        now = co.now()
        live = co._live
        final = live(rk.final, now)
        lease = rk.job(LEASE, jk)
        held = live(lease, now) is None
        if held:
            co._put(lease, token, lease_ttl, keep_ttl=False, now=now)
        loaded = Loaded(
            final=json.loads(final) if isinstance(final, str) else None,
            values=self._ctx.get_many_now(job.run_id, keys),
            lease=held,
            failures=_size(live(rk.job(FAILURES, jk), now)),
        )
        if join:
            loaded.arrived = _size(live(rk.job(ARRIVED, jk), now))
            members = live(rk.job(LIVE, jk), now)
            loaded.live = set(members) if isinstance(members, set) else set()
            first = live(rk.job(FIRST, jk), now)
            loaded.first = first if isinstance(first, str) else None
        return loaded

    async def complete(
        self,
        job: Job,
        *,
        guard: str,
        commit: Mapping[str, Any] | None,
        arrivals: Sequence[Arrival],
        retention: float,
        prefetch: Prefetch | None = None,
        record: str | None = None,
    ) -> Completion:
        co, rk, ttl, jk = self._co, run_keys(job.run_id), self.ttl, job.key
        now = co.now()
        add, live, job_key = co.add_member_now, co._live, rk.job
        committed: bool | None = None
        if commit is not None:
            committed = self._ctx.commit_now(job.run_id, guard, commit)
            if not committed:
                return Completion(committed=False, ready=[])
            if record is not None:
                add(job_key(HISTORY, jk), record, ttl, now)
        ready: list[tuple[str, bool]] = []
        for a in arrivals:
            target = a.target
            added, total = add(job_key(ARRIVED, target), a.edge, ttl, now)
            first = False
            if a.live:
                taken = add(job_key(LIVE, target), a.edge, ttl, now)[1]
                if a.join == JOIN_ANY:
                    first = co.set_if_absent_now(job_key(FIRST, target), a.edge, ttl, now)
            else:
                taken = _size(live(job_key(LIVE, target), now))
            verdict = decide(a, added, total, taken, first)
            if verdict is not None:
                ready.append((target, verdict))
        # The census counts of the two sets just added to are the sizes the adds report (the
        # step is atomic and at one instant): no second look at either.
        activated = 0
        for target, _ in ready:
            activated = add(rk.activated, target, ttl, now)[1]
        finished = add(rk.finished, jk, ttl, now)[1]
        co.delete_now(job_key(LEASE, jk))
        co.set_now(rk.progress, repr(time.time()), ttl, now)
        final = live(rk.final, now)
        census = Census(
            json.loads(final) if isinstance(final, str) else None,
            activated if ready else _size(live(rk.activated, now)),
            finished,
            _size(live(rk.waiting, now)),
            _size(live(rk.resumed, now)),
        )
        if census.final is None and census.waiting:  # else it cannot be awaiting
            await self._announce_idle(rk, census)
        return Completion(committed, ready, census)

    async def _keep_jobs(self, rk: RunKeys, jobs: Sequence[str], retention: float) -> None:
        # The reference's batch of extends, without an Op per key (8 per job, at every
        # finalize): the same keys, the same rule (only those that exist are extended).
        base = rk.base
        self._co.extend_many_now(
            [f"{base}{kind}:{k}" for k in jobs for kind in JOB_KEY_KINDS], retention, self._co.now()
        )


def _size(value: str | set[str] | None) -> int:
    """A set key's member count, as the store's ``count`` gives it (0 if absent or not a set)."""
    return len(value) if isinstance(value, set) else 0
