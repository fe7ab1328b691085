"""The engine's per-run state steps, and their composition from the two store protocols.

Every step is idempotent under repetition with the same job, which is what makes the engine
correct on an at-least-once queue:

* :meth:`RunState.load` reads what a job needs in one go and takes the job's lease.
* :meth:`RunState.complete` commits a node's result (first commit wins), records its edges'
  arrivals at their targets once per edge, activates the targets that became ready, and
  finishes the job — all keyed by the job's identity, so a repeat changes nothing twice.
* :meth:`RunState.finalize` writes the run's final status once and wakes waiting clients.

:class:`ComposedRunState` builds these from :class:`ContextStore` and :class:`CoordinationStore`
(a few round trips per node, each step atomic on its own; the order of steps keeps every crash
point recoverable). A driver that owns both stores may offer a fused :class:`RunState` through
the ``flowcraft_make_run_state`` hook that does each step in one round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowcraft_core.engine.keys import ACTIVE_RUNS, RunKeys, run_keys
from flowcraft_core.protocols import ContextStore, CoordinationStore, Job, Op


@dataclass(slots=True)
class Arrival:
    """One outgoing edge's outcome at its target: taken (``live``) or dead."""

    target: str  # the target's job key, "node#instance"
    edge: str  # the edge's member name at the target (its index in the blueprint)
    live: bool
    join: str  # "all" | "any"
    expected: int  # number of incoming edges of the target


@dataclass(slots=True)
class Loaded:
    final: dict[str, Any] | None  # the run's final status, if it has one
    values: dict[str, Any]  # the context keys asked for that exist
    lease: bool  # whether this call took the job's lease
    failures: int = 0  # attempts of this job that failed (each scheduled its retry once)
    arrived: int = 0  # incoming edges accounted for (taken or dead)
    live: set[str] = field(default_factory=set)  # incoming edges taken
    first: str | None = None  # first taken edge (``any`` joins)
    # Set by the engine: a prefetched successor, by job key, with its load.
    successor: tuple[str, Loaded] | None = None


@dataclass(frozen=True, slots=True)
class Prefetch:
    """Ask :meth:`RunState.complete` to also load ``target`` if it becomes ready to run, as
    :meth:`RunState.load` would: the engine is about to continue with it inline."""

    target: str  # job key
    keys: Sequence[str]
    join: bool
    lease_ttl: float
    token: str


@dataclass(slots=True)
class Completion:
    committed: bool | None  # None: no commit asked; False: another commit won, nothing routed
    ready: list[tuple[str, bool]]  # targets that became ready: (job key, live?)
    done: bool = False  # nothing of the run is left to do
    awaiting: bool = False  # only parked wait nodes are left
    generation: int = 0  # number of resumes so far (names the awaiting signal)
    finalized: bool | None = None  # done and already finalized here: whether this call won
    prefetched: Loaded | None = None  # the Prefetch target's load, if it became ready


class RunState(Protocol):
    """The engine's state steps (see the module docstring)."""

    prefetches: bool
    """Whether :meth:`complete` honours a :class:`Prefetch` (else the engine never asks)."""

    async def load(
        self, job: Job, keys: Sequence[str], *, join: bool, lease_ttl: float, token: str
    ) -> Loaded: ...

    async def complete(
        self,
        job: Job,
        *,
        guard: str,
        commit: Mapping[str, Any] | None,
        arrivals: Sequence[Arrival],
        retention: float,
        prefetch: Prefetch | None = None,
    ) -> Completion:
        """Commit, route and finish ``job``. A state may also finalize a run that this makes
        done (as "completed", with ``retention``), reporting it in ``finalized``, and may
        honour ``prefetch``, reporting it in ``prefetched``."""
        ...

    async def park(self, job: Job) -> Completion: ...

    async def release(self, job: Job) -> None: ...

    async def fail_attempt(self, job: Job) -> bool: ...

    async def finalize(
        self, run_id: str, status: str, error: dict[str, Any] | None, *, retention: float
    ) -> bool: ...


def census(
    committed: bool | None,
    ready: list[tuple[str, bool]],
    activated: int,
    finished: int,
    waiting: int,
    resumed: int,
) -> Completion:
    """The :class:`Completion` that the run's token counts mean: done when no activated job
    is unfinished; awaiting when the only unfinished ones are parked wait nodes."""
    unfinished, parked = activated - finished, waiting - resumed
    return Completion(
        committed=committed,
        ready=ready,
        done=unfinished <= 0,
        awaiting=parked > 0 and unfinished == parked,
        generation=resumed,
    )


def decide(arrival: Arrival, added: bool, total: int, live: int, first: bool) -> bool | None:
    """Whether this arrival makes its target ready: True (to run), False (to skip: every
    incoming edge is dead), None (not ready, or another arrival is responsible).

    A repeated arrival (``added`` False) reports readiness again, so a job that crashed
    between recording an arrival and enqueueing the target still enqueues it on redelivery;
    enqueueing twice is harmless because the target's commit is first-wins.
    """
    complete = total >= arrival.expected
    if arrival.join == "any":
        if arrival.live and (first or not added):
            return True
        if complete and live == 0:
            return False
        return None
    if complete:
        return live > 0
    return None


class ComposedRunState:
    """:class:`RunState` composed from the two store protocols."""

    prefetches = False

    def __init__(
        self, context: ContextStore, coordination: CoordinationStore, *, ttl: float
    ) -> None:
        self.context = context
        self.coordination = coordination
        self.ttl = ttl  # bookkeeping keys outlive any run; finished runs expire sooner

    async def load(
        self, job: Job, keys: Sequence[str], *, join: bool, lease_ttl: float, token: str
    ) -> Loaded:
        rk = run_keys(job.run_id)
        jk = job.key
        ops = [
            Op.get(rk.final),
            Op.set_if_absent(rk.lease(jk), token, lease_ttl),
            Op.count(rk.failures(jk)),
        ]
        if join:
            ops += [Op.count(rk.arrived(jk)), Op.members(rk.live(jk)), Op.get(rk.first(jk))]
        results = await self.coordination.batch(ops)
        values = await self.context.get_many(job.run_id, keys) if keys else {}
        loaded = Loaded(
            final=json.loads(results[0]) if results[0] else None,
            values=values,
            lease=bool(results[1]),
            failures=results[2],
        )
        if join:
            loaded.arrived, loaded.live, loaded.first = results[3], results[4], results[5]
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
    ) -> Completion:
        committed: bool | None = None
        if commit is not None:
            committed = await self.context.commit(job.run_id, guard, commit)
            if not committed:
                return Completion(committed=False, ready=[])
        rk = run_keys(job.run_id)
        ttl = self.ttl
        ops: list[Op] = []
        for a in arrivals:
            ops.append(Op.add_member(rk.arrived(a.target), a.edge, ttl))
            if a.live:
                ops.append(Op.add_member(rk.live(a.target), a.edge, ttl))
                if a.join == "any":
                    ops.append(Op.set_if_absent(rk.first(a.target), a.edge, ttl))
            else:
                ops.append(Op.count(rk.live(a.target)))
        ready: list[tuple[str, bool]] = []
        if ops:
            results = iter(await self.coordination.batch(ops))
            for a in arrivals:
                added, total = next(results)
                first = False
                if a.live:
                    live = next(results)[1]
                    if a.join == "any":
                        first = bool(next(results))
                else:
                    live = next(results)
                verdict = decide(a, added, total, live, first)
                if verdict is not None:
                    ready.append((a.target, verdict))
        # Targets are activated before this job finishes, in one atomic batch, so the count of
        # activated-but-unfinished jobs never touches zero while work remains.
        tail = [Op.add_member(rk.activated, target, ttl) for target, _ in ready]
        tail += [Op.add_member(rk.finished, job.key, ttl), *self._census(rk, job)]
        return self._completion(committed, ready, await self.coordination.batch(tail))

    async def park(self, job: Job) -> Completion:
        rk = run_keys(job.run_id)
        ops = [Op.add_member(rk.waiting, job.key, self.ttl), *self._census(rk, job)]
        return self._completion(None, [], await self.coordination.batch(ops))

    def _census(self, rk: RunKeys, job: Job) -> list[Op]:
        return [
            Op.count(rk.activated),
            Op.count(rk.finished),
            Op.count(rk.waiting),
            Op.count(rk.resumed),
            Op.delete(rk.lease(job.key)),
            Op.set(rk.progress, repr(time.time()), self.ttl),
        ]

    @staticmethod
    def _completion(
        committed: bool | None, ready: list[tuple[str, bool]], results: list[Any]
    ) -> Completion:
        activated, finished, waiting, resumed = results[-6:-2]
        return census(committed, ready, activated, finished, waiting, resumed)

    async def release(self, job: Job) -> None:
        await self.coordination.delete(run_keys(job.run_id).lease(job.key))

    async def fail_attempt(self, job: Job) -> bool:
        """Record that ``job.attempt`` failed and release the lease; True for the first
        delivery to record it, which alone schedules the next attempt."""
        rk = run_keys(job.run_id)
        (added, _), _ = await self.coordination.batch(
            [
                Op.add_member(rk.failures(job.key), str(job.attempt), self.ttl),
                Op.delete(rk.lease(job.key)),
            ]
        )
        return bool(added)

    async def finalize(
        self, run_id: str, status: str, error: dict[str, Any] | None, *, retention: float
    ) -> bool:
        rk = run_keys(run_id)
        record = json.dumps({"status": status, "error": error})
        results = await self.coordination.batch(
            [
                Op.set_if_absent(rk.final, record, retention),
                # The run's bookkeeping goes with its context (per-node keys keep run_ttl).
                *(
                    Op.extend(key, retention)
                    for key in (rk.activated, rk.finished, rk.waiting, rk.resumed, rk.progress)
                ),
            ]
        )
        won = bool(results[0])
        # Wake waiters and tidy even when another writer won: that writer may have crashed
        # between its write and its signal.
        await self.coordination.signal(rk.signal_done, ttl=retention)
        await self.coordination.remove_member(ACTIVE_RUNS, run_id)
        await self.context.expire(run_id, retention)
        return won


def run_state_for(
    context: ContextStore,
    coordination: CoordinationStore,
    *,
    ttl: float,
    fused: bool,
    hook: Any,
) -> RunState:
    """The run state to use over these stores: a driver's fused one (through the
    ``flowcraft_make_run_state`` hook) when ``fused`` and one is offered, else the composed
    one. Engines and clients both take it from here, so a run is finalized the same way
    whoever finalizes it."""
    offered = (
        hook.flowcraft_make_run_state(context=context, coordination=coordination, ttl=ttl)
        if fused
        else None
    )
    state: RunState = offered or ComposedRunState(context, coordination, ttl=ttl)
    return state
