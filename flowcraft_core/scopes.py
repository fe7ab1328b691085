"""Loops and batches as scopes: which nodes a declared loop's body holds, and the frames (the
enclosing loops and batches, outermost first) of every node. Validation reports a malformed
loop or batch from here and the engine derives instances from the same analysis, so the two
never disagree on what a loop is.

A declared loop is a ``loop-controller`` node with one outgoing edge of action ``continue``
(as Flowcraft's ``.loop(id, {startNodeId, endNodeId, condition})`` emits it): that edge goes
back to the body's start. The *body* is every node reachable from the start without passing
through the controller. The controller's other outgoing edges leave the loop (``break``).
An edge may enter a body only at its start (or at its controller); a body is left only through
its controller; two loops' bodies are disjoint or one holds the other with its controller.

A batch is a ``batch-scatter`` node whose ``params.gatherNodeId`` names a ``batch-gather``
node; the scatter runs one worker (``params.workerUsesKey``) per item, one frame deeper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowcraft_core.blueprint import Blueprint, EdgeDef
from flowcraft_core.builtins import BATCH_GATHER, BATCH_SCATTER, LOOP_CONTROLLER
from flowcraft_core.errors import Problem

CONTINUE = "continue"


@dataclass(slots=True)
class Loop:
    id: str  # the controller's id
    start: str  # the continue edge's target
    continue_edge: int  # index of the continue edge in the blueprint
    body: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Scopes:
    loops: dict[str, Loop] = field(default_factory=dict)
    # Per node: the ids of the loops (controllers) and batches (scatters) it runs inside,
    # outermost first. A controller's own loop is its last frame (each check of the condition
    # is an instance of it); a batch's frame holds only its worker.
    frames: dict[str, tuple[str, ...]] = field(default_factory=dict)
    gather_of: dict[str, str] = field(default_factory=dict)  # scatter id -> gather id
    problems: list[Problem] = field(default_factory=list)


def continue_edges(bp: Blueprint) -> set[int]:
    """Indices of the declared loops' continue edges: the only edges a cycle may use."""
    controllers = {n.id for n in bp.nodes if n.uses == LOOP_CONTROLLER}
    return {
        i
        for i, e in enumerate(bp.edges)
        if e.source in controllers and e.action == CONTINUE and _first_continue(bp, e, i)
    }


def _first_continue(bp: Blueprint, edge: EdgeDef, index: int) -> bool:
    return (
        next(i for i, e in enumerate(bp.edges) if e.source == edge.source and e.action == CONTINUE)
        == index
    )


def analyse(bp: Blueprint) -> Scopes:
    """The loops, frames and gathers of ``bp``, with every structural problem found (a
    blueprint with problems is refused, so the rest is only used when there are none)."""
    out = Scopes()
    ids = {n.id for n in bp.nodes}
    uses = {n.id: n.uses for n in bp.nodes}
    conts = continue_edges(bp)
    # Bodies follow every edge (an inner loop's continue edge too) but never pass their own
    # controller; incoming edges are checked without continue edges (each loop's own is
    # accounted for as its start's).
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for i, e in enumerate(bp.edges):
        if e.source not in ids or e.target not in ids:
            continue
        succ.setdefault(e.source, []).append(e.target)
        if i not in conts:
            pred.setdefault(e.target, []).append(e.source)
    for n in bp.nodes:
        if n.uses != LOOP_CONTROLLER:
            continue
        cont = next((i for i in conts if bp.edges[i].source == n.id), None)
        if cont is None:
            out.problems.append(
                Problem(
                    f"node {n.id!r}",
                    "is a loop-controller without an outgoing edge of action 'continue' to the "
                    "start of its body",
                )
            )
            continue
        loop = Loop(n.id, bp.edges[cont].target, cont)
        seen = {loop.start}
        queue = [loop.start]
        for v in queue:
            for w in succ.get(v, []):
                if w != n.id and w not in seen:
                    seen.add(w)
                    queue.append(w)
        loop.body = seen
        out.loops[n.id] = loop
    for loop in out.loops.values():
        where = f"node {loop.id!r}"
        if loop.start == loop.id:
            out.problems.append(Problem(where, "the continue edge goes back to the controller"))
            continue
        for v in sorted(loop.body):
            outside = [p for p in pred.get(v, []) if p not in loop.body and p != loop.id]
            if outside and v != loop.start:
                out.problems.append(
                    Problem(
                        f"node {v!r}",
                        f"is in the body of loop {loop.id!r} (reachable from its start "
                        f"{loop.start!r}) but has an incoming edge from {outside[0]!r} outside "
                        "it; a loop body is entered only at its start node",
                    )
                )
            inside_breaks = [p for p in pred.get(v, []) if p == loop.id]
            if inside_breaks:
                out.problems.append(
                    Problem(
                        f"node {v!r}",
                        f"is in the body of loop {loop.id!r} and a target of its non-continue "
                        "edge; the controller's other edges must leave the loop",
                    )
                )
    # Nesting: bodies are disjoint or nested, controller included.
    loops = sorted(out.loops.values(), key=lambda lp: -len(lp.body))
    for i, a in enumerate(loops):
        for b in loops[i + 1 :]:
            if (a.body & b.body) and not (b.body <= a.body and b.id in a.body):
                out.problems.append(
                    Problem(
                        f"node {b.id!r}",
                        f"loop {b.id!r} overlaps loop {a.id!r} without being inside it",
                    )
                )
    containing: dict[str, list[str]] = {nid: [] for nid in ids}
    for loop in loops:  # outermost (largest body) first
        for v in loop.body:
            containing[v].append(loop.id)
    for nid in ids:
        frames = tuple(containing[nid])
        if uses.get(nid) == LOOP_CONTROLLER and nid in out.loops:
            frames = (*frames, nid)
        out.frames[nid] = frames
    for n in bp.nodes:
        if n.uses != BATCH_SCATTER:
            continue
        where = f"node {n.id!r}"
        gather = n.params.get("gatherNodeId")
        worker = n.params.get("workerUsesKey")
        chunk = n.params.get("chunkSize")
        if not isinstance(worker, str) or not worker:
            out.problems.append(Problem(where, "batch-scatter needs params.workerUsesKey"))
        if chunk is not None and (
            not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1
        ):
            out.problems.append(
                Problem(where, f"params.chunkSize must be a whole number >= 1, got {chunk!r}")
            )
        if not isinstance(gather, str) or uses.get(gather) != BATCH_GATHER:
            out.problems.append(
                Problem(
                    where,
                    f"params.gatherNodeId must name a batch-gather node, got {gather!r}",
                )
            )
            continue
        if gather in out.gather_of.values():
            out.problems.append(Problem(where, f"gather {gather!r} belongs to another scatter"))
            continue
        if pred.get(gather, []) != [n.id]:
            out.problems.append(
                Problem(
                    f"node {gather!r}",
                    f"a batch-gather's one incoming edge comes from its scatter {n.id!r}",
                )
            )
        out.gather_of[n.id] = gather
    for n in bp.nodes:
        if n.uses == BATCH_GATHER and n.id not in out.gather_of.values():
            out.problems.append(
                Problem(f"node {n.id!r}", "is a batch-gather that no batch-scatter names")
            )
    return out
