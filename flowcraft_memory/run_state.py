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

from flowcraft_core.engine.keys import JOIN_ANY, run_keys
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
        final = co.get_now(rk.final)
        loaded = Loaded(
            final=json.loads(final) if final else None,
            values=self._ctx.get_many_now(job.run_id, keys),
            lease=co.set_if_absent_now(rk.lease(jk), token, lease_ttl),
            failures=co.count_now(rk.failures(jk)),
        )
        if join:
            loaded.arrived = co.count_now(rk.arrived(jk))
            loaded.live = co.members_now(rk.live(jk))
            loaded.first = co.get_now(rk.first(jk))
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
        co, rk, ttl = self._co, run_keys(job.run_id), self.ttl
        committed: bool | None = None
        if commit is not None:
            committed = self._ctx.commit_now(job.run_id, guard, commit)
            if not committed:
                return Completion(committed=False, ready=[])
            if record is not None:
                co.add_member_now(rk.history(job.key), record, ttl)
        ready: list[tuple[str, bool]] = []
        for a in arrivals:
            added, total = co.add_member_now(rk.arrived(a.target), a.edge, ttl)
            first = False
            if a.live:
                live = co.add_member_now(rk.live(a.target), a.edge, ttl)[1]
                if a.join == JOIN_ANY:
                    first = co.set_if_absent_now(rk.first(a.target), a.edge, ttl)
            else:
                live = co.count_now(rk.live(a.target))
            verdict = decide(a, added, total, live, first)
            if verdict is not None:
                ready.append((a.target, verdict))
        for target, _ in ready:
            co.add_member_now(rk.activated, target, ttl)
        co.add_member_now(rk.finished, job.key, ttl)
        co.delete_now(rk.lease(job.key))
        co.set_now(rk.progress, repr(time.time()), ttl)
        final = co.get_now(rk.final)
        completion = Completion(
            committed,
            ready,
            Census(
                json.loads(final) if final else None,
                co.count_now(rk.activated),
                co.count_now(rk.finished),
                co.count_now(rk.waiting),
                co.count_now(rk.resumed),
            ),
        )
        await self._announce_idle(rk, completion.census)
        return completion
