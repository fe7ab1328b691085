"""The run state: every write to a run's bookkeeping, as one contract with one reference.

A run's bookkeeping (its pinned blueprint, token counts, join arrivals, leases, failed attempts,
parked waits and final status) is written only through a :class:`RunState`. The engine, the
client and reconcile call its steps; none of them builds a bookkeeping key or an operation batch
itself. :class:`ComposedRunState` is the reference: it composes every step from
:class:`ContextStore` and :class:`CoordinationStore`. A driver that owns both stores may offer a
fused copy through the ``flowcraft_make_run_state`` hook (one Lua script, one SQL transaction per
step); the conformance contract ``run state`` drives the fused copy and this reference with the
same random steps and requires the same answers and the same :class:`Census` after every step.

Contract every implementation keeps:

* **Keyed by the job's identity.** Every step that changes state is keyed by ``(run_id,
  job key, attempt)``; repeating it with the same job changes nothing twice and answers as the
  first call did, except where a step says otherwise (a repeated arrival reports readiness
  again; a lease taken once is not taken again). That is what makes the engine correct on an
  at-least-once queue.
* **Atomic where it says so.** :meth:`~RunState.load`, :meth:`~RunState.park`,
  :meth:`~RunState.fail_attempt`, :meth:`~RunState.missing` and :meth:`~RunState.finalize`'s
  final-status write are each atomic. :meth:`~RunState.complete` may be atomic as a whole (a
  fused copy) or a sequence of atomic parts (the reference: commit, arrivals, then activation
  with finish in one batch); either way the ready targets are activated no later than the job
  is finished, so the count of activated-but-unfinished jobs never reaches zero while work
  remains, and every crash point is recovered by a redelivery of the same job.
* **Leases.** :meth:`~RunState.load` takes the job's lease if it is free (``Loaded.lease``).
  Whoever took it gives it back with exactly one of: :meth:`~RunState.complete`,
  :meth:`~RunState.park`, :meth:`~RunState.fail_attempt`, :meth:`~RunState.missing`,
  :meth:`~RunState.sleep` (when the job must sleep on) or :meth:`~RunState.release`. Each of
  those releases it in the same round trip as its other writes. A lease also lapses after its
  TTL; :meth:`~RunState.renew` keeps an executing node's lease alive.
* **The census is the one formula.** A run is done when no activated job is unfinished, and
  awaiting when the only unfinished jobs are parked wait nodes (:class:`Census`). Every step that
  reports on the run reports a :class:`Census` computed from counts read in that same step.
* **Finalisation is written once.** The first :meth:`~RunState.finalize` (or a fused
  :meth:`~RunState.complete` that finalizes) wins; later ones change nothing but still wake
  waiters and tidy, since the winner may have died between its write and its signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowcraft_core.engine import history as hist
from flowcraft_core.engine import rules
from flowcraft_core.engine.keys import (
    ACTIVE_RUNS,
    ARRIVED,
    FIRST,
    INDEX_BUCKET_SECONDS,
    INDEX_FLOW,
    INDEX_STATUS,
    INPUT,
    JOB_KEY_KINDS,
    JOIN_ANY,
    LEASE,
    LIVE,
    MISSING,
    RUN,
    RUNNING,
    SLEEP,
    RunKeys,
    action_key,
    blueprint_key,
    fallback_key,
    index_bucket,
    index_key,
    index_member,
    output_key,
    parse_index_member,
    parse_subflow_member,
    route_key,
    run_keys,
)
from flowcraft_core.errors import FlowcraftError, RunExists
from flowcraft_core.instance import job_key, split_job_key
from flowcraft_core.protocols import ContextStore, CoordinationStore, Job, Op


@dataclass(slots=True)
class Arrival:
    """One outgoing edge's outcome at its target: taken (``live``) or dead."""

    target: str  # the target's job key, "node#instance"
    edge: str  # the edge's member name at the target (its index in the blueprint)
    live: bool
    join: str  # "all" | "any"
    expected: int  # number of incoming edges of the target


@dataclass(frozen=True, slots=True)
class Rejoin:
    """How a node that a fork re-runs is joined at its root instance: its ``join`` kind, the
    number of incoming edges that make it ready (``expected``; 0 for a start node), and the
    members of those edges whose source the fork keeps (their arrivals are carried over)."""

    join: str
    expected: int
    kept: frozenset[str] = frozenset()


@dataclass(slots=True)
class Loaded:
    final: dict[str, Any] | None  # the run's final status, if it has one
    values: dict[str, Any]  # the context keys asked for that exist
    lease: bool  # whether this call took the job's lease
    failures: int = 0  # attempts of this job that failed (each scheduled its retry once)
    arrived: int = 0  # incoming edges accounted for (taken or dead)
    live: set[str] = field(default_factory=set)  # incoming edges taken
    first: str | None = None  # first taken edge (``any`` joins)


@dataclass(frozen=True, slots=True)
class Prefetch:
    """Ask :meth:`RunState.complete` to also load ``target`` if it becomes ready to run, as
    :meth:`RunState.load` would: the engine is about to continue with it inline."""

    target: str  # job key
    keys: Sequence[str]
    join: bool
    lease_ttl: float
    token: str


@dataclass(frozen=True, slots=True)
class Census:
    """A run's final status and token counts, as one step read them. The only place where
    "done" and "awaiting" are decided."""

    final: dict[str, Any] | None = None  # {status, error} once finalized
    activated: int = 0  # job keys activated
    finished: int = 0  # job keys finished
    waiting: int = 0  # wait nodes parked (ever)
    resumed: int = 0  # wait nodes resumed

    @property
    def unfinished(self) -> int:
        return self.activated - self.finished

    @property
    def parked(self) -> int:
        return self.waiting - self.resumed

    @property
    def done(self) -> bool:
        """No activated job is unfinished: the run is complete (whether or not finalized);
        :data:`flowcraft_core.engine.rules.RUN_DONE`, which the Redis scripts apply too."""
        return rules.run_done(self.activated, self.finished)

    @property
    def awaiting(self) -> bool:
        """The only unfinished jobs are parked wait nodes: the run waits for a resume."""
        return self.parked > 0 and self.unfinished == self.parked

    @property
    def generation(self) -> int:
        """Resumes so far: names the signal of the run's next idle point."""
        return self.resumed

    @property
    def status(self) -> str:
        """completed, failed or cancelled once final; else awaiting or running."""
        if self.final is not None:
            return str(self.final["status"])
        return "awaiting" if self.awaiting else "running"


@dataclass(slots=True)
class Completion:
    committed: bool | None  # None: no commit asked; False: another commit won, nothing routed
    ready: list[tuple[str, bool]]  # targets that became ready: (job key, live?)
    # The run right after this step; its ``final`` is as it was before any finalization by
    # this step (reported in ``finalized``).
    census: Census = field(default_factory=Census)
    finalized: bool | None = None  # done and already finalized here: whether this call won
    prefetched: Loaded | None = None  # the Prefetch target's load, if it became ready

    @property
    def done(self) -> bool:
        return self.census.done

    @property
    def awaiting(self) -> bool:
        return self.census.awaiting


FINAL_COMPLETED = {"status": "completed", "error": None}


def final_record(status: str, error: Mapping[str, Any] | None) -> str:
    """The stored form of a run's final status (one form for every implementation)."""
    return json.dumps({"status": status, "error": dict(error) if error is not None else None})


class RunState(Protocol):
    """Every write to a run's bookkeeping (see the module docstring for the contract)."""

    prefetches: bool
    """Whether :meth:`complete` honours a :class:`Prefetch` (else the engine never asks)."""
    pipelined: bool
    """Whether many steps in flight at once share the backend's connection (their calls go
    out together), so a worker may have several jobs per unit of its concurrency between load
    and commit (a message of siblings loads together). False where each step in flight holds
    a connection of a pool, or costs as much as running it: then the jobs between load and
    commit are bounded by the concurrency itself."""

    async def start(
        self,
        run_id: str,
        *,
        input: Any,
        meta: Mapping[str, Any],
        digest: str,
        blueprint: str,
        jobs: Sequence[str],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a new run: its ``input``, ``meta`` and initial ``context`` keys in its
        context, the pinned ``blueprint``
        (JSON, by ``digest``, kept alive by every start) and the activation of its start
        ``jobs`` (job keys), all before the caller enqueues them. Raises
        :class:`~flowcraft_core.errors.RunExists`, writing nothing, when ``run_id`` already has
        a context; raises TypeError/ValueError, writing nothing, when ``input`` has no JSON
        form. Not idempotent on purpose: a second start of one id is refused. The same start
        asked again (equal ``meta``, start time included: a retry after an ambiguous failure)
        either raises RunExists because the first try stored everything, or finishes what the
        first try left undone; either way the run is then fully started."""
        ...

    async def blueprint(self, digest: str) -> str | None:
        """The pinned blueprint ``digest`` (its JSON), or None if it is not stored."""
        ...

    async def load(
        self, job: Job, keys: Sequence[str], *, join: bool, lease_ttl: float, token: str
    ) -> Loaded:
        """Atomically read what ``job`` needs (the run's final status, the context ``keys``
        that exist, its failed attempts and, with ``join``, its arrivals) and take its lease
        with ``token`` for ``lease_ttl`` seconds if no one holds it."""
        ...

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
        """Commit ``commit`` first-wins on ``guard`` (when given; if another commit won,
        nothing else happens and ``committed`` is False) and, with it, add ``record`` (an
        :func:`~flowcraft_core.engine.history.attempt_record`) to the job's history — only
        the winning commit does, so a redelivery never records a second execution —, record
        each arrival at its target
        once per edge, activate the targets that became ready (:func:`decide`), finish the job
        and release its lease. A state may also finalize a run this makes done (as
        "completed", kept for ``retention``), reporting it in ``finalized``, and may honour
        ``prefetch``, reporting the target's load in ``prefetched``. When the run is left
        awaiting, its idle signal for the census's generation is latched."""
        ...

    async def park(
        self, job: Job, member: str | None = None, *, record: str | None = None
    ) -> Completion:
        """Record the wait node ``job`` as parked (as ``member`` if given: a subflow job parks
        once per time its child awaits, see :func:`~flowcraft_core.engine.keys.subflow_member`),
        adding ``record`` to its history, and release its lease; latch the idle signal when
        that leaves the run awaiting. Idempotent (a repeated record of an equal outcome is told
        apart on reading)."""
        ...

    async def resume(
        self, job: Job, *, guard: str, commit: Mapping[str, Any], record: str | None = None
    ) -> bool:
        """Commit the parked wait node's result first-wins on ``guard`` and mark it resumed
        (before the caller enqueues it, so the run never looks idle in between), adding
        ``record`` to its history. The mark is made even when another resume won the commit,
        since that caller may have died right after it. True when this call's commit won."""
        ...

    async def parked(self, run_id: str) -> list[str]:
        """The members parked and not yet resumed (wait nodes' job keys, subflow jobs'
        :func:`~flowcraft_core.engine.keys.subflow_member`), sorted."""
        ...

    async def unpark(self, run_id: str, members: Sequence[str]) -> None:
        """Mark resumed each of ``members`` that is parked (a subflow job whose child no longer
        awaits at that generation); members never parked are left alone, so the census never
        counts a resume without its park. Idempotent."""
        ...

    async def store_blueprint(self, digest: str, blueprint: str) -> None:
        """Pin ``blueprint`` (JSON) by ``digest`` as :meth:`start` pins a run's own: the
        blueprints a run's subflows reach, pinned when the run starts."""
        ...

    async def adopt(self, run_id: str, child_id: str) -> None:
        """Record ``child_id`` as a subflow run of ``run_id`` (before it is started, so every
        started child is listed). Idempotent."""
        ...

    async def children(self, run_id: str) -> list[str]:
        """The ids of the subflow runs ``run_id`` started (or was about to), sorted."""
        ...

    async def fail_attempt(self, job: Job, *, record: str | None = None) -> bool:
        """Record that ``job.attempt`` failed (with ``record`` in its history) and release
        the lease; True for the first delivery to record it, which alone schedules the next
        attempt."""
        ...

    async def missing(self, job: Job) -> int:
        """Count a delivery of ``job`` that found no implementation, and release its lease.
        Returns the count so far (every call counts: it bounds redeliveries, not attempts)."""
        ...

    async def sleep(self, job: Job, duration: float) -> float:
        """Seconds the sleep node ``job`` has still to sleep, its wake time fixed by the first
        call (``duration`` seconds from then). When it is more than a millisecond, the lease
        is released: the caller enqueues the job again for then."""
        ...

    async def release(self, job: Job) -> None:
        """Give back ``job``'s lease (a no-op if it is not held)."""
        ...

    async def renew(self, job: Job, lease_ttl: float) -> bool:
        """Extend ``job``'s lease by ``lease_ttl`` seconds; False if it no longer exists."""
        ...

    async def finalize(
        self, run_id: str, status: str, error: dict[str, Any] | None, *, retention: float
    ) -> bool:
        """Write the run's final status once (True for the call that wrote it), with its
        ``ended`` record and its move in the run index from running to that status, then —
        every time — wake its waiters, drop it from the active runs and keep its context and
        bookkeeping for ``retention`` seconds: the run-wide keys and every activated job's
        own keys (its history among them), whether ``retention`` is shorter or longer than
        the ``ttl`` they were written with."""
        ...

    async def census(self, run_id: str) -> Census:
        """The run's final status and token counts, read atomically."""
        ...

    async def wait(self, run_id: str, generation: int | None, timeout: float | None) -> None:
        """Block until the run is finalized or, when ``generation`` is given, reaches the idle
        point of that generation (or ``timeout`` seconds pass). Woken by a push."""
        ...

    async def active_runs(self) -> set[str]:
        """The ids of the runs started and not yet finalized (reconcile's work list)."""
        ...

    async def runs(
        self,
        *,
        status: str | None = None,
        flow: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> hist.RunPage:
        """Runs newest first from the run index (written by :meth:`start` and
        :meth:`finalize`, never a scan of the keyspace), filtered by ``status``, blueprint id
        ``flow`` and start time ``since``; ``cursor`` continues a previous page. A run whose
        context expired (after its retention) is not listed."""
        ...

    async def history(self, run_id: str) -> hist.RunHistory | None:
        """The run's per-node history and events (None for a run that does not exist)."""
        ...

    async def reopen(
        self,
        run_id: str,
        *,
        reset: Collection[str] = (),
        restart: Sequence[str] = (),
        rejoin: Mapping[str, Rejoin] | None = None,
        fallbacks: Mapping[str, str] | None = None,
        max_retries: Mapping[str, int] | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Reopen a finished run for a retry, and return the jobs to enqueue (after it).

        Every job of a node in ``reset`` is un-done: its committed output, action and
        fallback output (``fallbacks``: node → its fallback's id) are deleted, it leaves the
        activated and finished jobs, and its arrivals are forgotten but, at the root instance
        of a node in ``rejoin``, those of its :class:`Rejoin` ``kept`` edges (from the nodes
        not reset, which will not arrive again); such a node is activated when those alone
        make it ready, as :meth:`fork` does. Committed results of every other node stay as
        they are. ``restart`` (job keys) are activated.
        The final status goes (kept in the events, with ``event``), the run is active and
        indexed as running again, and its keys are kept for the run TTL again. The jobs
        returned are every activated, unfinished job but parked waits, each at the first
        attempt of its next round of ``max_retries`` (by node id) attempts.

        Raises FlowcraftError, changing nothing, when the run is not finished or another
        reopen of it is under way. Context first, then one batch of bookkeeping: a crash
        between leaves the run finished, and a second retry completes the first."""
        ...

    async def fork(
        self,
        source: str,
        run_id: str,
        *,
        meta: Mapping[str, Any],
        reset: Mapping[str, Rejoin],
        fallbacks: Mapping[str, str] | None = None,
        max_retries: Mapping[str, int] | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        """Start ``run_id`` as a fork of the finished run ``source`` and return the jobs to
        enqueue (after it): what :meth:`reopen` would make of ``source``, written to a new run
        while ``source`` is left as it was.

        The new run has ``meta`` (its own start time) and ``source``'s context but the results
        of every job of a node in ``reset`` (as :meth:`reopen` deletes them; ``fallbacks``
        alike); every other job keeps its activation, finish, parked wait, failed attempts
        and history. A reset node's join state at its root instance is rebuilt from the
        arrivals of its :class:`Rejoin` ``kept`` edges, and it is activated when those alone
        make it ready (its run or its skip), as :func:`decide` would. The jobs returned are
        every activated, unfinished job but parked waits, each at the first attempt of its
        next round of ``max_retries`` attempts. The new run is indexed as running, its
        events start with ``event``, its blueprint is kept for the run TTL again.

        Raises FlowcraftError, writing nothing, when ``source`` is not finished, a retry or
        fork of it is under way, or nothing would run (no reset node is ready and no kept
        job is unfinished). Context first (first-wins on the new id, so RunExists if it is
        taken), then one batch of bookkeeping: a crash between leaves the new run stored and
        never activated (reported running; cancel finalizes it), and ``source`` untouched."""
        ...

    async def frontier(self, run_id: str, *, idle: float) -> list[Job]:
        """The jobs that reconcile re-enqueues for a run with no progress for ``idle`` seconds:
        every job activated and not finished, except parked wait nodes, each at the attempt
        after its last failed one. Returns [] for a run that progressed recently, whose context
        expired, or that is finalized (which also leaves the active runs). When it returns
        jobs it marks progress now, so concurrent reconciles do not all enqueue them; a
        reconcile that dies before enqueueing is retried ``idle`` seconds later."""
        ...


def decide(arrival: Arrival, added: bool, total: int, live: int, first: bool) -> bool | None:
    """Whether this arrival makes its target ready: True (to run), False (to skip: every
    incoming edge is dead), None (not ready, or another arrival is responsible).

    The rule is :data:`flowcraft_core.engine.rules.JOIN_DECISION`, written once there for this
    and for the Redis driver's Lua (a repeated arrival reports readiness again, see there).
    """
    return rules.decide(arrival.join, arrival.live, added, first, total, arrival.expected, live)


def index_ops(
    meta: Mapping[str, Any], run_id: str, status: str, ttl: float, *, leaving: bool = False
) -> list[Op]:
    """The run index's writes for a run (by its metadata) entering ``status`` (or, with
    ``leaving``, leaving it): its member in the status's set and in the (status, blueprint)
    set of its start hour. Entering renews each set's TTL to ``ttl`` plus the bucket's width,
    which outlasts every member added before."""
    started = float(meta["started"])
    bucket = index_bucket(started)
    member = index_member(started, run_id)
    sets = (
        index_key(INDEX_STATUS, bucket, status),
        index_key(INDEX_FLOW, bucket, f"{status}:{meta['flow']}"),
    )
    if leaving:
        return [Op.remove_member(key, member) for key in sets]
    ttl = ttl + INDEX_BUCKET_SECONDS
    return [op for key in sets for op in (Op.add_member(key, member, ttl), Op.extend(key, ttl))]


def ended_record(status: str, at: float) -> str:
    return json.dumps({"status": status, "at": at})


def job_for(run_id: str, digest: str, job_key: str, attempt: int = 1) -> Job:
    """The :class:`Job` of ``job_key`` (``node#instance``) in ``run_id``."""
    node_id, instance = split_job_key(job_key)
    return Job(run_id, node_id, digest, instance, attempt)


def join_reads(rk: RunKeys, key: str) -> list[Op]:
    """What :func:`rejoined` reads of job ``key``'s join state: arrived, live, first."""
    return [Op.members(rk.arrived(key)), Op.members(rk.live(key)), Op.get(rk.first(key))]


def rejoined(
    rk: RunKeys, key: str, rejoin: Rejoin, read: Sequence[Any], ttl: float
) -> tuple[list[Op], bool]:
    """Job ``key``'s join state rebuilt (in the run of ``rk``) from its arrivals ``read``
    (:func:`join_reads`, of the run a retry or fork starts from) over ``rejoin.kept`` edges,
    and whether those alone make it ready, to run or to skip (every arrival dead): the join
    rule (:data:`rules.JOIN_DECISION`) applied as if the kept arrivals had just been recorded,
    a live one holding the ``any`` join's first slot (the first kept one, if the first was not
    kept). The writes expect the join state to be empty."""
    arrived, live = set(read[0]) & rejoin.kept, set(read[1]) & rejoin.kept
    first = read[2] if read[2] in live else min(live, default=None)
    ops = [Op.add_member(rk.arrived(key), m, ttl) for m in sorted(arrived)]
    ops += [Op.add_member(rk.live(key), m, ttl) for m in sorted(live)]
    if rejoin.join == JOIN_ANY and first is not None:
        ops.append(Op.set(rk.first(key), first, ttl))
    verdict = rules.decide(
        rejoin.join, bool(live), True, first is not None, len(arrived), rejoin.expected, len(live)
    )
    return ops, verdict is not None


def undone_results(undone: Collection[str], fallbacks: Mapping[str, str]) -> list[str]:
    """The context keys of the results of jobs ``undone`` (job keys) by a retry or a fork:
    each one's output, action, fallback mark and route, and its fallback's output and action
    (``fallbacks``: node id → its fallback's id)."""
    found = []
    for key in sorted(undone):
        node, inst = split_job_key(key)
        found += [
            output_key(node, inst),
            action_key(node, inst),
            fallback_key(node, inst),
            route_key(node, inst),
        ]
        if node in fallbacks:
            found += [output_key(fallbacks[node], inst), action_key(fallbacks[node], inst)]
    return found


def next_rounds(
    run_id: str,
    digest: str,
    failed: Mapping[str, int],
    max_retries: Mapping[str, int],
    ops: list[Op],
    ttl: float,
) -> list[Job]:
    """The jobs that continue ``failed`` (job key → its failed attempts so far), each at the
    first attempt of its next round of ``max_retries`` (by node id) attempts; appends to
    ``ops`` the writes that pad its failures to the end of the round that failed, so
    attempts stay contiguous and the next round starts fresh (engine.has_next_attempt
    counts rounds)."""
    jobs = []
    for key, count in failed.items():
        rounds = max(max_retries.get(split_job_key(key)[0], 1), 1)
        end = -(-int(count) // rounds) * rounds
        ops += [
            Op.add_member(run_keys(run_id).failures(key), str(n), ttl)
            for n in range(count + 1, end + 1)
        ]
        jobs.append(job_for(run_id, digest, key, end + 1))
    return jobs


#: Seconds a reopen holds its run's marker at most (a retry that died lets go by then).
REOPEN_SECONDS = 60.0


class ComposedRunState:
    """The reference :class:`RunState`, composed from the two store protocols: a few round trips
    per step, each part atomic on its own, in an order that keeps every crash point
    recoverable."""

    prefetches = False
    pipelined = False

    def __init__(
        self, context: ContextStore, coordination: CoordinationStore, *, ttl: float
    ) -> None:
        self.context = context
        self.coordination = coordination
        self.ttl = ttl  # bookkeeping keys outlive any run; finished runs expire sooner

    async def start(
        self,
        run_id: str,
        *,
        input: Any,
        meta: Mapping[str, Any],
        digest: str,
        blueprint: str,
        jobs: Sequence[str],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        # The context commit is first-wins on the run's metadata: it is what refuses a second
        # start. A client dying between it and the batch leaves a run stored but never
        # activated (reported running; cancel finalizes it); nothing is ever half-activated.
        values = {**(context or {}), INPUT: input, RUN: dict(meta)}
        # The same metadata (its start time included) is this very start, asked again after a
        # failure that hid how far it got: the commit happened, the activation below perhaps
        # not, and the caller is about to enqueue the start jobs. Every write of the
        # activation is idempotent, so it is made again; any other start of this id is refused.
        if not await self.context.commit(run_id, RUN, values) and await self.context.get(
            run_id, RUN
        ) != dict(meta):
            raise RunExists(f"a run with id {run_id!r} already exists; it was left unchanged")
        rk = run_keys(run_id)
        ttl = self.ttl
        bp_key = blueprint_key(digest)
        await self.coordination.batch(
            [
                Op.set_if_absent(bp_key, blueprint, ttl),
                Op.extend(bp_key, ttl),
                *(Op.add_member(rk.activated, key, ttl) for key in jobs),
                Op.add_member(ACTIVE_RUNS, run_id),
                Op.set(rk.progress, repr(time.time()), ttl),
                *index_ops(meta, run_id, RUNNING, ttl),
            ]
        )

    async def blueprint(self, digest: str) -> str | None:
        return await self.coordination.get(blueprint_key(digest))

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
        record: str | None = None,
    ) -> Completion:
        committed: bool | None = None
        rk = run_keys(job.run_id)
        ttl = self.ttl
        ops: list[Op] = []
        if commit is not None:
            committed = await self.context.commit(job.run_id, guard, commit)
            if not committed:
                return Completion(committed=False, ready=[])
            if record is not None:
                # Only the winning commit records its attempt; a crash before this batch
                # loses the record, never the commit (the history is an account, not state).
                ops.append(Op.add_member(rk.history(job.key), record, ttl))
        for a in arrivals:
            ops.append(Op.add_member(rk.arrived(a.target), a.edge, ttl))
            if a.live:
                ops.append(Op.add_member(rk.live(a.target), a.edge, ttl))
                if a.join == JOIN_ANY:
                    ops.append(Op.set_if_absent(rk.first(a.target), a.edge, ttl))
            else:
                ops.append(Op.count(rk.live(a.target)))
        ready: list[tuple[str, bool]] = []
        if ops:
            results = iter(await self.coordination.batch(ops))
            if committed and record is not None:
                next(results)
            for a in arrivals:
                added, total = next(results)
                first = False
                if a.live:
                    live = next(results)[1]
                    if a.join == JOIN_ANY:
                        first = bool(next(results))
                else:
                    live = next(results)
                verdict = decide(a, added, total, live, first)
                if verdict is not None:
                    ready.append((a.target, verdict))
        # Targets are activated before this job finishes, in one atomic batch, so the count of
        # activated-but-unfinished jobs never touches zero while work remains.
        tail = [Op.add_member(rk.activated, target, ttl) for target, _ in ready]
        tail += [Op.add_member(rk.finished, job.key, ttl), *self._census_ops(rk, job)]
        completion = Completion(
            committed, ready, self._census_of(await self.coordination.batch(tail))
        )
        await self._announce_idle(rk, completion.census)
        return completion

    async def park(
        self, job: Job, member: str | None = None, *, record: str | None = None
    ) -> Completion:
        rk = run_keys(job.run_id)
        ops = [
            Op.add_member(rk.waiting, member or job.key, self.ttl),
            *self._census_ops(rk, job),
        ]
        if record is not None:
            ops.insert(0, Op.add_member(rk.history(job.key), record, self.ttl))
        completion = Completion(None, [], self._census_of(await self.coordination.batch(ops)))
        await self._announce_idle(rk, completion.census)
        return completion

    def _census_ops(self, rk: RunKeys, job: Job) -> list[Op]:
        """The tail of a step that finishes with ``job``: census counts, lease, progress."""
        return [
            Op.get(rk.final),
            Op.count(rk.activated),
            Op.count(rk.finished),
            Op.count(rk.waiting),
            Op.count(rk.resumed),
            Op.delete(rk.lease(job.key)),
            Op.set(rk.progress, repr(time.time()), self.ttl),
        ]

    @staticmethod
    def _census_of(results: list[Any]) -> Census:
        final, activated, finished, waiting, resumed = results[-7:-2]
        return Census(json.loads(final) if final else None, activated, finished, waiting, resumed)

    async def _announce_idle(self, rk: RunKeys, census: Census) -> None:
        if census.awaiting and census.final is None:
            await self.coordination.signal(rk.signal_idle(census.generation), ttl=self.ttl)

    async def resume(
        self, job: Job, *, guard: str, commit: Mapping[str, Any], record: str | None = None
    ) -> bool:
        won = await self.context.commit(job.run_id, guard, commit)
        rk = run_keys(job.run_id)
        ops = [Op.add_member(rk.resumed, job.key, self.ttl)]
        if won and record is not None:
            ops.append(Op.add_member(rk.history(job.key), record, self.ttl))
        await self.coordination.batch(ops)
        return won

    async def parked(self, run_id: str) -> list[str]:
        rk = run_keys(run_id)
        waiting, resumed = await self.coordination.batch(
            [Op.members(rk.waiting), Op.members(rk.resumed)]
        )
        return sorted(waiting - resumed)

    async def unpark(self, run_id: str, members: Sequence[str]) -> None:
        rk = run_keys(run_id)
        # Members are only ever added to the waiting set, so one seen there stays parked
        # until marked resumed: reading first and marking after is safe.
        waiting = await self.coordination.members(rk.waiting)
        todo = [m for m in members if m in waiting]
        if todo:
            await self.coordination.batch([Op.add_member(rk.resumed, m, self.ttl) for m in todo])

    async def store_blueprint(self, digest: str, blueprint: str) -> None:
        key = blueprint_key(digest)
        await self.coordination.batch(
            [Op.set_if_absent(key, blueprint, self.ttl), Op.extend(key, self.ttl)]
        )

    async def adopt(self, run_id: str, child_id: str) -> None:
        await self.coordination.add_member(run_keys(run_id).children, child_id, ttl=self.ttl)

    async def children(self, run_id: str) -> list[str]:
        return sorted(await self.coordination.members(run_keys(run_id).children))

    async def release(self, job: Job) -> None:
        await self.coordination.delete(run_keys(job.run_id).lease(job.key))

    async def renew(self, job: Job, lease_ttl: float) -> bool:
        return await self.coordination.extend(run_keys(job.run_id).lease(job.key), lease_ttl)

    async def fail_attempt(self, job: Job, *, record: str | None = None) -> bool:
        rk = run_keys(job.run_id)
        ops = [
            Op.add_member(rk.failures(job.key), str(job.attempt), self.ttl),
            Op.delete(rk.lease(job.key)),
        ]
        if record is not None:
            ops.append(Op.add_member(rk.history(job.key), record, self.ttl))
        (added, _), *_ = await self.coordination.batch(ops)
        return bool(added)

    async def missing(self, job: Job) -> int:
        rk = run_keys(job.run_id)
        tries, _ = await self.coordination.batch(
            [Op.incr(rk.missing(job.key), ttl=self.ttl), Op.delete(rk.lease(job.key))]
        )
        return int(tries)

    async def sleep(self, job: Job, duration: float) -> float:
        rk = run_keys(job.run_id)
        key = rk.sleep(job.key)
        wake = repr(time.time() + duration)
        _, stored = await self.coordination.batch(
            [Op.set_if_absent(key, wake, self.ttl), Op.get(key)]
        )
        remaining = float(stored or wake) - time.time()
        if remaining <= 0.001:
            return 0.0
        await self.release(job)
        return remaining

    async def finalize(
        self, run_id: str, status: str, error: dict[str, Any] | None, *, retention: float
    ) -> bool:
        rk = run_keys(run_id)
        meta = await self.context.get(run_id, RUN)
        results = await self.coordination.batch(
            [
                Op.set_if_absent(rk.final, final_record(status, error), retention),
                Op.set_if_absent(rk.ended, ended_record(status, time.time()), retention),
                # The run's bookkeeping goes with its context.
                *(Op.extend(key, retention) for key in rk.run_wide),
                Op.get(rk.final),
                Op.members(rk.activated),
            ]
        )
        won = bool(results[0])
        # Every job's own keys too, found through the activated set (a finished run activates
        # no more): left at run_ttl, a job's history would outlive its run by weeks, or, with
        # a retention longer than run_ttl, vanish while the run is still kept.
        jobs = sorted(results[-1])
        if jobs:
            await self._keep_jobs(rk, jobs, retention)
        if isinstance(meta, dict):
            # Moved to the status stored (the winner's), by every call: one that finds the
            # winner died before this batch repairs it. Until then a listing, which checks
            # each run's final status, shows the run as it is, just under "running".
            stored = json.loads(results[-2])["status"]
            await self.coordination.batch(
                [
                    *index_ops(meta, run_id, RUNNING, 0, leaving=True),
                    *index_ops(meta, run_id, stored, retention),
                ]
            )
        # Wake waiters and tidy even when another writer won: that writer may have crashed
        # between its write and its signal.
        await self.coordination.signal(rk.signal_done, ttl=retention)
        await self.coordination.remove_member(ACTIVE_RUNS, run_id)
        await self.context.expire(run_id, retention)
        return won

    async def _keep_jobs(self, rk: RunKeys, jobs: Sequence[str], retention: float) -> None:
        """Give every existing per-job key of ``jobs`` (all of :data:`JOB_KEY_KINDS`) a TTL of
        ``retention`` (part of :meth:`finalize`)."""
        await self.coordination.batch(
            [Op.extend(rk.job(kind, k), retention) for k in jobs for kind in JOB_KEY_KINDS]
        )

    async def census(self, run_id: str) -> Census:
        rk = run_keys(run_id)
        final, activated, finished, waiting, resumed = await self.coordination.batch(
            [
                Op.get(rk.final),
                Op.count(rk.activated),
                Op.count(rk.finished),
                Op.count(rk.waiting),
                Op.count(rk.resumed),
            ]
        )
        return Census(json.loads(final) if final else None, activated, finished, waiting, resumed)

    async def wait(self, run_id: str, generation: int | None, timeout: float | None) -> None:
        rk = run_keys(run_id)
        signals = [rk.signal_done]
        if generation is not None:
            signals.append(rk.signal_idle(generation))
        await self.coordination.wait_any(signals, timeout)

    async def active_runs(self) -> set[str]:
        return await self.coordination.members(ACTIVE_RUNS)

    async def runs(
        self,
        *,
        status: str | None = None,
        flow: str | None = None,
        since: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> hist.RunPage:
        now = time.time()
        oldest = since if since is not None else now - 2 * self.ttl
        if status in (None, "any"):
            stored = [RUNNING, "completed", "failed", "cancelled"]
        elif status in (hist.RUNNING, hist.AWAITING):
            stored = [RUNNING]
        else:
            stored = [status]
        top = now if cursor is None else parse_index_member(cursor)[0]
        bucket, low = index_bucket(top), index_bucket(oldest)
        found: list[hist.RunSummary] = []
        last: str | None = None
        while bucket >= low and len(found) <= limit:
            # A day of buckets per batch: one round trip for a day of sparse history.
            chunk = range(bucket, max(low, bucket - 23) - 1, -1)
            sets = await self.coordination.batch(
                [
                    Op.members(
                        index_key(INDEX_FLOW, b, f"{st}:{flow}")
                        if flow is not None
                        else index_key(INDEX_STATUS, b, st)
                    )
                    for b in chunk
                    for st in stored
                ]
            )
            members = sorted(
                {
                    m
                    for group in sets
                    for m in group
                    if (cursor is None or m < cursor) and parse_index_member(m)[0] >= oldest
                },
                reverse=True,
            )
            for start in range(0, len(members), max(limit, 16)):
                part = members[start : start + max(limit, 16)]
                for member, summary in zip(part, await self._summaries(part), strict=True):
                    if summary is None or (flow is not None and summary.flow != flow):
                        continue
                    if status not in (None, "any") and summary.status != status:
                        continue
                    if len(found) == limit:
                        return hist.RunPage(found, last)
                    found.append(summary)
                    last = member
            bucket = chunk[-1] - 1
        return hist.RunPage(found, None)

    async def _summaries(self, members: Sequence[str]) -> list[hist.RunSummary | None]:
        """Each indexed run as it is now (None when its context expired)."""
        ids = [parse_index_member(m)[1] for m in members]
        ops: list[Op] = []
        for run_id in ids:
            rk = run_keys(run_id)
            ops += [
                Op.get(rk.final),
                Op.get(rk.ended),
                Op.count(rk.activated),
                Op.count(rk.finished),
                Op.count(rk.waiting),
                Op.count(rk.resumed),
            ]
        results = await self.coordination.batch(ops) if ops else []
        metas = await asyncio.gather(*(self.context.get(run_id, RUN) for run_id in ids))
        out: list[hist.RunSummary | None] = []
        for i, (run_id, meta) in enumerate(zip(ids, metas, strict=True)):
            if not isinstance(meta, dict):
                out.append(None)
                continue
            final, ended, *counts = results[6 * i : 6 * i + 6]
            census = Census(json.loads(final) if final else None, *counts)
            finished = json.loads(ended)["at"] if ended and census.final else None
            out.append(
                hist.RunSummary(
                    run_id, str(meta["flow"]), census.status, float(meta["started"]), finished
                )
            )
        return out

    async def history(self, run_id: str) -> hist.RunHistory | None:
        meta = await self.context.get(run_id, RUN)
        if not isinstance(meta, dict):
            return None
        rk = run_keys(run_id)
        activated, finished, waiting, resumed, final, ended, events = await self.coordination.batch(
            [
                Op.members(rk.activated),
                Op.members(rk.finished),
                Op.members(rk.waiting),
                Op.members(rk.resumed),
                Op.get(rk.final),
                Op.get(rk.ended),
                Op.members(rk.events),
            ]
        )
        census = Census(
            json.loads(final) if final else None,
            len(activated),
            len(finished),
            len(waiting),
            len(resumed),
        )
        keys = sorted(activated)
        digest = str(meta["digest"])
        jobs = [job_for(run_id, digest, key) for key in keys]
        stored = await self.coordination.batch(
            [
                *(Op.members(rk.history(key)) for key in keys),
                *(Op.get(rk.lease(key)) for key in keys),
            ]
        )
        outputs = await self.context.get_many(
            run_id, [output_key(job.node_id, job.instance) for job in jobs]
        )
        nodes = [
            hist.node_history(
                hist.StoredJob(
                    node=job.node_id,
                    instance=job.instance,
                    records=stored[i],
                    finished=key in finished,
                    committed=output_key(job.node_id, job.instance) in outputs,
                    leased=stored[len(keys) + i] is not None,
                    parked=key in waiting and key not in resumed,
                ),
                run_status=census.status,
            )
            for i, (key, job) in enumerate(zip(keys, jobs, strict=True))
        ]
        nodes.sort(key=lambda n: (hist.started_at(n), n.node, str(n.instance)))
        timeline: list[dict[str, Any]] = [{"event": "started", "at": float(meta["started"])}]
        timeline += [json.loads(e) for e in events]
        done: float | None = None
        if ended and census.final is not None:
            end = json.loads(ended)
            done = float(end["at"])
            timeline.append({"event": end["status"], "at": done})
        timeline.sort(key=lambda e: float(e.get("at") or 0.0))
        return hist.RunHistory(
            run_id=run_id,
            flow=str(meta["flow"]),
            status=census.status,
            started=float(meta["started"]),
            finished=done,
            nodes=nodes,
            events=timeline,
            error=census.final.get("error") if census.final else None,
        )

    async def reopen(
        self,
        run_id: str,
        *,
        reset: Collection[str] = (),
        restart: Sequence[str] = (),
        rejoin: Mapping[str, Rejoin] | None = None,
        fallbacks: Mapping[str, str] | None = None,
        max_retries: Mapping[str, int] | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        rk, ttl = run_keys(run_id), self.ttl
        async with self._reopening(run_id, f"another retry of run {run_id} is under way"):
            return await self._reopen(
                run_id,
                rk,
                ttl,
                set(reset),
                list(restart),
                dict(rejoin or {}),
                dict(fallbacks or {}),
                dict(max_retries or {}),
                dict(event or {}),
            )

    @contextlib.asynccontextmanager
    async def _reopening(self, run_id: str, busy: str) -> AsyncIterator[None]:
        """Hold ``run_id``'s reopening marker while a retry or fork reads and rewrites its
        bookkeeping (a second one meanwhile would change what the first reads): raise
        ``busy`` if another holds it."""
        marker = run_keys(run_id).reopening
        if not await self.coordination.set_if_absent(marker, "1", ttl=REOPEN_SECONDS):
            raise FlowcraftError(busy)
        try:
            yield
        finally:
            await self.coordination.delete(marker)

    async def _ended(self, rk: RunKeys) -> tuple[set[str], set[str], set[str], set[str], Any]:
        """A finished run's activated, finished, waiting and resumed sets and final status,
        as a retry or fork starts from them."""
        activated, finished, waiting, resumed, final = await self.coordination.batch(
            [
                Op.members(rk.activated),
                Op.members(rk.finished),
                Op.members(rk.waiting),
                Op.members(rk.resumed),
                Op.get(rk.final),
            ]
        )
        return activated, finished, waiting, resumed, final

    async def _reopen(
        self,
        run_id: str,
        rk: RunKeys,
        ttl: float,
        reset: set[str],
        restart: list[str],
        rejoin: dict[str, Rejoin],
        fallbacks: dict[str, str],
        max_retries: dict[str, int],
        event: dict[str, Any],
    ) -> list[Job]:
        meta = await self.context.get(run_id, RUN)
        activated, finished, waiting, resumed, final = await self._ended(rk)
        if final is None or not isinstance(meta, dict):
            raise FlowcraftError(f"run {run_id} is not finished; only a finished run reopens")
        ended = json.loads(final)["status"]
        undone = sorted(k for k in activated if split_job_key(k)[0] in reset)
        # Arrivals at reset nodes are forgotten, so those nodes wait for their re-run
        # predecessors again (a node's join state lives at its key whether or not it was
        # activated: the root instance's is included); those from kept nodes are put back.
        forgotten = sorted({*undone, *(job_key(n) for n in reset)})
        roots = sorted(n for n in reset if n in rejoin)
        reads = [op for n in roots for op in join_reads(rk, job_key(n))]
        read = await self.coordination.batch(reads) if reads else []
        rebuilt: list[Op] = []
        for i, node in enumerate(roots):
            more, ready = rejoined(rk, job_key(node), rejoin[node], read[3 * i : 3 * i + 3], ttl)
            rebuilt += more
            if ready and job_key(node) not in restart:
                restart.append(job_key(node))
        clear = undone_results(undone, fallbacks)
        if clear:
            await self.context.patch(run_id, {}, delete=clear)
        active = (activated - set(undone)) | set(restart)
        done = finished - set(undone)
        frontier = sorted(active - done - (waiting - resumed))
        counts = await self.coordination.batch(
            [
                *(Op.count(rk.failures(k)) for k in frontier),
                Op.members(rk.events),
                *(Op.members(rk.history(k)) for k in undone),
            ]
        )
        events = counts[len(frontier)]
        records = counts[len(frontier) + 1 :]
        counts = [0 if k in undone else n for k, n in zip(frontier, counts, strict=False)]
        # An undone job starts again at attempt 1: its earlier attempts stay in its history,
        # marked with the retry that superseded them, so the two never merge.
        superseded = 1 + sum(1 for e in events if json.loads(e).get("event") == "retried")
        rewritten: list[Op] = []
        for key, members in zip(undone, records, strict=True):
            rewritten += [Op.delete(rk.failures(key)), Op.delete(rk.history(key))]
            for raw in members:
                record = json.loads(raw)
                record.setdefault("superseded", superseded)
                rewritten.append(
                    Op.add_member(rk.history(key), json.dumps(record, sort_keys=True), ttl)
                )
        now = time.time()
        ops: list[Op] = [
            Op.delete(rk.final),
            Op.delete(rk.ended),
            Op.add_member(
                rk.events, json.dumps({"event": "retried", "at": now, "ended": ended, **event}), ttl
            ),
            *(Op.remove_member(rk.finished, k) for k in undone),
            *(Op.remove_member(rk.activated, k) for k in undone if k not in restart),
            *(Op.add_member(rk.activated, k, ttl) for k in restart),
            *(Op.delete(rk.job(kind, k)) for k in undone for kind in (LEASE, SLEEP, MISSING)),
            *(Op.delete(rk.job(kind, k)) for k in forgotten for kind in (ARRIVED, LIVE, FIRST)),
            *rebuilt,
            *rewritten,
            Op.add_member(ACTIVE_RUNS, run_id),
            Op.set(rk.progress, repr(now), ttl),
            Op.extend(blueprint_key(str(meta["digest"])), ttl),
            *(
                Op.extend(key, ttl)
                for key in (rk.activated, rk.finished, rk.waiting, rk.resumed, rk.events)
            ),
            *(Op.extend(rk.job(kind, k), ttl) for k in active for kind in JOB_KEY_KINDS),
            *index_ops(meta, run_id, ended, 0, leaving=True),
            *index_ops(meta, run_id, RUNNING, ttl),
        ]
        jobs = next_rounds(
            run_id,
            str(meta["digest"]),
            dict(zip(frontier, counts, strict=True)),
            max_retries,
            ops,
            ttl,
        )
        await self.coordination.batch(ops)
        await self.context.expire(run_id, ttl)
        return jobs

    async def fork(
        self,
        source: str,
        run_id: str,
        *,
        meta: Mapping[str, Any],
        reset: Mapping[str, Rejoin],
        fallbacks: Mapping[str, str] | None = None,
        max_retries: Mapping[str, int] | None = None,
        event: Mapping[str, Any] | None = None,
    ) -> list[Job]:
        # The source's marker: a retry reopening it meanwhile would change what is copied.
        async with self._reopening(
            source, f"a retry or fork of run {source} is under way; try again"
        ):
            return await self._fork(
                source,
                run_id,
                dict(meta),
                dict(reset),
                dict(fallbacks or {}),
                dict(max_retries or {}),
                dict(event or {}),
            )

    async def _fork(
        self,
        source: str,
        run_id: str,
        meta: dict[str, Any],
        reset: dict[str, Rejoin],
        fallbacks: dict[str, str],
        max_retries: dict[str, int],
        event: dict[str, Any],
    ) -> list[Job]:
        src, rk, ttl = run_keys(source), run_keys(run_id), self.ttl
        activated, finished, waiting, resumed, final = await self._ended(src)
        if final is None or not isinstance(await self.context.get(source, RUN), dict):
            raise FlowcraftError(f"run {source} is not finished; only a finished run forks")

        def kept_member(member: str) -> bool:
            tag = parse_subflow_member(member)
            return split_job_key(tag[0] if tag else member)[0] not in reset

        undone = {k for k in activated if split_job_key(k)[0] in reset}
        kept = sorted(activated - undone)
        joined = sorted(reset)
        read = await self.coordination.batch(
            [
                *(op for node in joined for op in join_reads(src, job_key(node))),
                *(
                    op
                    for key in kept
                    for op in (Op.members(src.history(key)), Op.members(src.failures(key)))
                ),
            ]
        )
        ops: list[Op] = []
        active = set(kept)
        for i, node in enumerate(joined):
            # The re-run node's arrivals from the nodes kept: they will not arrive again.
            key = job_key(node)
            rebuilt, ready = rejoined(rk, key, reset[node], read[3 * i : 3 * i + 3], ttl)
            ops += rebuilt
            if ready:
                active.add(key)
        histories = read[3 * len(joined) :]
        failures: dict[str, int] = {}
        for j, key in enumerate(kept):
            records, failed = histories[2 * j], histories[2 * j + 1]
            ops += [Op.add_member(rk.history(key), r, ttl) for r in sorted(records)]
            ops += [Op.add_member(rk.failures(key), n, ttl) for n in sorted(failed)]
            failures[key] = len(failed)
        done = finished & set(kept)
        parked = {m for m in waiting if kept_member(m)} - resumed
        frontier = sorted(active - done - parked)
        if not frontier:
            raise FlowcraftError(
                f"nothing of run {source} would run in the fork: no node re-run is ready and "
                "no node kept is unfinished"
            )
        drop = {RUN, *undone_results(undone, fallbacks)}
        values = {k: v for k, v in (await self.context.get_all(source)).items() if k not in drop}
        values[RUN] = meta
        if not await self.context.commit(run_id, RUN, values):
            raise RunExists(f"a run with id {run_id!r} already exists; it was left unchanged")
        now = time.time()
        digests = [
            str(meta["digest"]),
            *(str(d) for d in dict(meta.get("subflows") or {}).values()),
        ]
        ops += [
            *(Op.add_member(rk.activated, k, ttl) for k in sorted(active)),
            *(Op.add_member(rk.finished, k, ttl) for k in sorted(done)),
            *(Op.add_member(rk.waiting, m, ttl) for m in sorted(waiting) if kept_member(m)),
            *(Op.add_member(rk.resumed, m, ttl) for m in sorted(resumed) if kept_member(m)),
            Op.add_member(rk.events, json.dumps({"event": "forked", "at": now, **event}), ttl),
            *(Op.extend(blueprint_key(d), ttl) for d in digests),
            Op.add_member(ACTIVE_RUNS, run_id),
            Op.set(rk.progress, repr(now), ttl),
            *index_ops(meta, run_id, RUNNING, ttl),
        ]
        jobs = next_rounds(
            run_id,
            str(meta["digest"]),
            {k: failures.get(k, 0) for k in frontier},
            max_retries,
            ops,
            ttl,
        )
        await self.coordination.batch(ops)
        await self.context.expire(run_id, ttl)
        return jobs

    async def frontier(self, run_id: str, *, idle: float) -> list[Job]:
        rk = run_keys(run_id)
        final, progress, activated, finished, waiting, resumed = await self.coordination.batch(
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
            await self.coordination.remove_member(ACTIVE_RUNS, run_id)
            return []
        now = time.time()
        if progress is not None and now - float(progress) < idle:
            return []
        meta = await self.context.get(run_id, RUN)
        if not isinstance(meta, dict):
            return []  # its context expired: nothing left to resume from
        keys = sorted(activated - finished - (waiting - resumed))
        if not keys:
            return []
        # Each job resumes at the attempt after its last failed one, never an attempt that
        # already failed (that one would only re-announce its retry).
        *failures, _ = await self.coordination.batch(
            [*(Op.count(rk.failures(k)) for k in keys), Op.set(rk.progress, repr(now), self.ttl)]
        )
        digest = str(meta["digest"])
        return [
            job_for(run_id, digest, key, int(failed) + 1)
            for key, failed in zip(keys, failures, strict=True)
        ]


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
    offered: RunState | None = (
        hook.flowcraft_make_run_state(context=context, coordination=coordination, ttl=ttl)
        if fused
        else None
    )
    return offered or ComposedRunState(context, coordination, ttl=ttl)
