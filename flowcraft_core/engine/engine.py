"""The job handler: executes one job at a time on top of the three protocols.

A job is handled in steps, each idempotent and keyed by the job's identity, so any number of
deliveries and a crash at any line converge on the same result (docs/design.md § The engine):

1. load the pinned blueprint (cached by digest) and, in one call, the run's final status, the
   node's committed result, its inputs and its lease;
2. stop if the run is finished; route again if the node is committed; skip it if every
   incoming edge is dead; stop if another delivery holds the lease;
3. execute the node (retries, timeout, fallback), then commit its result with its context
   writes, record its edges at their targets, activate ready targets and finish the job;
4. continue inline with one ready successor, enqueue the others.

The handler returns normally — and the queue acknowledges — only after all of that.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pluggy

from flowcraft_core.blueprint import MAX_RETRY_DELAY_MS, Blueprint
from flowcraft_core.builtins import (
    BATCH_GATHER,
    BATCH_SCATTER,
    LOOP_CONTROLLER,
    MAX_BATCH_ITEMS,
    SLEEP,
    SUBFLOW,
    WAIT,
    duration_ms,
)
from flowcraft_core.engine import keys
from flowcraft_core.engine.compiled import CompiledFlow, Edge, Node, Own
from flowcraft_core.engine.delivery import NOTHING, Delivery, Stepped
from flowcraft_core.engine.errors import describe, problem
from flowcraft_core.engine.history import AWAITING, COMPLETED, attempt_record, failure_status
from flowcraft_core.engine.settings import EngineSettings
from flowcraft_core.engine.slots import Slots
from flowcraft_core.engine.state import (
    Arrival,
    Completion,
    Prefetch,
    RunState,
    run_state_for,
)
from flowcraft_core.engine.subflow import Subflows, continue_parent, parent_of
from flowcraft_core.errors import ExpressionError, NodeTimeout, NotRetried
from flowcraft_core.expressions import Expression, evaluate_condition
from flowcraft_core.instance import (
    child_instance,
    job_key,
    last_index,
    parent_instance,
    split_job_key,
)
from flowcraft_core.node import NodeContext, Result, RunContext
from flowcraft_core.plugins import Guests, default_manager
from flowcraft_core.protocols import ContextStore, CoordinationStore, Job, Queue
from flowcraft_core.registry import Registry
from flowcraft_core.threads import CURRENT, NodeThreads

log = logging.getLogger(__name__)
T = TypeVar("T")

Checkpoint = Callable[[str, Job], None]
"""Called at each step of handling a job (``loaded``, ``executed``, ``completed``,
``enqueued``). Tests raise from it to simulate a crash at that point."""


#: Seconds between the lease keeper's looks at the leases it holds (at most).
RENEW_CHECK = 0.5

#: True in the task of a job that came in a message of several (:meth:`Engine.handle`).
SIBLING: contextvars.ContextVar[bool] = contextvars.ContextVar("flowcraft_sibling", default=False)


class Engine:
    """Handles jobs for any run whose blueprint it can load and whose nodes its registry has."""

    def __init__(
        self,
        registry: Registry,
        queue: Queue,
        context: ContextStore,
        coordination: CoordinationStore,
        *,
        settings: EngineSettings | None = None,
        pm: pluggy.PluginManager | None = None,
        checkpoint: Checkpoint | None = None,
        threads: int = 8,
        blueprints: Mapping[str, Blueprint] | None = None,
    ) -> None:
        self.registry = registry
        self.queue = queue
        self.context = context
        self.coordination = coordination
        self.settings = settings or EngineSettings()
        self.pm = pm or default_manager()
        self.hook = self.pm.hook
        self.guests = Guests(self.pm)
        self.checkpoint = checkpoint
        self.state: RunState = run_state_for(
            context,
            coordination,
            ttl=self.settings.run_ttl,
            fused=self.settings.fused_state,
            hook=self.hook,
        )
        self._flows: dict[str, CompiledFlow] = {}
        self._token_prefix = f"{uuid.uuid4().hex[:12]}-"
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        """This engine's identity in the runs' histories (host and process)."""
        self._tokens = itertools.count()
        self._leases = LeaseKeeper(self.state)
        self.subflows = Subflows(self, dict(blueprints or {}))
        self.threads = NodeThreads(threads)
        """Where sync node code runs: ``threads`` at a time (the worker's concurrency)."""
        self._sibling_messages = self.settings.siblings_per_message > 1 and getattr(
            self.queue, "sibling_messages", True
        )
        """Whether ready siblings share messages (the queue may opt out: its protocol)."""
        width = self._width()
        self.slots = Slots(threads * width)
        """What bounds the jobs this engine handles at once, from load to commit: the queue
        bounds its handlers, but a message of siblings carries several jobs (:meth:`handle`).
        The bound is the worker's concurrency, so a SQL backend's connections in use stay
        within it, times the jobs a message carries when the run state's steps in flight
        share one connection (``RunState.pipelined``: a message's members then load and
        commit in one write)."""
        self.node_slots = Slots(threads) if width > 1 else None
        """What bounds node code running at once to the worker's concurrency when
        :attr:`slots` allows more jobs than that (:meth:`_take_node_slot`); else None, the
        bound already holds."""
        self.executing: dict[int, str] = {}
        """Node code running now, by lease id: ``node 'id' of run R`` (for stall warnings)."""
        self.started: collections.deque[tuple[float, str]] = collections.deque(maxlen=16)
        """The latest node code started, with when (for stall warnings)."""

    def _width(self) -> int:
        """Jobs per unit of concurrency that may be between load and commit at once."""
        if self._sibling_messages and self.state.pipelined:
            return self.settings.siblings_per_message
        return 1

    # -- blueprints ---------------------------------------------------------------------------

    async def flow(self, digest: str) -> CompiledFlow | None:
        """The pinned blueprint ``digest``, compiled once per process."""
        compiled = self._flows.get(digest)
        if compiled is None:
            raw = await self.state.blueprint(digest)
            if raw is None:
                return None
            compiled = CompiledFlow(Blueprint.from_json(raw))
            self._flows[digest] = compiled
        return compiled

    def remember(self, compiled: CompiledFlow) -> None:
        """Prime the cache (the client of an in-process run already compiled the blueprint)."""
        self._flows.setdefault(compiled.digest, compiled)

    # -- the handler --------------------------------------------------------------------------

    async def handle(self, job: Job) -> None:
        """Handle one delivery of ``job``; the queue acknowledges when this returns.

        A message carrying siblings (``job.siblings``) is handled as one delivery of each of
        its members, concurrently, so that their loads and commits meet (one round trip on a
        driver that batches them). Each member keeps every guarantee of a job on its own; if
        any raises, this raises once all are done, and the redelivery of the message finds
        the members that committed already committed."""
        if job.siblings:
            outcomes = await asyncio.gather(
                *(self._handle_sibling(member) for member in job.members()),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            return
        await self._handle_in_slot(job)

    async def _handle_sibling(self, job: Job) -> None:
        """Handle one member of a message of siblings. A member that finds no slot within
        ``sibling_wait`` seconds goes back to the queue on its own, for a worker that is
        free, as it would have travelled alone: its worker is busy with other work. It has
        loaded nothing yet, so it holds no lease to give back."""
        SIBLING.set(True)  # in this member's own task (gather made one)
        if not await self._handle_in_slot(job):
            await self._enqueue([job])

    def _slot_wait(self) -> float | None:
        """How long this task's job waits for a slot: a sibling ``sibling_wait`` seconds (then
        it travels alone, to a worker that is free), any other job as long as it takes."""
        return self.settings.sibling_wait if SIBLING.get() else None

    async def _handle_in_slot(self, job: Job) -> bool:
        """Handle ``job`` once a slot is free (waiting at most :meth:`_slot_wait`); False if
        none was, and nothing was done."""
        slots = self.slots
        if not slots.take() and not await slots.wait(self._slot_wait()):
            return False
        try:
            await self._handle_one(job)
        finally:
            slots.give()
        return True

    async def _handle_one(self, job: Job) -> None:
        stack: list[Job | Delivery] = [job]
        deadline = time.monotonic() + self.settings.continue_seconds
        try:
            await self._drain(job, stack, deadline)
        except BaseException:
            # A prefetched successor not yet handled holds a lease: give it back, so the
            # redelivery of this job is not locked out until it lapses.
            for pending in stack:
                if isinstance(pending, Delivery):
                    await pending.give_back(self.state)
            raise

    async def _drain(self, job: Job, stack: list[Job | Delivery], deadline: float) -> None:
        steps = 0
        while stack:
            pending = stack.pop()
            may_continue = steps + 1 < self.settings.continue_steps and time.monotonic() < deadline
            stepped = await self._step(pending, may_continue)
            if self._continue(stepped, may_continue, stack):
                steps += 1
                if stepped.enqueue:
                    await self._enqueue(self._together(stepped.enqueue))
                self._at("enqueued", job)

    def _continue(self, stepped: Stepped, may_continue: bool, stack: list[Job | Delivery]) -> bool:
        """Put on ``stack`` what this delivery goes on with inline: every skipped target
        (bookkeeping only) and, when ``may_continue``, one live target — the prefetched one if
        any, with its load. The other live targets are enqueued by the caller: returned in
        ``stepped.enqueue``. True if any target was live."""
        live: list[Job] = []
        for target, is_live in stepped.ready:
            if is_live:
                live.append(target)
            else:
                stack.append(target)
        if not live:
            return False
        if may_continue:
            successor = stepped.successor
            if successor is not None and successor.job in live:
                live.remove(successor.job)
                stack.append(successor)
            else:
                stack.append(live.pop(0))
        stepped.enqueue = live
        return True

    def _together(self, ready: list[Job]) -> list[Job]:
        """``ready`` (targets of one completion) as messages: jobs that share run, digest,
        instance and attempt travel as siblings, at most ``siblings_per_message`` to a
        message, split evenly over as few messages as that allows."""
        if len(ready) < 2 or not self._sibling_messages:
            return ready
        most = self.settings.siblings_per_message
        groups: dict[tuple[str, str, str, int], list[Job]] = {}
        for job in ready:
            groups.setdefault((job.run_id, job.digest, job.instance, job.attempt), []).append(job)
        messages: list[Job] = []
        for jobs in groups.values():
            count = -(-len(jobs) // most)
            for i in range(count):
                part = jobs[i::count]
                first = part[0]
                if len(part) == 1:
                    messages.append(first)
                    continue
                messages.append(
                    Job(
                        first.run_id,
                        first.node_id,
                        first.digest,
                        first.instance,
                        first.attempt,
                        first.headers,
                        siblings=tuple(job.node_id for job in part[1:]),
                    )
                )
        return messages

    def _at(self, step: str, job: Job) -> None:
        if self.checkpoint is not None:
            self.checkpoint(step, job)

    async def _enqueue(self, jobs: list[Job], delay: float = 0.0) -> None:
        jobs = [job.stamped(delay) for job in jobs]
        if len(jobs) == 1:
            await self.queue.enqueue(jobs[0], delay=delay)
        else:
            await self.queue.enqueue_many(jobs, delay=delay)
        for job in jobs:
            for member in job.members() if job.siblings else (job,):
                self.guests.flowcraft_job_enqueued(job=member, delay=delay)

    async def _step(self, pending: Job | Delivery, may_continue: bool) -> Stepped:
        """Handle one job (loaded already when ``pending`` is a prefetched delivery): what it
        made ready and, when ``may_continue``, possibly the prefetched load of the target to
        continue with."""
        delivery = pending if isinstance(pending, Delivery) else await self._load(pending)
        if delivery is None:
            return NOTHING
        delivery.may_continue = may_continue
        try:
            self._at("loaded", delivery.job)
            return await self._after_load(delivery)
        finally:
            # Every path that keeps going has the run state release the lease in the same
            # round trip as its last write; this covers early exits and crashes.
            if delivery.held:  # checked here too: this runs for every job
                await delivery.give_back(self.state)

    async def _load(self, job: Job) -> Delivery | None:
        """Load ``job`` as step 1 says (module docstring), or fail the run if its blueprint or
        node is gone."""
        flow = await self.flow(job.digest)
        if flow is None:
            await self._fail(
                job,
                problem(job.node_id, "BlueprintNotFound", f"blueprint {job.digest} is not stored"),
            )
            return None
        node = flow.nodes.get(job.node_id)
        if node is None:
            await self._fail(
                job,
                problem(
                    job.node_id,
                    "UnknownNode",
                    f"blueprint {flow.id!r} has no node {job.node_id!r}",
                ),
            )
            return None
        loaded = await self.state.load(
            job,
            flow.read_keys_at(node, job.instance),
            join=node.needs_join,
            lease_ttl=self._lease_ttl(node),
            token=self._token(),
        )
        return Delivery(job, flow, node, loaded, loaded.lease)

    async def _after_load(self, d: Delivery) -> Stepped:
        job, flow, node, loaded = d.job, d.flow, d.node, d.loaded
        if loaded.final is not None:
            # A subflow run's step that finalized it may have died before continuing its
            # parent (a fused completion finalizes in the same round trip): a redelivery
            # continues it, which is harmless if it was continued already.
            await continue_parent(self.context, self.queue, job.run_id)
            return NOTHING
        values = loaded.values
        own = flow.own(node, job.instance)
        if own.output in values:
            # Committed by an earlier delivery: never run again, just route again.
            output, action = self._committed(own, values)
            return await self._route_again(d, output=output, action=action)
        expected = flow.expected_at(node, job.instance, values)
        if expected:
            if not loaded.live:
                if loaded.arrived >= expected:
                    return await self._skip(d)
                return NOTHING  # not ready: a stray delivery; the last arrival will enqueue it
            if node.join == "all" and loaded.arrived < expected:
                return NOTHING
        if job.attempt <= loaded.failures:
            # A repeat of an attempt that failed and scheduled its retry. The latest one
            # enqueues that retry again, in case the worker died before it was sent.
            if job.attempt == loaded.failures and has_next_attempt(
                job.attempt, node.definition.config.max_retries
            ):
                await self._enqueue([self._retry(job)], self._retry_delay(node, job))
            return NOTHING
        if not d.held:
            # Another delivery is executing it — or held it and died. Look again once the
            # lease may have lapsed; by then the node is committed or can run.
            await self._enqueue([job], self.settings.lease_busy_delay)
            return NOTHING
        try:
            node_input = flow.input_for(
                node,
                values,
                loaded.live,
                loaded.first,
                self._on_expression_error(job),
                job.instance,
            )
        except ExpressionError as exc:  # strict
            await self._fail(job, describe(exc, node_id=node.id, attempt=job.attempt))
            return NOTHING
        builtin = node.builtin
        if builtin == WAIT:
            d.started = time.time()
            record = attempt_record(
                job.attempt, AWAITING, started=d.started, finished=None, worker=self.worker
            )
            parent = await self._announce(
                job, await d.given_back_by(self.state.park(job, record=record))
            )
            return Stepped([(parent, True)]) if parent is not None else NOTHING
        if builtin == SUBFLOW:
            return await self.subflows.step(d, node_input)
        if builtin == SLEEP:
            if await self._still_asleep(d):
                return NOTHING
            return await self._commit_and_route(d, output=node_input, writes={})
        if builtin in (LOOP_CONTROLLER, BATCH_SCATTER, BATCH_GATHER):
            outcome = await self._builtin(d, node_input, builtin)
        else:
            outcome = await self._execute(d, node_input)
        if outcome is None:
            return NOTHING
        result, writes, fell_back = outcome
        self._at("executed", job)
        return await self._commit_and_route(
            d, output=result.output, action=result.action, writes=writes, fell_back=fell_back
        )

    # -- execution ----------------------------------------------------------------------------

    def _lease_ttl(self, node: Node) -> float:
        timeout = node.definition.config.timeout
        ttl = self.settings.lease_ttl
        return max(ttl, timeout / 1000 * 2) if timeout else ttl

    async def _execute(
        self, d: Delivery, node_input: Any
    ) -> tuple[Result, Mapping[str, Any], bool] | None:
        """Run one attempt (and the fallback after the last). Returns (result, context
        writes, whether the fallback gave the result), or None when the run failed or a retry
        was scheduled."""
        job, node = d.job, d.node
        definition = node.definition
        impl = self.registry.get(definition.uses)
        if impl is None:
            await self._missing(d)
            return None
        cfg = definition.config
        run_context = RunContext(self.context, job.run_id)
        ctx = NodeContext(
            input=node_input,
            params=definition.params,
            run_id=job.run_id,
            node_id=node.id,
            attempt=job.attempt,
            context=run_context,
            instance=job.instance,
            attempts=cfg.max_retries,
        )
        node_slots = self.node_slots
        if (
            node_slots is not None
            and not node_slots.take()
            and not await self._take_node_slot(d, node_slots)
        ):
            return None
        try:
            self.guests.flowcraft_node_started(job=job)
            d.started = time.time()
            try:
                value = await self._call(d, impl.call, ctx, cfg.timeout)
            except BaseException as exc:
                _reraise_if_ours(exc)
                final = isinstance(exc, NotRetried)
                cause = exc.error if isinstance(exc, NotRetried) else exc
                error = describe(cause, node_id=node.id, attempt=job.attempt)
                outcome = await self._attempt_failed(d, node_input, error, final=final)
                if outcome is None:
                    return None
                return outcome[0], outcome[1], True
            return self._as_result(value), run_context.pending, False
        finally:
            if node_slots is not None:
                node_slots.give()

    async def _take_node_slot(self, d: Delivery, node_slots: Slots) -> bool:
        """Wait for a slot to run ``d``'s node code in (none was free); False if ``d`` went
        back to the queue instead, its lease given back.

        A sibling waits at most ``sibling_wait`` seconds: then its worker is busy with other
        work, and the job travels on its own to a worker that is free, as it would have if it
        had come alone. Any other job waits as long as it takes, its lease renewed meanwhile,
        so no duplicate delivery starts the node while it waits."""
        renewing = self._leases.hold(d.job, self._lease_ttl(d.node))
        try:
            if await node_slots.wait(self._slot_wait()):
                return True
        finally:
            self._leases.drop(renewing)
        await d.give_back(self.state)
        await self._enqueue([d.job])
        return False

    async def _attempt_failed(
        self, d: Delivery, node_input: Any, error: dict[str, Any], *, final: bool = False
    ) -> tuple[Result, Mapping[str, Any]] | None:
        """Attempt ``job.attempt`` of the node failed with ``error``: schedule the next attempt
        (unless ``final`` or it was the last), else run the fallback, else fail the run.
        Returns the fallback's (result, context writes), or None."""
        job, node = d.job, d.node
        cfg = node.definition.config
        if has_next_attempt(job.attempt, cfg.max_retries) and not final:
            delay = self._retry_delay(node, job)
            record = self._record(d, failure_status(error, retried=True), error)
            first = await d.given_back_by(self.state.fail_attempt(job, record=record))
            if first:  # a duplicate delivery of this attempt must not schedule another
                await self._enqueue([self._retry(job)], delay)
                self.guests.flowcraft_node_retried(job=job, error=error, delay=delay)
            return None
        if node.fallback is not None:
            fallback = self.registry.get(node.fallback.uses)
            if fallback is not None:
                fb_ctx = NodeContext(
                    input=d.flow.fallback_input(node, d.loaded.values, node_input),
                    params=node.fallback.params,
                    run_id=job.run_id,
                    node_id=node.fallback.id,
                    attempt=1,
                    context=RunContext(self.context, job.run_id),
                    instance=job.instance,
                )
                try:
                    value = await self._call(d, fallback.call, fb_ctx, node.fallback.config.timeout)
                except BaseException as fb_exc:
                    _reraise_if_ours(fb_exc)
                    cause = fb_exc.error if isinstance(fb_exc, NotRetried) else fb_exc
                    error["fallback"] = describe(cause, node_id=node.fallback.id)
                else:
                    return self._as_result(value), fb_ctx.context.pending
            else:
                error["fallback"] = problem(
                    node.fallback.id,
                    "MissingImplementation",
                    f"no implementation for uses={node.fallback.uses!r}",
                )
        # The last attempt is recorded as any failed one (a retry of the run resumes after
        # it), then the run fails.
        record = self._record(d, failure_status(error, retried=False), error)
        await d.given_back_by(self.state.fail_attempt(job, record=record))
        await self._fail(job, error)
        return None

    @staticmethod
    def _committed(own: Own, values: Mapping[str, Any]) -> tuple[Any, Any]:
        """The stored (output, action) a committed node instance routes with: its fallback's
        when it fell back (the fallback takes the failed node's outgoing edges)."""
        if own.fallback is not None and values.get(own.fallback):
            return values.get(own.fallback_output or ""), values.get(own.fallback_action or "")
        return values.get(own.output), values.get(own.action)

    def _on_expression_error(self, job: Job) -> Callable[[Expression, ExpressionError], None]:
        def report(expr: Expression, exc: ExpressionError) -> None:
            if self.settings.strict:
                raise exc
            log.warning("run %s node %r: %s", job.run_id, job.node_id, exc)
            self.guests.flowcraft_expression_failed(job=job, where=expr.where, error=str(exc))

        return report

    def _record(self, d: Delivery, status: str, error: Mapping[str, Any] | None = None) -> str:
        """This delivery's attempt of its job as the job's history keeps it."""
        return attempt_record(
            d.job.attempt,
            status,
            started=d.started,
            finished=time.time(),
            worker=self.worker,
            error=error,
        )

    def _token(self) -> str:
        return f"{self._token_prefix}{next(self._tokens)}"

    def _prefetch_for(self, flow: CompiledFlow, arrivals: list[Arrival]) -> Prefetch | None:
        """Ask to load the first taken edge's target with the commit, in case it becomes ready:
        it is the successor :meth:`handle` continues with."""
        target = next((a.target for a in arrivals if a.live), None)
        if target is None:
            return None
        node_id, instance = split_job_key(target)
        node = flow.nodes[node_id]
        if len(node.incoming) > 1 or node.definition.uses == BATCH_GATHER:
            # A join is rarely made ready by this arrival, and its load names every
            # predecessor's output (a gather's, every item's arrival): asking each arrival
            # to prefetch it would cost O(width).
            return None
        return Prefetch(
            target=target,
            keys=flow.read_keys_at(node, instance),
            join=node.needs_join,
            lease_ttl=self._lease_ttl(node),
            token=self._token(),
        )

    @staticmethod
    def _retry(job: Job) -> Job:
        return Job(job.run_id, job.node_id, job.digest, job.instance, job.attempt + 1, job.headers)

    @staticmethod
    def _retry_delay(node: Node, job: Job) -> float:
        """Backoff before the attempt after ``job.attempt``: ``retryDelay`` ms, doubling, at
        most :data:`MAX_RETRY_DELAY_MS`."""
        tries = node.definition.config.max_retries
        delay = float(node.definition.config.retry_delay) * 2.0 ** min(
            (job.attempt - 1) % max(tries, 1), 64
        )
        return min(delay, MAX_RETRY_DELAY_MS) / 1000

    @staticmethod
    def _as_result(value: Any) -> Result:
        return value if isinstance(value, Result) else Result(output=value)

    async def _call(
        self, d: Delivery, call: Any, ctx: NodeContext, timeout_ms: float | None
    ) -> Any:
        job, node = d.job, d.node
        renewing = self._leases.hold(job, self._lease_ttl(node))
        self.executing[renewing] = name = f"node {node.id!r} of run {job.run_id}"
        self.started.append((time.monotonic(), name))
        threads = CURRENT.set(self.threads)
        try:
            if timeout_ms is None:
                return await call(ctx)
            try:
                # Not wait_for: on Python 3.11 it runs node code in a task of its own, and a
                # KeyboardInterrupt or SystemExit escaping a task stops the event loop.
                async with asyncio.timeout(timeout_ms / 1000):
                    return await call(ctx)
            except TimeoutError:
                raise NodeTimeout(
                    f"node {node.id!r} attempt {job.attempt} exceeded its timeout of "
                    f"{timeout_ms:g} ms"
                ) from None
        finally:
            CURRENT.reset(threads)
            self._leases.drop(renewing)
            del self.executing[renewing]

    async def _missing(self, d: Delivery) -> None:
        job, node = d.job, d.node
        uses = node.definition.uses
        tries = await d.given_back_by(self.state.missing(job))
        if tries > self.settings.missing_retries:
            known = ", ".join(sorted(self.registry)) or "none"
            await self._fail(
                job,
                problem(
                    node.id,
                    "MissingImplementation",
                    f"no implementation registered for uses={uses!r} (node {node.id!r}) on "
                    f"the workers that took this job, after {tries - 1} retries; "
                    f"registered: {known}",
                ),
            )
            return
        s = self.settings
        delay = min(s.missing_delay_max, s.missing_delay * 2 ** (tries - 1))
        log.warning(
            "no implementation for uses=%r (node %r of run %s); retrying in %.1fs",
            uses,
            node.id,
            job.run_id,
            delay,
        )
        await self._enqueue([job], delay)

    # -- built-ins ----------------------------------------------------------------------------

    async def _builtin(
        self, d: Delivery, node_input: Any, builtin: str
    ) -> tuple[Result, Mapping[str, Any], bool] | None:
        """Run a loop controller, batch scatter or batch gather: (result, context writes,
        False), or None when it failed the run."""
        if builtin == LOOP_CONTROLLER:
            return await self._loop_check(d.job, d.node, d.loaded.values)
        if builtin == BATCH_SCATTER:
            return await self._scatter(d.job, d.node, node_input)
        return await self._gather(d.job, d.node, d.loaded.values)

    async def _loop_check(
        self, job: Job, node: Node, values: Mapping[str, Any]
    ) -> tuple[Result, Mapping[str, Any], bool] | None:
        loop = node.loop
        assert loop is not None
        scope = loop.scope(values)
        try:
            again = evaluate_condition(loop.condition, scope)
        except ExpressionError as exc:
            if self.settings.strict:
                await self._fail(job, describe(exc, node_id=node.id, attempt=job.attempt))
                return None
            self._on_expression_error(job)(loop.condition, exc)
            again = False
        done = last_index(job.instance)
        if again and done >= loop.max_iterations:
            await self._fail(
                job,
                problem(
                    node.id,
                    "LoopLimitExceeded",
                    f"loop {node.id!r} ran {done} iterations, its maxIterations, and its "
                    f"condition {loop.condition.source!r} still holds",
                ),
            )
            return None
        # As Flowcraft's loop controller: no output, action continue or break.
        return Result(output=None, action="continue" if again else "break"), {}, False

    async def _scatter(
        self, job: Job, node: Node, node_input: Any
    ) -> tuple[Result, Mapping[str, Any], bool] | None:
        batch = node.batch
        assert batch is not None
        items = [] if node_input is None else node_input  # as Flowcraft: `input || []`
        source = node.definition.inputs
        where = f" (inputs {source!r})" if isinstance(source, str) else ""
        if not isinstance(items, list):
            await self._fail(
                job,
                problem(
                    node.id,
                    "BatchInputNotArray",
                    f"batch-scatter node {node.id!r} needs an array as its input{where}, got "
                    f"{type(items).__name__}",
                ),
            )
            return None
        if len(items) > MAX_BATCH_ITEMS:
            await self._fail(
                job,
                problem(
                    node.id,
                    "BatchTooLarge",
                    f"batch-scatter node {node.id!r} got {len(items)} items{where}; a batch "
                    f"has at most {MAX_BATCH_ITEMS}",
                ),
            )
            return None
        writes = {
            keys.item_key(batch.scatter, child_instance(job.instance, i)): item
            for i, item in enumerate(items)
        }
        output = {"gatherNodeId": batch.gather, "hasMore": False, "count": len(items)}
        return Result(output=output), writes, False

    async def _gather(
        self, job: Job, node: Node, values: Mapping[str, Any]
    ) -> tuple[Result, Mapping[str, Any], bool] | None:
        batch = node.batch
        assert batch is not None
        count = output_count(values.get(keys.output_key(batch.scatter, job.instance)))
        wanted = [
            keys.output_key(batch.worker, child_instance(job.instance, i)) for i in range(count)
        ]
        # The one read that grows with the batch: every item's output, once.
        found = await self.context.get_many(job.run_id, wanted) if wanted else {}
        results = [found.get(k) for k in wanted]
        writes = {batch.output_key: results} if batch.output_key else {}
        return Result(output=results), writes, False

    async def _still_asleep(self, d: Delivery) -> bool:
        duration = (duration_ms(d.node.definition.params.get("duration", 0)) or 0.0) / 1000
        # The sleep step gives the lease back only when the node must sleep on.
        remaining = await d.given_back_by(
            self.state.sleep(d.job, duration), when=lambda left: left > 0
        )
        if remaining <= 0:
            return False
        await self._enqueue([d.job], remaining)
        return True

    # -- routing ------------------------------------------------------------------------------

    def _arrivals(
        self,
        d: Delivery,
        output: Any,
        action: Any,
        writes: Mapping[str, Any] | None,
        *,
        skipped: bool = False,
        taken: set[int] | None = None,
        route: set[int] | None = None,
    ) -> list[Arrival]:
        """Each outgoing edge, taken or dead; every one is dead from a ``skipped`` node.

        As in Flowcraft, the edges with the returned action whose condition holds are taken;
        if there are none (no action, or none matched), the edges without an action whose
        condition holds. A condition that cannot be evaluated is false (reported), or raises
        under ``strict``. ``taken`` given: the edges an earlier delivery took (see
        :meth:`_complete`); else the edges taken now are added to ``route`` if given."""
        job, flow, node = d.job, d.flow, d.node
        values: Mapping[str, Any] = {} if skipped else d.loaded.values
        batch = node.batch
        if batch is not None and node.id == batch.worker:
            return self._item_done(flow, node, job.instance, values)
        outgoing = node.outgoing
        if not outgoing:
            return []
        scope: dict[str, Any] | None = None
        report = self._on_expression_error(job)

        def holds(edge: Edge) -> bool:
            nonlocal scope
            if edge.condition is None:
                return True
            if scope is None:
                scope = flow.condition_scope(node, values, writes or {}, output, action)
            try:
                return evaluate_condition(edge.condition, scope)
            except ExpressionError as exc:
                report(edge.condition, exc)
                return False

        loop = node.loop
        if taken is None:
            taken = set()
            if not skipped:
                if loop is not None:
                    # Flowcraft's loop-controller routing: edges with a condition that holds
                    # first, whatever their action; then as for any node.
                    taken = {e.index for e in outgoing if e.condition is not None and holds(e)}
                # An edge without a condition holds: asked only of the others (a fan-out's
                # start node has one unconditional edge per branch).
                if action is not None and not taken:
                    taken = {
                        e.index
                        for e in outgoing
                        if e.action == action and (e.condition is None or holds(e))
                    }
                if not taken:
                    taken = {
                        e.index
                        for e in outgoing
                        if e.action is None and (e.condition is None or holds(e))
                    }
            if route is not None:
                route.update(taken)
        if loop is not None:
            cont = loop.continue_edge
            if cont.index in taken:
                # The next iteration, and nothing else: the exits hear from the last check.
                iteration = child_instance(
                    parent_instance(job.instance), last_index(job.instance) + 1
                )
                return [self._arrival(flow, cont, iteration, live=True)]
            outgoing = [e for e in outgoing if e is not cont]
        scatter = batch is not None and node.id == batch.scatter
        count = output_count(output) if scatter and not skipped else 0
        arrivals = [
            self._arrival(
                flow,
                edge,
                flow.target_instance(edge, job.instance),
                live=edge.index in taken,
                count=count,
            )
            for edge in outgoing
        ]
        if batch is not None and scatter and count:
            first = min(count, batch.chunk or count)
            arrivals += [
                Arrival(
                    target=job_key(batch.worker, child_instance(job.instance, i)),
                    edge=ITEM_EDGE,
                    live=True,
                    join="all",
                    expected=1,
                )
                for i in range(first)
            ]
        return arrivals

    @staticmethod
    def _arrival(
        flow: CompiledFlow, edge: Edge, instance: str, *, live: bool, count: int = 0
    ) -> Arrival:
        target = flow.nodes[edge.target]
        if target.batch is not None and target.id == target.batch.gather:
            # Only the scatter reaches its gather by an edge (validated): ``count`` is the
            # batch's size, one arrival per item besides the scatter's.
            expected = len(target.incoming) + count
        else:
            expected = len(flow.incoming_at(target, instance))
        return Arrival(
            target=job_key(edge.target, instance),
            edge=edge.member,
            live=live,
            join=target.join,
            expected=expected,
        )

    @staticmethod
    def _item_done(
        flow: CompiledFlow, node: Node, instance: str, values: Mapping[str, Any]
    ) -> list[Arrival]:
        """A batch item finished: it arrives at its gather (one arrival per item, the gather
        waits for all) and starts the item ``chunkSize`` after it, if there is one."""
        assert node.batch is not None
        batch = node.batch
        count = flow.batch_size(node, instance, values)
        at = parent_instance(instance)
        index = last_index(instance)
        gather = flow.nodes[batch.gather]
        arrivals = [
            Arrival(
                target=job_key(batch.gather, at),
                edge=f"{ITEM_EDGE}{index}",
                live=True,
                join=gather.join,
                expected=len(gather.incoming) + count,
            )
        ]
        following = index + (batch.chunk or count)
        if following < count:
            arrivals.append(
                Arrival(
                    target=job_key(batch.worker, child_instance(at, following)),
                    edge=ITEM_EDGE,
                    live=True,
                    join="all",
                    expected=1,
                )
            )
        return arrivals

    async def _commit_and_route(
        self,
        d: Delivery,
        *,
        output: Any,
        action: Any = None,
        writes: Mapping[str, Any],
        fell_back: bool = False,
    ) -> Stepped:
        """Commit this delivery's result (first commit wins) with its context ``writes``, then
        route. If another delivery committed first, route with its result instead (see
        :meth:`CompiledFlow.commit_for` for what a commit holds)."""
        commit = d.flow.commit_for(
            d.node, d.job.instance, output=output, action=action, writes=writes, fell_back=fell_back
        )
        return await self._complete(d, output, action, commit=commit, writes=writes)

    async def _route_again(self, d: Delivery, *, output: Any, action: Any) -> Stepped:
        """Route a result that is committed already (by an earlier delivery, or by the one
        that won against this one): records its arrivals, which repeats harmlessly."""
        return await self._complete(d, output, action, commit=None, writes=None)

    async def _complete(
        self,
        d: Delivery,
        output: Any,
        action: Any,
        *,
        commit: dict[str, Any] | None,
        writes: Mapping[str, Any] | None,
    ) -> Stepped:
        job, flow, node, loaded = d.job, d.flow, d.node, d.loaded
        own = flow.own(node, job.instance)
        earlier: set[int] | None = None
        route: set[int] | None = None
        if own.route is not None:
            # Conditions that read the context are evaluated once, by the commit that wins:
            # a redelivery routes as it did, though the context has moved on (a loop's next
            # iterations change what a condition like `counter === 5` says).
            if commit is None:
                recorded = loaded.values.get(own.route)
                earlier = set(recorded) if isinstance(recorded, list) else None
            else:
                route = set()
        try:
            arrivals = self._arrivals(d, output, action, writes, taken=earlier, route=route)
        except ExpressionError as exc:  # strict
            await self._fail(job, describe(exc, node_id=node.id, attempt=job.attempt))
            return NOTHING
        if route is not None and commit is not None:
            commit = {**commit, own.route or "": sorted(route)}
        ahead = (
            self._prefetch_for(flow, arrivals) if d.may_continue and self.state.prefetches else None
        )
        try:
            completion = await d.given_back_by(
                self.state.complete(
                    job,
                    guard=keys.output_key(node.id, job.instance),
                    commit=commit,
                    arrivals=arrivals,
                    retention=self.settings.retention,
                    prefetch=ahead,
                    record=None if commit is None else self._record(d, COMPLETED),
                )
            )
        except (TypeError, ValueError, RecursionError) as exc:
            if commit is None:
                raise
            await self._fail(
                job,
                problem(
                    node.id,
                    "OutputNotSerializable",
                    f"node {node.id!r} returned an output (or context write) that is not "
                    f"JSON-serialisable: {exc}",
                ),
            )
            return NOTHING
        if completion.committed is False:
            # Another delivery committed first: route with its result, not ours.
            stored = await self.context.get_many(job.run_id, flow.read_keys_at(node, job.instance))
            loaded.values = {**loaded.values, **stored}
            output, action = self._committed(own, stored)
            return await self._route_again(d, output=output, action=action)
        successor = None
        if ahead is not None and completion.prefetched is not None:
            target = self._job_for(job, ahead.target)
            prefetched = completion.prefetched
            successor = Delivery(
                target, flow, flow.nodes[target.node_id], prefetched, prefetched.lease
            )
        try:
            self._at("completed", job)
            if completion.committed:
                self.guests.flowcraft_node_finished(job=job, output=output, action=action)
            ready = await self._made_ready(job, completion)
        except BaseException:
            # The prefetched successor's lease is ours until we go on with it: a crash here
            # must not lock its next delivery out until the lease lapses.
            if successor is not None:
                await successor.give_back(self.state)
            raise
        return Stepped(ready, successor)

    async def _skip(self, d: Delivery) -> Stepped:
        """Finish a node none of whose incoming edges was taken: all its edges are dead."""
        job = d.job
        arrivals = self._arrivals(d, None, None, None, skipped=True)
        completion = await d.given_back_by(
            self.state.complete(
                job,
                guard=keys.output_key(d.node.id, job.instance),
                commit=None,
                arrivals=arrivals,
                retention=self.settings.retention,
            )
        )
        self.guests.flowcraft_node_skipped(job=job)
        return Stepped(await self._made_ready(job, completion))

    async def _made_ready(self, job: Job, completion: Completion) -> list[tuple[Job, bool]]:
        """The jobs ``job``'s completion made ready, with the parent job to go on with when it
        left a subflow run done or awaiting (:meth:`_announce`)."""
        parent = await self._announce(job, completion)
        ready = [(self._job_for(job, target), live) for target, live in completion.ready]
        if parent is not None:
            ready.append((parent, True))
        return ready

    @staticmethod
    def _job_for(job: Job, target: str) -> Job:
        node_id, instance = split_job_key(target)
        return Job(job.run_id, node_id, job.digest, instance, headers=job.headers)

    async def _announce(self, job: Job, completion: Completion) -> Job | None:
        """Finalize a run this step left done. Returns the parent job to go on with when the
        run is a subflow run left done or awaiting: the caller continues with it (inline or
        through the queue), and a redelivery of this job continues it again if that is lost."""
        # An awaiting run's idle signal is latched by the run state itself.
        if completion.done:
            won = completion.finalized
            if won is None:
                won = await self.state.finalize(
                    job.run_id, "completed", None, retention=self.settings.retention
                )
            if won:
                self.guests.flowcraft_run_finished(
                    run_id=job.run_id, status="completed", error=None
                )
            return await parent_of(self.context, job.run_id)
        if completion.awaiting:
            return await parent_of(self.context, job.run_id)
        return None

    async def _fail(self, job: Job, error: dict[str, Any]) -> None:
        won = await self.state.finalize(
            job.run_id, "failed", error, retention=self.settings.retention
        )
        if won:
            self.guests.flowcraft_node_failed(job=job, error=error)
            self.guests.flowcraft_run_finished(run_id=job.run_id, status="failed", error=error)
        await continue_parent(self.context, self.queue, job.run_id)


def has_next_attempt(attempt: int, max_retries: int) -> bool:
    """Whether a failed ``attempt`` is followed by another. Attempts come in rounds of
    ``max_retries``: a run's first, and one more per retry of the run (which starts its
    nodes at the next round, see :meth:`flowcraft_core.client.Client.retry`)."""
    return attempt % max(max_retries, 1) != 0


ITEM_EDGE = "#"
"""The member a batch item's activation records at its worker (``#``), and the prefix of the
member each item records at its gather (``#<index>``): blueprint edges' members are their
indices (digits), so neither collides with one."""


def output_count(committed: Any) -> int:
    """The item count a scatter's committed output holds (0 if it has none)."""
    count = committed.get("count") if isinstance(committed, dict) else None
    return count if isinstance(count, int) else 0


def _reraise_if_ours(exc: BaseException) -> None:
    """Re-raise a cancellation of this task (a stop, or the job abandoned); any other exception
    is node code's — ``KeyboardInterrupt``, ``SystemExit``, a ``CancelledError`` of its own, a
    custom ``BaseException`` — and fails the attempt like any error, so the worker lives."""
    if isinstance(exc, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise exc


class LeaseKeeper:
    """Keeps the leases of executing nodes alive, so no duplicate starts a long node.

    One timer per engine renews every lease held longer than a third of its TTL; holding and
    dropping a lease is a dict write, so short nodes cost nothing extra. It looks every
    :data:`RENEW_CHECK` seconds, or every sixth of the shortest TTL held when that is less, so
    a renewal is never later than half the TTL, however short the TTL."""

    def __init__(self, state: RunState) -> None:
        self._state = state
        self._held: dict[int, tuple[Job, float, float]] = {}  # id -> (job, ttl, renew at)
        self._ids = itertools.count()
        self._task: asyncio.Task[None] | None = None

    def hold(self, job: Job, ttl: float) -> int:
        lease_id = next(self._ids)
        self._held[lease_id] = (job, ttl, time.monotonic() + ttl / 3)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._renew_forever())
        return lease_id

    def drop(self, lease_id: int) -> None:
        self._held.pop(lease_id, None)

    async def _renew_forever(self) -> None:
        while self._held:
            now = time.monotonic()
            due = [(i, j, ttl) for i, (j, ttl, at) in list(self._held.items()) if at <= now]
            for lease_id, job, ttl in due:
                try:
                    await self._state.renew(job, ttl)
                except Exception:  # best effort: the commit stays first-wins regardless
                    log.warning("could not renew the lease of %s", job, exc_info=True)
                if lease_id in self._held:
                    self._held[lease_id] = (job, ttl, time.monotonic() + ttl / 3)
            shortest = min((ttl for _, ttl, _ in self._held.values()), default=RENEW_CHECK * 6)
            await asyncio.sleep(min(RENEW_CHECK, shortest / 6))
