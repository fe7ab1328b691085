"""The client: start runs, wait for their results, inspect, cancel and resume them.

:class:`Client` is async; :class:`SyncClient` offers the same calls to synchronous code by
running a private event loop in a background thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.builtins import SUBFLOW, WAIT
from flowcraft_core.catalog import as_catalog, closure
from flowcraft_core.drivers import Backends, open_backends
from flowcraft_core.engine import keys
from flowcraft_core.engine.compiled import CompiledFlow
from flowcraft_core.engine.history import RESUMED, RunHistory, RunPage, attempt_record
from flowcraft_core.engine.settings import EngineSettings
from flowcraft_core.engine.state import Census, Rejoin, run_state_for
from flowcraft_core.engine.subflow import continue_parent, parent_job
from flowcraft_core.errors import BackendUnavailable, FlowcraftError, RunExists, RunNotFound
from flowcraft_core.instance import job_key, split_job_key
from flowcraft_core.plugins import Guests, default_manager
from flowcraft_core.protocols import CoordinationStore, Job
from flowcraft_core.validation import check

T = TypeVar("T")
log = logging.getLogger(__name__)

FINAL_STATUSES = ("completed", "failed", "cancelled")
RUN_STATUSES = ("running", "awaiting", *FINAL_STATUSES)
MAX_LIST = 1000  # runs per page of a listing
STALE_WAKE = 0.002  # a wait that returns sooner than this found its signal latched already


@dataclass
class RunResult:
    """What a run came to: ``status`` is completed, failed, cancelled, awaiting (or running,
    from :meth:`Client.snapshot`); ``outputs`` maps node id to the output of every node that
    completed; ``error`` is set when the run failed; ``context`` holds the run's own context
    keys (the initial context and node code's writes; Flowcraft's ``result.context`` without
    the engine's ``_``-prefixed keys)."""

    run_id: str
    status: str
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    context: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "outputs": self.outputs,
            "error": self.error,
            "context": self.context,
        }


def _initial_context(context: Mapping[str, Any] | None) -> dict[str, Any]:
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        raise FlowcraftError(f"the run context must be an object, got {type(context).__name__}")
    bad = [k for k in context if not isinstance(k, str) or not k or k.startswith("_")]
    if bad:
        raise FlowcraftError(
            "the run context's keys must be non-empty strings not starting with '_' (those are "
            f"the engine's: _input, _outputs.<node>, ...); got {', '.join(map(repr, bad[:5]))}"
        )
    return dict(context)


class RunTimeout(TimeoutError, FlowcraftError):
    """:meth:`Client.result` gave up waiting; ``snapshot`` is the run as it was then."""

    def __init__(self, message: str, snapshot: RunResult) -> None:
        super().__init__(message)
        self.snapshot = snapshot


class Client:
    """Starts and follows runs on a set of backends. Workers may be anywhere."""

    def __init__(
        self,
        backends: Backends | str | None = None,
        *,
        blueprints: Iterable[Blueprint] | Mapping[str, Blueprint] = (),
        known_uses: Iterable[str] | None = None,
        settings: EngineSettings | None = None,
        pm: pluggy.PluginManager | None = None,
    ) -> None:
        self.backends = (
            backends if isinstance(backends, Backends) else open_backends(backends, pm=pm)
        )
        self.settings = settings or EngineSettings()
        pm = pm or default_manager()
        self.hook = pm.hook
        self.guests = Guests(pm)
        self.blueprints: dict[str, Blueprint] = as_catalog(blueprints)
        """The catalog: blueprints by id, for ``start(id)`` and for the subflows a run names."""
        self.known_uses = set(known_uses) if known_uses is not None else None
        # Cancelling finalizes a run as a worker would, with the driver's own steps.
        self._state = run_state_for(
            self.backends.context,
            self.backends.coordination,
            ttl=self.settings.run_ttl,
            fused=self.settings.fused_state,
            hook=self.hook,
        )
        self._compiled: dict[str, CompiledFlow] = {}
        self._json: dict[str, str] = {}  # each blueprint's JSON form, by digest
        # The blueprints each flow's subflows reach in the catalog, by the flow's digest.
        self._reach: dict[str, dict[str, CompiledFlow]] = {}

    @property
    def coordination(self) -> CoordinationStore:
        return self.backends.coordination

    def compile(self, flow: Blueprint | str) -> CompiledFlow:
        if isinstance(flow, str):
            try:
                flow = self.blueprints[flow]
            except KeyError:
                known = ", ".join(sorted(self.blueprints)) or "none"
                raise FlowcraftError(
                    f"no blueprint with id {flow!r} is known to this client (known: {known})"
                ) from None
        digest = flow.digest()
        compiled = self._compiled.get(digest)
        if compiled is None:
            if self.known_uses is not None:
                check(flow, known_uses=self.known_uses)
            compiled = CompiledFlow(flow)
            # With a catalog, every subflow must name a blueprint in it (and none may include
            # itself); without one, a worker's catalog may still have it, or the run fails.
            reach = closure(flow, self.blueprints) if self.blueprints else {}
            self._reach[digest] = {
                bid: self.compile(bp) if bp.digest() != digest else compiled
                for bid, bp in reach.items()
            }
            self._compiled[digest] = compiled
        return compiled

    def _blueprint_json(self, compiled: CompiledFlow) -> str:
        text = self._json.get(compiled.digest)
        if text is None:
            text = self._json[compiled.digest] = compiled.blueprint.to_json()
        return text

    async def start(
        self,
        flow: Blueprint | str,
        input: Any = None,
        *,
        context: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Store the run with its pinned blueprint and enqueue its start nodes.

        ``context`` is the run's initial context (Flowcraft's ``run(blueprint, initialState)``):
        node code, ``inputs`` references and edge expressions read its keys. Keys starting with
        ``_`` are the engine's and are refused.

        With ``idempotency_key``, a start whose key was seen before returns the first run's id
        and starts nothing, also when several starts race (the key names the run id, and the
        run state refuses a second start of one id atomically). A key lives as long as its run
        (until its retention after it finished); a key first used with another blueprint id
        is refused."""
        compiled = self.compile(flow)
        initial = _initial_context(context)
        if idempotency_key is not None:
            if run_id is not None:
                raise FlowcraftError("give a run id or an idempotency key, not both")
            run_id = idempotent_run_id(idempotency_key)
        run_id = run_id or uuid.uuid4().hex
        headers = self.guests.run_headers(run_id=run_id, flow_id=compiled.id)
        reach = self._reach.get(compiled.digest, {})
        meta: dict[str, Any] = {
            "flow": compiled.id,
            "digest": compiled.digest,
            "started": time.time(),
            # Whether the run can ever await a resume: if not, waiters need only "done".
            "waits": any(n.builtin in (WAIT, SUBFLOW) for n in compiled.nodes.values()),
        }
        if idempotency_key is not None:
            meta["idempotency_key"] = idempotency_key
        if reach:
            meta["subflows"] = {bid: c.digest for bid, c in sorted(reach.items())}
        if headers:  # kept with the run for the jobs enqueued later (resume, reconcile)
            meta[keys.RUN_HEADERS] = headers
        jobs = [
            Job(run_id, node_id, compiled.digest, headers=headers).stamped()
            for node_id in compiled.start_ids
        ]
        tries = 0

        async def store() -> None:
            nonlocal tries
            tries += 1
            # The subflows' blueprints are pinned before the run that names them exists.
            for child in reach.values():
                await self._state.store_blueprint(child.digest, self._blueprint_json(child))
            try:
                await self._state.start(
                    run_id,
                    input=input,
                    meta=meta,
                    digest=compiled.digest,
                    blueprint=self._blueprint_json(compiled),
                    jobs=[job.key for job in jobs],
                    context=initial,
                )
            except RunExists:
                # A retry after a lost reply finds the run its first try stored: that one is
                # ours (same metadata, start time included), so this start succeeded.
                if tries == 1 or await self.backends.context.get(run_id, keys.RUN) != meta:
                    raise

        try:
            await _retrying(f"starting run {run_id}", store)
        except RunExists:
            if idempotency_key is None:
                raise
            # The key was seen: the first start stored this run (and enqueued it, or
            # reconcile will), so this one starts nothing.
            first = await self.backends.context.get(run_id, keys.RUN)
            if isinstance(first, dict) and first.get("flow") != compiled.id:
                raise FlowcraftError(
                    f"idempotency key {idempotency_key!r} was used for run {run_id} of "
                    f"blueprint {first.get('flow')!r}, not {compiled.id!r}"
                ) from None
            return run_id
        except (TypeError, ValueError) as exc:
            what = "the run input or context" if initial else "the run input"
            raise FlowcraftError(f"{what} is not JSON-serialisable: {exc}") from None
        # Enqueueing the start jobs twice is harmless (every step is idempotent); not
        # enqueueing them would leave the run to reconcile.
        await _retrying(
            f"enqueueing the start of run {run_id}", lambda: self.backends.queue.enqueue_many(jobs)
        )
        for job in jobs:
            self.guests.flowcraft_job_enqueued(job=job, delay=0.0)
        self.guests.flowcraft_run_started(run_id=run_id, flow_id=compiled.id, input=input)
        return run_id

    async def _census(self, run_id: str) -> tuple[Census, int | None]:
        """The run's census and the resume generation to wait for (None for a run that can
        never await). Raises :class:`RunNotFound` for a run that does not exist."""
        census = await self._state.census(run_id)
        if census.final is not None:
            return census, None
        meta = await self.backends.context.get(run_id, keys.RUN)
        if not isinstance(meta, dict):
            raise RunNotFound(f"no run {run_id!r} (never started, or expired after retention)")
        return census, census.generation if meta.get("waits", True) else None

    async def status(self, run_id: str) -> str:
        """completed, failed, cancelled, awaiting or running."""
        census, _ = await self._census(run_id)
        return census.status

    async def snapshot(self, run_id: str) -> RunResult:
        """The run as it is now, without waiting."""
        census, _ = await self._census(run_id)
        final = census.final
        return await self._result(run_id, census.status, final.get("error") if final else None)

    async def result(self, run_id: str, timeout: float | None = None) -> RunResult:
        """Wait until the run is finished or awaiting a resume; woken by a push from the
        backend, never by polling. Raises :class:`RunTimeout` (a TimeoutError) after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = 0.1
        while True:
            try:
                return await self._wait_once(run_id, deadline, timeout)
            except (FlowcraftError, TimeoutError):
                raise
            except Exception as exc:
                # The backend went away (a restart, a failover): the run goes on without us,
                # so keep following it until the deadline rather than fail the caller.
                if deadline is not None and time.monotonic() + backoff >= deadline:
                    raise
                log.warning("waiting for run %s: %s; retrying in %.1fs", run_id, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _wait_once(
        self, run_id: str, deadline: float | None, timeout: float | None
    ) -> RunResult:
        stale = 0.0
        while True:
            census, generation = await self._census(run_id)
            final = census.final
            if final is not None:
                return await self._result(run_id, final["status"], final.get("error"))
            if census.awaiting:
                return await self._result(run_id, "awaiting", None)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                snapshot = await self._result(run_id, "running", None)
                raise RunTimeout(f"run {run_id} did not finish within {timeout} s", snapshot)
            began = time.monotonic()
            await self._state.wait(run_id, generation, remaining)
            if time.monotonic() - began < STALE_WAKE:
                # Woken at once and not final: the done signal latched by the run's end
                # before a retry reopened it (a latch cannot be taken back). Look again
                # after a pause, backing off, rather than spin.
                stale = min(stale * 2, 0.5) if stale else 0.01
                await asyncio.sleep(stale)
            else:
                stale = 0.0

    async def _result(self, run_id: str, status: str, error: Any) -> RunResult:
        everything = await self.backends.context.get_all(run_id)
        prefix = keys.OUTPUT_PREFIX
        # Only instance 0's keys have this prefix (keys.output_key), whatever the node ids hold.
        outputs = {k[len(prefix) :]: v for k, v in everything.items() if k.startswith(prefix)}
        context = {k: v for k, v in everything.items() if not k.startswith("_")}
        return RunResult(run_id, status, outputs, error, context)

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: no new node starts, and its unfinished subflow runs are cancelled
        too. False if it had already finished (its subflow runs are still cancelled, so a
        cancel that died half way is completed by calling it again)."""
        await self._census(run_id)  # raises RunNotFound
        won = await self._state.finalize(
            run_id, "cancelled", None, retention=self.settings.retention
        )
        if won:
            self.guests.flowcraft_run_finished(run_id=run_id, status="cancelled", error=None)
            # A cancelled subflow run continues its parent, which sees its failure.
            await continue_parent(self.backends.context, self.backends.queue, run_id)
        for child in await self._state.children(run_id):
            census = await self._state.census(child)
            if census.final is None and census.activated:
                await self.cancel(child)
        return won

    async def children(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The subflow runs ``run_id`` started, by run id: each one's ``node`` (the subflow
        node that started it), ``blueprint`` and ``status``."""
        out: dict[str, dict[str, Any]] = {}
        for child in await self._state.children(run_id):
            census = await self._state.census(child)
            meta = await self.backends.context.get(child, keys.RUN)
            parent = meta.get("parent") if isinstance(meta, dict) else None
            status = "starting" if census.final is None and not census.activated else census.status
            out[child] = {
                "node": parent.get("node") if isinstance(parent, dict) else None,
                "blueprint": parent.get("blueprint") if isinstance(parent, dict) else None,
                "status": status,
            }
        return out

    async def resume(
        self,
        run_id: str,
        action: str | None = None,
        output: Any = None,
        *,
        node_id: str | None = None,
    ) -> str:
        """Resume a run parked on a ``wait`` node: that node completes with ``output`` and
        ``action``. With several nodes waiting, ``node_id`` says which. Returns the node id."""
        census, _ = await self._census(run_id)
        if census.final is not None:
            raise FlowcraftError(f"run {run_id} is {census.status}; it cannot be resumed")
        members = await self._state.parked(run_id)
        # A subflow node parks while its child awaits: resuming it resumes the child.
        subflows = {}
        for member in members:
            tag = keys.parse_subflow_member(member)
            if tag is not None:
                subflows[split_job_key(tag[0])[0]] = tag
        # A wait inside a loop parks at its iteration's instance: resume that instance.
        instances = dict(
            split_job_key(key) for key in members if keys.parse_subflow_member(key) is None
        )
        parked = sorted({*instances, *subflows})
        if node_id is None:
            if len(parked) != 1:
                raise FlowcraftError(
                    f"run {run_id} has {len(parked)} nodes waiting ({', '.join(parked) or 'none'})"
                    "; name one with node_id"
                )
            node_id = parked[0]
        elif node_id not in parked:
            raise FlowcraftError(
                f"node {node_id!r} of run {run_id} is not waiting "
                f"(waiting: {', '.join(parked) or 'none'})"
            )
        if node_id in subflows:
            job_key, attempt, _ = subflows[node_id]
            await self.resume(keys.child_run_id(run_id, job_key, attempt), action, output)
            return node_id
        meta = await self.backends.context.get(run_id, keys.RUN)
        if not isinstance(meta, dict):
            raise RunNotFound(f"run {run_id} has no metadata")
        await self._check_action(run_id, str(meta["digest"]), node_id, action)
        instance = instances.get(node_id, keys.ROOT)
        # As the engine commits a node in a loop (CompiledFlow.commit_for): its instance's keys,
        # and the root keys where the rest of the run reads its latest output.
        commit: dict[str, Any] = {}
        for at in {instance, keys.ROOT}:
            commit[keys.output_key(node_id, at)] = output
            if action is not None:
                commit[keys.action_key(node_id, at)] = action
        job = Job(
            run_id, node_id, str(meta["digest"]), instance, headers=keys.run_headers(meta)
        ).stamped()
        try:
            now = time.time()
            record = attempt_record(
                job.attempt, RESUMED, started=None, finished=now, worker="client"
            )
            won = await self._state.resume(
                job, guard=keys.output_key(node_id, instance), commit=commit, record=record
            )
        except (TypeError, ValueError) as exc:
            raise FlowcraftError(f"the resume output is not JSON-serialisable: {exc}") from None
        await self.backends.queue.enqueue(job)
        self.guests.flowcraft_job_enqueued(job=job, delay=0.0)
        parent = parent_job(meta)
        if parent is not None:
            # This subflow run goes on: its parent, parked while it awaited, goes on too.
            member = keys.subflow_member(parent.key, parent.attempt, census.generation)
            await self._state.unpark(parent.run_id, [member])
        if not won:
            raise FlowcraftError(
                f"node {node_id!r} of run {run_id} was already resumed by another call; "
                "this call's action and output were not used"
            )
        return node_id

    async def _check_action(
        self, run_id: str, digest: str, node_id: str, action: str | None
    ) -> None:
        """Refuse a resume that no edge of the wait node would take: the run would go on
        with every branch dead and "complete" having done nothing."""
        compiled = self._compiled.get(digest)
        if compiled is None:
            raw = await self._state.blueprint(digest)
            if raw is None:
                raise RunNotFound(f"run {run_id}'s blueprint {digest} is not stored")
            compiled = self._compiled.setdefault(digest, CompiledFlow(Blueprint.from_json(raw)))
        outgoing = compiled.nodes[node_id].outgoing
        if not outgoing:
            return
        actions = sorted({e.action for e in outgoing if e.action is not None})
        # As the engine routes (Flowcraft's determineNextNodes): an action no edge names
        # falls back to the edges without an action, so with any of those it is taken.
        if action in actions or any(e.action is None for e in outgoing):
            return
        valid = ", ".join(repr(a) for a in actions) or "none"
        given = "no action" if action is None else f"action {action!r}"
        raise FlowcraftError(
            f"node {node_id!r} of run {run_id} has no edge for {given}; its actions: {valid}"
        )

    async def runs(
        self,
        *,
        status: str | None = None,
        flow: str | None = None,
        since: float | datetime.datetime | datetime.timedelta | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs newest first from the run index (never a scan of the backend's keyspace):
        ``status`` (running, awaiting, completed, failed, cancelled), blueprint id ``flow``,
        started at or after ``since`` (a Unix time, a datetime, or a timedelta before now);
        at most ``limit``; pass the page's ``cursor`` for the next one. Runs leave the index
        with their retention."""
        if status is not None and status not in RUN_STATUSES:
            raise FlowcraftError(
                f"unknown run status {status!r}; one of: {', '.join(RUN_STATUSES)}"
            )
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise FlowcraftError(f"limit must be an integer from 1 to {MAX_LIST}, got {limit!r}")
        if isinstance(since, datetime.timedelta):
            since = time.time() - since.total_seconds()
        elif isinstance(since, datetime.datetime):
            since = since.timestamp()
        if since is None:
            # The oldest run that can still be stored: unfinished for run_ttl, then retained.
            since = time.time() - self.settings.run_ttl - self.settings.retention
        if cursor is not None and (not isinstance(cursor, str) or "|" not in cursor):
            raise FlowcraftError(f"not a cursor of a run listing: {cursor!r}")
        return await self._state.runs(
            status=status, flow=flow, since=float(since), cursor=cursor, limit=limit
        )

    async def retry(self, run_id: str, from_node: str | None = None) -> str:
        """Re-run a failed or cancelled run in place; returns its id.

        Without ``from_node``, the nodes that did not complete run again (each with a fresh
        round of its ``maxRetries`` attempts, numbered on from its earlier ones); with it, that
        node and every node after it do, their committed outputs discarded first. Every other
        committed output and context write is kept and nothing of it re-executes. Refused
        with the reason for a running, awaiting or completed run, an unknown node, a node
        inside a loop or batch, or a run whose pinned blueprint expired."""
        census, _ = await self._census(run_id)  # raises RunNotFound
        status = census.status
        if status not in ("failed", "cancelled"):
            hint = "; fork it from a node instead" if status == "completed" else ""
            raise FlowcraftError(
                f"run {run_id} is {status}: only a failed or cancelled run can be retried{hint}"
            )
        _, compiled = await self._pinned(run_id, "retried")
        reset: set[str] = set()
        restart: list[str] = []
        if from_node is not None:
            reset = self._rerun_from(run_id, compiled, from_node, "retry")
            restart = [job_key(from_node)]
        jobs = await self._state.reopen(
            run_id,
            reset=reset,
            restart=restart,
            rejoin=_rejoin(compiled, reset),
            fallbacks=_fallbacks(compiled),
            max_retries=_max_retries(compiled),
            event={"from": from_node},
        )
        if jobs:
            await _retrying(
                f"enqueueing the retry of run {run_id}",
                lambda: self.backends.queue.enqueue_many(jobs),
            )
        for job in jobs:
            self.guests.flowcraft_job_enqueued(job=job, delay=0.0)
        return run_id

    async def fork(self, run_id: str, from_node: str | None = None) -> str:
        """Re-run a finished run from ``from_node`` in a new run; returns the new run's id.

        The new run has the original's pinned blueprint (the same digest), input, initial
        context and every committed output and context write of the nodes that are not
        ``from_node`` or after it, none of which executes again; ``from_node`` and every node
        after it run in the new run (joins after it still count the arrivals of the nodes
        kept). A node the original left unfinished (a failed or cancelled run) and that is not
        after ``from_node`` runs again too, as a retry would run it. The original run is left
        as it was. The new run's history starts with a ``forked`` event naming the original
        and the node.

        Refused with the reason for an unknown run, a run that is not finished (running or
        awaiting: cancel it first, or wait for it), a missing or unknown node, a node inside
        a loop, batch or subflow, or a run whose pinned blueprint expired."""
        census, _ = await self._census(run_id)  # raises RunNotFound
        if census.final is None:
            raise FlowcraftError(
                f"run {run_id} is {census.status}: only a finished run can be forked "
                "(wait for it, or cancel it first)"
            )
        if from_node is None:
            raise FlowcraftError(f"fork of run {run_id} needs the node to re-run from")
        meta, compiled = await self._pinned(run_id, "forked")
        reset = self._rerun_from(run_id, compiled, from_node, "fork")
        new_id = uuid.uuid4().hex
        headers = self.guests.run_headers(run_id=new_id, flow_id=compiled.id)
        # The original's metadata but its own start, headers and origin; not a subflow run of
        # the original's parent (its end continues nothing), not holding an idempotency key.
        new_meta: dict[str, Any] = {
            k: v
            for k, v in meta.items()
            if k not in ("started", "parent", "idempotency_key", keys.RUN_HEADERS)
        }
        new_meta["started"] = time.time()
        new_meta["forked"] = {"run": run_id, "node": from_node}
        if headers:
            new_meta[keys.RUN_HEADERS] = headers
        jobs = await self._state.fork(
            run_id,
            new_id,
            meta=new_meta,
            reset=_rejoin(compiled, reset),
            fallbacks=_fallbacks(compiled),
            max_retries=_max_retries(compiled),
            event={"from": run_id, "node": from_node},
        )
        jobs = [dataclasses.replace(job, headers=headers).stamped() for job in jobs]
        await _retrying(
            f"enqueueing the fork {new_id} of run {run_id}",
            lambda: self.backends.queue.enqueue_many(jobs),
        )
        for job in jobs:
            self.guests.flowcraft_job_enqueued(job=job, delay=0.0)
        self.guests.flowcraft_run_started(
            run_id=new_id,
            flow_id=compiled.id,
            input=await self.backends.context.get(new_id, keys.INPUT),
        )
        return new_id

    async def _pinned(self, run_id: str, done: str) -> tuple[dict[str, Any], CompiledFlow]:
        """The run's metadata and its pinned blueprint, compiled; refused when the blueprint
        expired (the run cannot be ``done``: retried, forked)."""
        meta = await self.backends.context.get(run_id, keys.RUN)
        if not isinstance(meta, dict):
            raise RunNotFound(f"no run {run_id!r} (expired after retention)")
        digest = str(meta["digest"])
        compiled = self._compiled.get(digest)
        if compiled is None:
            raw = await self._state.blueprint(digest)
            if raw is None:
                raise FlowcraftError(
                    f"run {run_id}'s pinned blueprint {meta.get('flow')!r} ({digest}) has "
                    f"expired; it cannot be {done} (start the run again)"
                )
            compiled = self._compiled.setdefault(digest, CompiledFlow(Blueprint.from_json(raw)))
        return meta, compiled

    @staticmethod
    def _rerun_from(run_id: str, compiled: CompiledFlow, from_node: str, verb: str) -> set[str]:
        """``from_node`` and every node after it: what a retry or fork from it runs again.
        Refused for an unknown node and for one inside a loop, batch or subflow."""
        if from_node not in compiled.nodes:
            known = ", ".join(sorted(compiled.nodes))
            raise FlowcraftError(
                f"blueprint {compiled.id!r} of run {run_id} has no node {from_node!r} "
                f"(its nodes: {known})"
            )
        if compiled.nodes[from_node].definition.uses in LOOPING_USES or _in_scope(
            compiled, from_node
        ):
            raise FlowcraftError(
                f"node {from_node!r} of run {run_id} is part of a loop, batch or subflow; "
                f"{verb} from a node outside them"
            )
        return _downstream(compiled, from_node)

    async def history(self, run_id: str) -> RunHistory:
        """The run's per-node timeline (each node instance's attempts with their times,
        status, error and worker) and its events. Raises :class:`RunNotFound`."""
        found = await self._state.history(run_id)
        if found is None:
            raise RunNotFound(f"no run {run_id!r} (never started, or expired after retention)")
        return found

    async def close(self) -> None:
        await self.backends.close()


#: Built-ins whose node starts instances of others: a retry never starts from inside them.
LOOPING_USES = frozenset({"loop-controller", "batch-scatter", "batch-gather", "subflow"})


def _rejoin(compiled: CompiledFlow, reset: set[str]) -> dict[str, Rejoin]:
    """How each node of ``reset`` (a node re-run from and all after it) is joined again: the
    arrivals of its edges from the nodes kept will not come again, so they are carried over."""
    return {
        node: Rejoin(
            join=compiled.nodes[node].join,
            expected=len(compiled.nodes[node].incoming),
            kept=frozenset(
                e.member for e in compiled.nodes[node].incoming if e.source not in reset
            ),
        )
        for node in sorted(reset)
    }


def _fallbacks(compiled: CompiledFlow) -> dict[str, str]:
    return {n.id: n.fallback.id for n in compiled.nodes.values() if n.fallback is not None}


def _max_retries(compiled: CompiledFlow) -> dict[str, int]:
    return {n.id: n.definition.config.max_retries for n in compiled.nodes.values()}


def _downstream(compiled: CompiledFlow, start: str) -> set[str]:
    """``start`` and every node reachable from it."""
    seen = {start}
    todo = [start]
    while todo:
        for edge in compiled.nodes[todo.pop()].outgoing:
            if edge.target not in seen:
                seen.add(edge.target)
                todo.append(edge.target)
    return seen


def _in_scope(compiled: CompiledFlow, node_id: str) -> bool:
    """Whether ``node_id`` runs as instances of a loop or batch (its instance is not the root):
    it is reachable from a looping built-in and reaches it back, or is a batch worker."""
    reaches = _downstream(compiled, node_id)
    for other in compiled.nodes.values():
        if other.definition.uses not in LOOPING_USES or other.id == node_id:
            continue
        down = _downstream(compiled, other.id)
        if node_id not in down:
            continue
        if other.id in reaches:  # a loop body
            return True
        if other.definition.uses == "batch-scatter" and any(
            compiled.nodes[n].definition.uses == "batch-gather" for n in reaches & down
        ):
            return True  # a batch worker, between its scatter and its gather
    return False


def idempotent_run_id(key: str) -> str:
    """The run id an idempotency key names: every start with ``key`` competes for this id."""
    if not isinstance(key, str) or not key:
        raise FlowcraftError(f"an idempotency key must be a non-empty string, got {key!r}")
    return hashlib.sha256(f"flowcraft-idempotency\0{key}".encode()).hexdigest()[:32]


#: Seconds a start keeps retrying a backend that fails (a dropped connection, a restart). A
#: PostgreSQL restart with WAL recovery took longer than 10 s on a loaded machine (make
#: chaos-sql), and a start that gives up during a restart is a start the caller must redo.
START_RETRY_SECONDS = 30.0


async def _retrying(what: str, call: Callable[[], Awaitable[None]]) -> None:
    """``call()``, again after a failure of the backend (not of the caller's data or of
    flowcraft's rules), with a backoff, for up to :data:`START_RETRY_SECONDS`. Only for calls
    that are safe to repeat after an ambiguous failure."""
    deadline = time.monotonic() + START_RETRY_SECONDS
    backoff = 0.05
    while True:
        try:
            await call()
            return
        except BackendUnavailable as exc:
            if time.monotonic() + backoff >= deadline:
                raise
            log.warning("%s: %s; retrying in %.2fs", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
        except (FlowcraftError, TypeError, ValueError):
            raise
        except Exception as exc:
            if time.monotonic() + backoff >= deadline:
                raise
            log.warning("%s: %s; retrying in %.2fs", what, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)


class SyncClient:
    """:class:`Client` for synchronous code: every call runs on a private event loop thread."""

    def __init__(self, backends: Backends | str | None = None, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client = self._run(_make_client(backends, kwargs))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def start(
        self,
        flow: Blueprint | str,
        input: Any = None,
        *,
        context: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        return self._run(
            self._client.start(
                flow, input, context=context, run_id=run_id, idempotency_key=idempotency_key
            )
        )

    def status(self, run_id: str) -> str:
        return self._run(self._client.status(run_id))

    def result(self, run_id: str, timeout: float | None = None) -> RunResult:
        return self._run(self._client.result(run_id, timeout))

    def cancel(self, run_id: str) -> bool:
        return self._run(self._client.cancel(run_id))

    def children(self, run_id: str) -> dict[str, dict[str, Any]]:
        return self._run(self._client.children(run_id))

    def resume(
        self,
        run_id: str,
        action: str | None = None,
        output: Any = None,
        *,
        node_id: str | None = None,
    ) -> str:
        return self._run(self._client.resume(run_id, action, output, node_id=node_id))

    def runs(
        self,
        *,
        status: str | None = None,
        flow: str | None = None,
        since: float | datetime.datetime | datetime.timedelta | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        return self._run(
            self._client.runs(status=status, flow=flow, since=since, limit=limit, cursor=cursor)
        )

    def history(self, run_id: str) -> RunHistory:
        return self._run(self._client.history(run_id))

    def retry(self, run_id: str, from_node: str | None = None) -> str:
        return self._run(self._client.retry(run_id, from_node))

    def fork(self, run_id: str, from_node: str | None = None) -> str:
        return self._run(self._client.fork(run_id, from_node))

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _make_client(backends: Backends | str | None, kwargs: dict[str, Any]) -> Client:
    return Client(backends, **kwargs)
