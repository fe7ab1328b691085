"""Contract: a driver's fused run state (:class:`flowcraft_core.engine.state.RunState`, offered
through the ``flowcraft_make_run_state`` hook) gives the reference's answers.

A differential state machine drives the driver's fused state and the reference,
:class:`~flowcraft_core.engine.state.ComposedRunState` composed over the same driver's stores, with
the same random steps on two runs (one each, so their keys never meet): a start (and a refused
second start), loads, completions with random live and dead arrivals at ``all`` and ``any``
joins, predecessors racing into one ``any`` join, repeated deliveries of an earlier completion,
prefetches, parks, resumes, failed attempts, missing implementations, sleeps, releases, lease
renewals, finalizations and reconcile frontiers.
After every step both must have given the same result, and the runs' :class:`Census` and parked
waits must be equal.

The engine's own use is replayed on both sides: a completion that leaves the run done and did
not finalize it is followed by :meth:`RunState.finalize`, and a prefetch the state did not
honour is followed by a :meth:`RunState.load` of the target, so a state that fuses those steps
is compared with one that does not. Skipped, with the reason, when the driver offers no fused
state (then the engine uses the reference itself, and the workflow scenarios cover it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from flowcraft_core.engine.history import COMPLETED, attempt_record
from flowcraft_core.engine.keys import INPUT, output_key, run_keys, subflow_member
from flowcraft_core.engine.state import (
    Arrival,
    Completion,
    ComposedRunState,
    Loaded,
    Prefetch,
    RunState,
)
from flowcraft_core.errors import RunExists
from flowcraft_core.protocols import Job, Op

from .capabilities import requires
from .harness import BoundMachine, Harness, run_machine

TTL = 600.0
RETENTION = 300.0
SHORT_RETENTION = 1.0  # seconds: the retention of the real-time expiry check
GONE_AFTER = SHORT_RETENTION + 0.6  # by when a finished run's keys must be gone
COMPLETIONS = ("completed", "failed")  # a run finished by its last job, one by a finalize
LEASE_TTL = 60.0
DIGEST = "conformance-run-state"
BLUEPRINT = json.dumps({"id": "run-state", "nodes": [], "edges": []})

# Job keys ("node#instance") and, for those that are join targets, (join, incoming edges).
TARGETS: Mapping[str, tuple[str, int]] = {
    "one#0": ("all", 1),
    "all#0": ("all", 2),
    "any#0": ("any", 2),
    "wide#0": ("all", 3),
    "wide_any#0/1": ("any", 3),
    "loop#0/2/7": ("all", 1),
}
JOBS = ("s#0", "p#0", "w#0", "w#0/3", *TARGETS)
ANY_JOINS = sorted(key for key, (join, _) in TARGETS.items() if join == "any")


def node_of(job_key: str) -> tuple[str, str]:
    node, _, instance = job_key.rpartition("#")
    return node, instance


def guard_of(job_key: str) -> str:
    return output_key(*node_of(job_key))


FIELDS = (INPUT, "note", *(guard_of(key) for key in JOBS))

jobs = st.sampled_from(JOBS)
attempts = st.integers(1, 3)
values = st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.booleans())
field_lists = st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)


@st.composite
def arrival_lists(draw: st.DrawFn) -> list[Arrival]:
    chosen = draw(
        st.lists(
            st.sampled_from(sorted(TARGETS)).flatmap(
                lambda t: st.tuples(st.just(t), st.integers(0, TARGETS[t][1] - 1))
            ),
            max_size=4,
            unique=True,
        )
    )
    return [
        Arrival(target, str(edge), draw(st.booleans()), TARGETS[target][0], TARGETS[target][1])
        for target, edge in chosen
    ]


@dataclass(frozen=True)
class Delivery:
    """One completion, kept so that it can be delivered again unchanged."""

    job: str
    attempt: int
    commit: dict[str, Any] | None
    arrivals: tuple[Arrival, ...]
    prefetch: tuple[str, tuple[str, ...], bool] | None


def loaded_view(loaded: Loaded | None) -> Any:
    if loaded is None:
        return None
    return {
        "final": loaded.final,
        "values": json.dumps(loaded.values, sort_keys=True),
        "lease": loaded.lease,
        "failures": loaded.failures,
        "arrived": loaded.arrived,
        "live": sorted(loaded.live),
        "first": loaded.first,
    }


class Side:
    """One run state and the run it drives."""

    def __init__(self, name: str, state: RunState, run_id: str) -> None:
        self.name = name
        self.state = state
        self.run_id = run_id

    def job(self, job_key: str, attempt: int = 1) -> Job:
        node, instance = node_of(job_key)
        return Job(self.run_id, node, DIGEST, instance, attempt)

    async def start(
        self, input: Any, start: Sequence[str], note: Any = None, started: float = 0.0
    ) -> Any:
        try:
            await self.state.start(
                self.run_id,
                input=input,
                meta={"flow": "run-state", "digest": DIGEST, "started": started, "waits": True},
                digest=DIGEST,
                blueprint=BLUEPRINT,
                jobs=list(start),
                context=None if note is None else {"note": note},
            )
        except RunExists:
            return "refused: RunExists"
        return "started"

    async def complete(self, d: Delivery, retention: float = RETENTION) -> Any:
        job = self.job(d.job, d.attempt)
        prefetch = None
        if d.prefetch is not None:
            target, fields, join = d.prefetch
            prefetch = Prefetch(target, fields, join, LEASE_TTL, "prefetch-token")
        completion: Completion = await self.state.complete(
            job,
            guard=guard_of(d.job),
            commit=d.commit,
            arrivals=list(d.arrivals),
            retention=retention,
            prefetch=prefetch if self.state.prefetches else None,
            # Without times, so that both sides store the same record.
            record=attempt_record(
                d.attempt, COMPLETED, started=None, finished=None, worker="machine"
            ),
        )
        finalized = completion.finalized
        if completion.done and finalized is None and completion.committed is not False:
            # As the engine does after a completion that leaves the run done.
            finalized = await self.state.finalize(
                self.run_id, "completed", None, retention=retention
            )
        prefetched = completion.prefetched
        if (
            prefetch is not None
            and prefetched is None
            and (prefetch.target, True) in completion.ready
        ):
            # What the engine loads next when the state did not prefetch it.
            prefetched = await self.state.load(
                self.job(prefetch.target),
                prefetch.keys,
                join=prefetch.join,
                lease_ttl=LEASE_TTL,
                token="prefetch-token",
            )
        census = completion.census
        return {
            "committed": completion.committed,
            "ready": completion.ready,
            "census": (
                census.final,
                census.activated,
                census.finished,
                census.waiting,
                census.resumed,
            ),
            "done": completion.done,
            "awaiting": completion.awaiting,
            "finalized": finalized,
            "prefetched": loaded_view(prefetched),
        }

    async def park(self, job_key: str, member: str | None = None) -> Any:
        c = await self.state.park(self.job(job_key), member)
        census = c.census
        return (
            c.committed,
            c.ready,
            census.activated,
            census.finished,
            census.waiting,
            census.resumed,
            c.done,
            c.awaiting,
        )

    async def frontier(self) -> Any:
        found = await self.state.frontier(self.run_id, idle=0.0)
        return [(j.node_id, j.instance, j.attempt, j.digest) for j in found]

    async def observe(self) -> Any:
        census = await self.state.census(self.run_id)
        return {
            "census": (
                census.final,
                census.activated,
                census.finished,
                census.waiting,
                census.resumed,
            ),
            "status": census.status,
            "parked": await self.state.parked(self.run_id),
            "active": self.run_id in await self.state.active_runs(),
            "history": await self.history_view(),
        }

    async def history_view(self) -> Any:
        """The run's history and index entry without times (which differ between sides)."""
        history = await self.state.history(self.run_id)
        if history is None:
            return None
        listed = await self.state.runs(limit=1000)
        return {
            "status": history.status,
            "nodes": [
                (n.node, n.instance, n.status, [(a.attempt, a.status) for a in n.attempts])
                for n in sorted(history.nodes, key=lambda n: (n.node, n.instance))
            ],
            "events": [e["event"] for e in history.events],
            "indexed": [r.status for r in listed.runs if r.run_id == self.run_id],
        }


class RunStateMachine(BoundMachine):
    """The driver's fused state and the reference, step by step (see the module docstring)."""

    fused: RunState
    reference: RunState

    def __init__(self) -> None:
        super().__init__()
        token = self.harness.new_id("rs")
        self.sides = (
            Side("fused", self.fused, f"{token}-fused"),
            Side("reference", self.reference, f"{token}-ref"),
        )
        self.deliveries: list[Delivery] = []
        self.steps: list[str] = []

    def both(self, step: str, call: Any) -> Any:
        """Run ``call(side)`` on both sides; their results must be equal."""
        self.steps.append(step)

        async def go() -> list[Any]:
            return [await call(side) for side in self.sides]

        fused, reference = self.harness.run(go())
        assert fused == reference, (
            f"the fused run state differs from the reference at step {len(self.steps)}, "
            f"{step}:\n  fused:     {fused!r}\n  reference: {reference!r}\n"
            "steps so far:\n  " + "\n  ".join(self.steps)
        )
        return fused

    # -- steps --------------------------------------------------------------------------------

    @initialize(
        input=values, start=st.lists(jobs, min_size=1, max_size=3, unique=True), note=values
    )
    def start(self, input: Any, start: list[str], note: Any) -> None:
        self.both(
            f"start(input={input!r}, jobs={start}, context note={note!r})",
            lambda s: s.start(input, start, note),
        )

    @rule(input=values, note=values)
    def start_again(self, input: Any, note: Any) -> None:
        self.both(
            f"start again(input={input!r}, context note={note!r})",
            # Another start of the same id (its own start time): refused.
            lambda s: s.start(input, ["p#0"], note, started=1.0),
        )

    @rule(
        job=jobs,
        fields=field_lists,
        join=st.booleans(),
    )
    def load(self, job: str, fields: list[str], join: bool) -> None:
        async def call(s: Side) -> Any:
            loaded = await s.state.load(
                s.job(job), fields, join=join, lease_ttl=LEASE_TTL, token="load-token"
            )
            return loaded_view(loaded)

        self.both(f"load({job}, {fields}, join={join})", call)

    @rule(
        job=jobs,
        attempt=attempts,
        commit=st.one_of(st.none(), st.tuples(values, st.one_of(st.none(), values))),
        arrivals=arrival_lists(),
        prefetch=st.tuples(st.booleans(), field_lists),
    )
    def complete(
        self,
        job: str,
        attempt: int,
        commit: tuple[Any, Any] | None,
        arrivals: list[Arrival],
        prefetch: tuple[bool, list[str]],
    ) -> None:
        writes: dict[str, Any] | None = None
        if commit is not None:
            output, note = commit
            writes = {guard_of(job): output}
            if note is not None:
                writes["note"] = note
        ask = None
        live = [a.target for a in arrivals if a.live]
        if prefetch[0] and live:
            ask = (live[0], tuple(prefetch[1]), TARGETS[live[0]][1] > 1)
        delivery = Delivery(job, attempt, writes, tuple(arrivals), ask)
        self.deliveries.append(delivery)
        self.both(f"complete({delivery})", lambda s: s.complete(delivery))

    @rule(
        sources=st.lists(jobs, min_size=2, max_size=3, unique=True),
        join=st.sampled_from(ANY_JOINS),
        commit=st.booleans(),
    )
    def race_into_any_join(self, sources: list[str], join: str, commit: bool) -> None:
        """Predecessors completing one after another, each taking its own edge into one
        ``any`` join: only the first arrival may make it ready. Random completions seldom
        build this (two live arrivals at the same ``any`` join on different edges), so it is
        a step of its own."""
        width = TARGETS[join][1]
        for edge, source in enumerate(sources[:width]):
            writes = {guard_of(source): edge} if commit else None
            arrival = Arrival(join, str(edge), True, "any", width)
            delivery = Delivery(source, 1, writes, (arrival,), None)
            self.deliveries.append(delivery)
            self.both(f"complete({delivery})", lambda s, d=delivery: s.complete(d))

    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        if not self.deliveries:
            return
        delivery = data.draw(st.sampled_from(self.deliveries))
        self.both(f"complete again({delivery})", lambda s: s.complete(delivery))

    @rule(job=jobs)
    def park(self, job: str) -> None:
        self.both(f"park({job})", lambda s: s.park(job))

    @rule(job=jobs, generation=st.integers(0, 2))
    def park_subflow(self, job: str, generation: int) -> None:
        """A subflow job parks once per time its child awaits (a member per generation)."""
        member = subflow_member(job, 1, generation)
        self.both(f"park({job}, {member!r})", lambda s: s.park(job, member))

    @rule(job=jobs, generations=st.integers(0, 3))
    def unpark_subflow(self, job: str, generations: int) -> None:
        members = [subflow_member(job, 1, g) for g in range(generations)]
        self.both(f"unpark({job}, {generations})", lambda s: s.state.unpark(s.run_id, members))

    @rule(job=jobs, output=values)
    def resume(self, job: str, output: Any) -> None:
        async def call(s: Side) -> Any:
            return await s.state.resume(
                s.job(job), guard=guard_of(job), commit={guard_of(job): output}
            )

        self.both(f"resume({job}, {output!r})", call)

    @rule(job=jobs, attempt=attempts)
    def fail_attempt(self, job: str, attempt: int) -> None:
        self.both(
            f"fail_attempt({job}, attempt {attempt})",
            lambda s: s.state.fail_attempt(s.job(job, attempt)),
        )

    @rule(job=jobs)
    def missing(self, job: str) -> None:
        self.both(f"missing({job})", lambda s: s.state.missing(s.job(job)))

    @rule(job=jobs, duration=st.sampled_from([0.0, 60.0]))
    def sleep(self, job: str, duration: float) -> None:
        async def call(s: Side) -> Any:
            return await s.state.sleep(s.job(job), duration) > 0

        self.both(f"sleep({job}, {duration})", call)

    @rule(job=jobs)
    def release(self, job: str) -> None:
        self.both(f"release({job})", lambda s: s.state.release(s.job(job)))

    @rule(job=jobs)
    def renew(self, job: str) -> None:
        self.both(f"renew({job})", lambda s: s.state.renew(s.job(job), LEASE_TTL))

    @rule(
        status=st.sampled_from(["completed", "failed", "cancelled"]),
        error=st.one_of(st.none(), st.fixed_dictionaries({"message": st.text(max_size=3)})),
    )
    def finalize(self, status: str, error: dict[str, Any] | None) -> None:
        self.both(
            f"finalize({status}, {error!r})",
            lambda s: s.state.finalize(s.run_id, status, error, retention=RETENTION),
        )

    @rule()
    def frontier(self) -> None:
        self.both("frontier()", lambda s: s.frontier())

    @invariant()
    def same_census(self) -> None:
        if not self.steps:
            return  # before the start
        self.both("census()", lambda s: s.observe())
        self.steps.pop()


@requires("context", "coordination")
class RunStateContract:
    """The run state contract (see the module docstring)."""

    contract = "run state"

    def test_fused_run_state_matches_the_reference(self, conformance: Harness) -> None:
        backends = conformance.open()
        context, coordination = backends.context, backends.coordination
        assert context is not None and coordination is not None
        fused = conformance.target.fused_state(context, coordination, TTL)
        if fused is None or type(fused) is ComposedRunState:
            pytest.skip(
                f"{conformance.name} offers no fused run state (flowcraft_make_run_state "
                "returned None): its runs use the reference itself"
            )
        reference = ComposedRunState(context, coordination, ttl=TTL)
        machine = type(
            "RunStateMachine",
            (RunStateMachine,),
            {
                "fused": fused,
                "reference": reference,
                "__module__": RunStateMachine.__module__,
                "__qualname__": RunStateMachine.__qualname__,
            },
        )
        run_machine(machine, conformance)

    @requires("ttl")
    def test_a_finished_runs_job_keys_last_its_retention(self, conformance: Harness) -> None:
        """Finalization keeps every activated job's own keys (history, failed attempts, join
        arrivals) for the run's retention, not for the ``ttl`` they were written with: on the
        reference and on the driver's fused state, for a run finished by its last completion
        and for one failed by an explicit finalize. Real time, with a short retention."""
        backends = conformance.open()
        context, coordination = backends.context, backends.coordination
        assert context is not None and coordination is not None
        states: list[tuple[str, RunState]] = [
            ("reference", ComposedRunState(context, coordination, ttl=TTL))
        ]
        fused = conformance.target.fused_state(context, coordination, TTL)
        if fused is not None and type(fused) is not ComposedRunState:
            states.append(("fused", fused))
        problems: list[str] = []

        async def finished(side: Side, how: str) -> float:
            """Run ``s#0`` (one failed attempt, then committed, arriving at ``one#0``), then
            finish the run ``how``; when it finished."""
            await side.start({"n": 1}, ["s#0"])
            await side.state.fail_attempt(side.job("s#0", 1))
            arrival = Arrival("one#0", "0", True, "all", 1)
            await side.complete(
                Delivery("s#0", 2, {guard_of("s#0"): 1}, (arrival,), None), SHORT_RETENTION
            )
            if how == "failed":
                await side.state.finalize(
                    side.run_id, "failed", {"message": "x"}, retention=SHORT_RETENTION
                )
            else:
                await side.complete(
                    Delivery("one#0", 1, {guard_of("one#0"): 2}, (), None), SHORT_RETENTION
                )
            return time.monotonic()

        async def kept(side: Side) -> dict[str, bool]:
            rk = run_keys(side.run_id)
            history, failed, arrived = await coordination.batch(
                [
                    Op.count(rk.history("s#0")),
                    Op.count(rk.failures("s#0")),
                    Op.count(rk.arrived("one#0")),
                ]
            )
            return {
                "history of s#0": history > 0,
                "failed attempts of s#0": failed > 0,
                "arrivals at one#0": arrived > 0,
            }

        async def case(name: str, state: RunState, how: str) -> None:
            side = Side(name, state, conformance.new_id(f"rs-keep-{how}"))
            end = await finished(side, how)
            status = (await state.census(side.run_id)).status
            before = await kept(side)
            # Read within the retention, or too slow to tell (the final status expires too).
            if time.monotonic() - end < SHORT_RETENTION * 0.6:
                if status != how:
                    problems.append(f"{name}, {how}: the run ended {status}, not {how}")
                problems.extend(
                    f"{name}, {how}: {what} gone before the run's retention"
                    for what, there in before.items()
                    if not there
                )
            await asyncio.sleep(max(0.0, end + GONE_AFTER - time.monotonic()))
            after = await kept(side)
            problems.extend(
                f"{name}, {how}: {what} still there {GONE_AFTER}s after the run finished "
                f"with retention={SHORT_RETENTION}s (kept for ttl={TTL}s?)"
                for what, there in after.items()
                if there
            )

        async def body() -> None:
            await asyncio.gather(
                *(case(name, state, how) for name, state in states for how in COMPLETIONS)
            )

        conformance.run(body(), timeout=60)
        assert not problems, "\n".join(problems)
