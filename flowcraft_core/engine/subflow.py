"""The ``subflow`` built-in: a node whose work is another run (a *child*), as Flowcraft's
``SubflowNode`` (``params.blueprintId``, ``params.inputs {childKey: parentRef}``,
``params.outputs {parentKey: childKey}``).

The child is a real run with its own id, derived from the parent job's identity and attempt
(:func:`~flowcraft_core.engine.keys.child_run_id`): a redelivered job names the same child and
its second start is refused (``RunExists``: already started), while a retry of the node (a new
attempt, after the child failed) starts a fresh child. The parent job never holds a worker while
its child runs: each delivery looks at the child and

* starts it if it has not started (then hands the job back: the node stays activated and
  unfinished, and the parent run reports running);
* does nothing while it runs (its end continues the parent: the delivery that finalizes the
  child, or leaves it awaiting, goes on with the parent job inline; a redelivery of that
  child job, or :func:`continue_parent` from a client's cancel, enqueues it; and if all that
  is lost, reconcile's frontier re-enqueues the parent job, which converges the same way);
* parks the parent job while the child awaits a resume (so the parent reports awaiting), once
  per time it awaits (:func:`~flowcraft_core.engine.keys.subflow_member`), and unparks it
  when the child goes on;
* commits, when the child completed, Flowcraft's output (below) with ``outputs``' writes;
* treats a failed or cancelled child as a failed attempt of the node: its retries (each a new
  child) and fallback apply, and then the parent run fails naming the child.

Output, as Flowcraft's: with ``params.outputs``, each ``parentKey`` is set in the parent's context
to the child's output of node ``childKey`` (or, if that is null, the child's context key
``childKey``) and the node's output is the child's whole final context (its keys, and each
completed node's output under ``_outputs.<id>`` and ``<id>``); without it, the output of the
child's one terminal node, or ``{terminal id: output}`` when it has several. The child's input:
with ``params.inputs``, its initial context holds each ``childKey`` resolved like an ``inputs``
reference in the parent; without, its run input is the subflow node's input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.catalog import MAX_SUBFLOW_DEPTH
from flowcraft_core.engine import keys
from flowcraft_core.engine.compiled import CompiledFlow, Node
from flowcraft_core.engine.delivery import NOTHING, Delivery, Stepped
from flowcraft_core.engine.errors import problem
from flowcraft_core.engine.state import Census, job_for
from flowcraft_core.errors import RunExists
from flowcraft_core.protocols import ContextStore, Job, Queue

if TYPE_CHECKING:
    from flowcraft_core.engine.engine import Engine

log = logging.getLogger(__name__)


def child_meta(
    parent_job: Job, parent_meta: dict[str, Any], child: CompiledFlow, blueprint_id: str
) -> dict[str, Any]:
    """A child run's metadata: what any run's has, plus its parent job (to continue it), its
    depth, and the pinned subflow blueprints it inherits."""
    meta: dict[str, Any] = {
        "flow": child.id,
        "digest": child.digest,
        "started": time.time(),
        "waits": True,
        "subflows": parent_meta.get("subflows") or {},
        "depth": int(parent_meta.get("depth") or 0) + 1,
        "parent": {
            "run": parent_job.run_id,
            "job": parent_job.key,
            "node": parent_job.node_id,
            "attempt": parent_job.attempt,
            "digest": parent_job.digest,
            "blueprint": blueprint_id,
        },
    }
    if parent_job.headers:  # the child's jobs carry the parent's (one trace for the tree)
        meta[keys.RUN_HEADERS] = dict(parent_job.headers)
    return meta


def parent_job(meta: Any) -> Job | None:
    """The parent job a child run's metadata names (None for a run that is not a child)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("parent"), dict):
        return None
    p = meta["parent"]
    job = job_for(str(p["run"]), str(p["digest"]), str(p["job"]), int(p["attempt"]))
    headers = keys.run_headers(meta)
    return replace(job, headers=headers) if headers else job


async def parent_of(context: ContextStore, run_id: str) -> Job | None:
    """The parent job of ``run_id`` if it is a subflow run (one read, only for such ids)."""
    if not keys.may_be_child(run_id):
        return None
    return parent_job(await context.get(run_id, keys.RUN))


async def continue_parent(context: ContextStore, queue: Queue, run_id: str) -> Job | None:
    """Enqueue the parent job of ``run_id`` if it is a subflow run: called whenever the run is
    found finished or awaiting. Enqueueing twice is harmless (the parent job converges)."""
    parent = await parent_of(context, run_id)
    if parent is not None:
        await queue.enqueue(parent)
    return parent


def flowcraft_context(everything: dict[str, Any], child: CompiledFlow) -> dict[str, Any]:
    """A finished child's context as Flowcraft's ``result.context`` holds it: its own keys, and
    each completed node's output under ``_outputs.<id>`` and ``<id>``."""
    out = {k: v for k, v in everything.items() if not k.startswith("_")}
    for node_id in child.nodes:
        key = keys.output_key(node_id)
        if key in everything:
            out[key] = everything[key]
            out[node_id] = everything[key]
    return out


def child_output(
    node: Node, child: CompiledFlow, everything: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """The subflow node's output and its writes to the parent's context (module docstring),
    from the child's final context: all of it with ``params.outputs``, else at least its
    terminal nodes' outputs."""
    outputs = node.definition.params.get("outputs")
    if outputs:
        final = flowcraft_context(everything, child)
        writes: dict[str, Any] = {}
        for parent_key, child_key in outputs.items():
            value = everything.get(keys.output_key(child_key))
            writes[parent_key] = value if value is not None else final.get(child_key)
        return final, writes
    terminals = child.terminal_ids
    if len(terminals) == 1:
        return everything.get(keys.output_key(terminals[0])), {}
    return {
        t: everything[keys.output_key(t)] for t in terminals if keys.output_key(t) in everything
    }, {}


class Subflows:
    """The engine's handling of ``subflow`` jobs (module docstring)."""

    def __init__(self, engine: Engine, catalog: dict[str, Blueprint]) -> None:
        self.engine = engine
        self.catalog = catalog
        """This worker's own catalog: used for a subflow its run did not pin."""

    async def step(self, d: Delivery, node_input: Any) -> Stepped:
        job, state = d.job, self.engine.state
        child_id = keys.child_run_id(job.run_id, job.key, job.attempt)
        census = await state.census(child_id)
        if census.final is None and census.activated == 0:
            await self._start(d, node_input, child_id)
            return NOTHING
        generation = census.generation
        if census.final is None:
            if census.waiting:
                await self._unpark(job, generation)
            if census.awaiting:
                return await self._park(d, child_id, generation)
            return NOTHING  # running: its end continues this job
        if census.waiting:
            await self._unpark(job, generation + 1)
        if census.final["status"] == "completed":
            return await self._child_completed(d, child_id)
        return await self._child_failed(d, node_input, census)

    async def _child_completed(self, d: Delivery, child_id: str) -> Stepped:
        """Commit Flowcraft's output of the completed child (module docstring), reading only
        what it is made of: with ``params.outputs`` that is the child's whole final context;
        without, the child's metadata (its blueprint names the terminal nodes) and the
        terminal nodes' outputs — not a context that grows with the child's work."""
        engine, node, context = self.engine, d.node, self.engine.context
        whole = bool(node.definition.params.get("outputs"))
        read = await context.get_all(child_id) if whole else {}
        meta = read.get(keys.RUN) if whole else await context.get(child_id, keys.RUN)
        child = await engine.flow(str(meta["digest"])) if isinstance(meta, dict) else None
        if child is None:
            await engine._fail(
                d.job,
                problem(
                    node.id,
                    "SubflowFailed",
                    f"subflow node {node.id!r}: the completed child run {child_id} has "
                    "expired or its blueprint is not stored",
                ),
            )
            return NOTHING
        if not whole:
            read = await context.get_many(
                child_id, [keys.output_key(t) for t in child.terminal_ids]
            )
        output, writes = child_output(node, child, read)
        return await engine._commit_and_route(d, output=output, writes=writes)

    async def _child_failed(self, d: Delivery, node_input: Any, census: Census) -> Stepped:
        job, node = d.job, d.node
        assert census.final is not None
        status = census.final["status"]
        cause = census.final.get("error") or {}
        blueprint_id = node.definition.params.get("blueprintId")
        message = (
            f"Sub-workflow {blueprint_id!r} did not complete successfully. Status: {status}. "
            f"Error: {cause.get('message') or 'Unknown error'}"
        )
        error = problem(node.id, "SubflowFailed", message)
        error["traceback"] = cause.get("traceback")
        error["attempt"] = job.attempt
        error["child"] = keys.child_run_id(job.run_id, job.key, job.attempt)
        if cause:
            error["cause"] = cause
        outcome = await self.engine._attempt_failed(d, node_input, error)
        if outcome is None:
            return NOTHING
        result, writes = outcome
        self.engine._at("executed", job)
        return await self.engine._commit_and_route(
            d, output=result.output, action=result.action, writes=writes, fell_back=True
        )

    async def _resolve(self, job: Job, node: Node, meta: dict[str, Any]) -> CompiledFlow | str:
        """The child's blueprint, compiled: the one the run pinned, else this worker's
        catalog's; or the reason there is none."""
        blueprint_id = str(node.definition.params["blueprintId"])
        digest = (meta.get("subflows") or {}).get(blueprint_id)
        if isinstance(digest, str):
            compiled = await self.engine.flow(digest)
            if compiled is not None:
                return compiled
        bp = self.catalog.get(blueprint_id)
        if bp is None:
            return (
                f"Sub-blueprint {blueprint_id!r} not found: run {job.run_id} did not pin it when "
                "it started and it is not in this worker's catalog (--blueprints); known: "
                f"{', '.join(sorted(self.catalog)) or 'none'}"
            )
        compiled = CompiledFlow(bp)
        self.engine.remember(compiled)
        return self.engine._flows[compiled.digest]

    async def _start(self, d: Delivery, node_input: Any, child_id: str) -> None:
        """Start the child and enqueue its start jobs (never continued inline: a job of
        another run is not re-derived by a redelivery of this one), or fail the run."""
        job, node, values = d.job, d.node, d.loaded.values
        engine = self.engine
        meta = values.get(keys.RUN)
        if not isinstance(meta, dict):
            meta = {}
        depth = int(meta.get("depth") or 0) + 1
        if depth > MAX_SUBFLOW_DEPTH:
            await engine._fail(
                job,
                problem(
                    node.id,
                    "SubflowTooDeep",
                    f"subflow node {node.id!r} would start a run nested {depth} deep (at most "
                    f"{MAX_SUBFLOW_DEPTH}): does blueprint "
                    f"{node.definition.params.get('blueprintId')!r} include itself?",
                ),
            )
            return
        child = await self._resolve(job, node, meta)
        if isinstance(child, str):
            await engine._fail(job, problem(node.id, "SubflowNotFound", child))
            return
        refs = node.subflow_inputs
        if refs:
            run_input: Any = None
            context = {k: ref.resolve(values) for k, ref in refs.items()}
        else:
            run_input, context = node_input, {}
        blueprint_id = str(node.definition.params["blueprintId"])
        jobs = [Job(child_id, nid, child.digest, headers=job.headers) for nid in child.start_ids]
        await engine.state.adopt(job.run_id, child_id)
        try:
            await engine.state.start(
                child_id,
                input=run_input,
                meta=child_meta(job, meta, child, blueprint_id),
                digest=child.digest,
                blueprint=child.blueprint.to_json(),
                jobs=[j.key for j in jobs],
                context=context,
            )
        except RunExists:
            pass  # an earlier delivery started it (and may have died before enqueueing)
        except (TypeError, ValueError) as exc:
            await engine._fail(
                job,
                problem(
                    node.id,
                    "InputNotSerializable",
                    f"subflow node {node.id!r}: the child's input is not JSON-serialisable: {exc}",
                ),
            )
            return
        # Enqueued before the lease is given back: a child that ends at once then finds this
        # job's lease held for at most a round trip (it looks again later), rather than a
        # crash in between leaving the child started and never enqueued.
        await engine._enqueue(jobs)
        engine._at("executed", job)
        await d.given_back_by(engine.state.release(job))

    async def _park(self, d: Delivery, child_id: str, generation: int) -> Stepped:
        job, state = d.job, self.engine.state
        member = keys.subflow_member(job.key, job.attempt, generation)
        completion = await d.given_back_by(state.park(job, member))
        again = await state.census(child_id)
        if again.final is not None or again.generation != generation:
            # Resumed (or finished) between the look and the park: go on at once.
            await state.unpark(job.run_id, [member])
            await self.engine._enqueue([job])
            return NOTHING
        parent = await self.engine._announce(job, completion)
        return Stepped([(parent, True)]) if parent is not None else NOTHING

    async def _unpark(self, job: Job, generations: int) -> None:
        """Unpark this job's parks at generations below ``generations``."""
        members = [keys.subflow_member(job.key, job.attempt, g) for g in range(generations)]
        await self.engine.state.unpark(job.run_id, members)
