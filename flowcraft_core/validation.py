"""Structural checks of a blueprint, reporting every problem at once.

:func:`validate` returns the problems, each naming the node (``node 'x'``) or edge
(:meth:`EdgeDef.describe`) it concerns; :func:`check` raises :class:`BlueprintError` with all of
them. A blueprint that passes has unique node ids, edges between existing nodes, known ``uses``
(when the caller says which are known), existing fallbacks, compilable expressions, no cycles
except through declared loops (:mod:`flowcraft_core.scopes`), well-formed loops and batches, and
every node reachable from a start node.
"""

from __future__ import annotations

import difflib
from collections.abc import Container, Iterable
from typing import Any, TypeGuard

from flowcraft_core.blueprint import JOIN_STRATEGIES, Blueprint
from flowcraft_core.builtins import (
    BATCH_SCATTER,
    BUILTIN_USES,
    LOOP_CONTROLLER,
    MAX_SLEEP_MS,
    SLEEP,
    SUBFLOW,
    canonical_uses,
    duration_ms,
    subflow_call,
)
from flowcraft_core.errors import BlueprintError, ExpressionError, Problem
from flowcraft_core.expressions import CONDITION_NAMES, TRANSFORM_NAMES, compile_expression
from flowcraft_core.scopes import analyse, continue_edges

__all__ = ["check", "fallback_nodes", "start_nodes", "validate"]


def fallback_nodes(bp: Blueprint) -> set[str]:
    """Ids named as some node's ``config.fallback`` (whether or not such a node exists)."""
    return {n.config.fallback for n in bp.nodes if n.config.fallback is not None}


def start_nodes(bp: Blueprint) -> list[str]:
    """Nodes with no incoming edge that are not fallbacks, in declaration order, without repeats.

    These receive the run input and are enqueued when a run starts.
    """
    targets = {e.target for e in bp.edges}
    fallbacks = fallback_nodes(bp)
    out: list[str] = []
    for n in bp.nodes:
        if n.id not in targets and n.id not in fallbacks and n.id not in out:
            out.append(n.id)
    return out


# Flowcraft built-ins this runtime does not provide, with what to do instead (docs/flowcraft.md,
# Deliberate differences). A registry may still provide node code under these keys.
_WEBHOOK = (
    ": Flowcraft's webhook built-in needs an HTTP endpoint, which this runtime does not serve; "
    "use a 'wait' node and resume it from your HTTP handler (client.resume(run_id, action, "
    "output) or `flowcraft resume`)"
)
_NOT_PROVIDED: dict[str, str] = {"webhook": _WEBHOOK, "WebhookNode": _WEBHOOK}


def check(bp: Blueprint, *, known_uses: Container[str] | None = None) -> None:
    """Raise :class:`BlueprintError` listing every problem, or return if there are none."""
    problems = validate(bp, known_uses=known_uses)
    if problems:
        raise BlueprintError(problems, bp.id)


def validate(bp: Blueprint, *, known_uses: Container[str] | None = None) -> list[Problem]:
    """Every problem of ``bp``, in a stable order (nodes, edges, then graph shape).

    ``known_uses`` are the registry's keys; when it is ``None`` implementations are not checked
    (a blueprint may be validated where the node code is not importable).
    """
    problems: list[Problem] = []
    add = problems.append
    if not bp.nodes:
        add(Problem("blueprint", "has no nodes"))

    ids: dict[str, int] = {}
    uses_of: dict[str, str] = {}
    for n in bp.nodes:
        ids[n.id] = ids.get(n.id, 0) + 1
        uses_of.setdefault(n.id, n.uses)
    for nid, count in ids.items():
        if count > 1:
            add(Problem(_node(nid), f"duplicate node id (declared {count} times)"))

    for n in bp.nodes:
        where = _node(n.id)
        if known_uses is not None and n.uses not in BUILTIN_USES and n.uses not in known_uses:
            hint = _NOT_PROVIDED.get(n.uses) or _suggest(n.uses, _names(known_uses))
            add(Problem(where, f"unknown uses {n.uses!r}{hint}"))
        fallback = n.config.fallback
        if fallback is not None:
            if fallback == n.id:
                add(Problem(where, "config.fallback names the node itself"))
            elif fallback not in ids:
                hint = _suggest(fallback, ids)
                add(Problem(where, f"config.fallback {fallback!r} is not a node{hint}"))
            elif uses_of.get(fallback) in BUILTIN_USES:
                # A fallback runs the node's implementation in place of the failed one; a
                # built-in has none to run (it parks or delays, which a fallback cannot do).
                add(
                    Problem(
                        where,
                        f"config.fallback {fallback!r} is a {uses_of[fallback]!r} node; "
                        "a fallback must run node code",
                    )
                )
        join = n.config.join_strategy
        if join is not None and join not in JOIN_STRATEGIES:
            add(Problem(where, f"config.joinStrategy must be 'all' or 'any', got {join!r}"))
        if n.uses == SLEEP:
            duration = n.params.get("duration")
            ms = duration_ms(duration)
            if ms is None or not 0 <= ms <= MAX_SLEEP_MS:
                message = (
                    f"sleep needs params.duration in ms (a number from 0 to {MAX_SLEEP_MS}, "
                    f"seven days) or as '500ms', '5s', '1m', '2h', '1d', got {duration!r}"
                )
                add(Problem(where, message))
        if n.uses == SUBFLOW:
            problems.extend(Problem(where, m) for m in _subflow_problems(n.params))
        if n.uses == LOOP_CONTROLLER:
            condition = n.params.get("condition")
            if not isinstance(condition, str) or not condition.strip():
                add(Problem(where, f"loop-controller needs params.condition, got {condition!r}"))
            else:
                try:
                    expr = compile_expression(
                        condition, names=CONDITION_NAMES, where="condition", hyphenated=ids
                    )
                except ExpressionError as exc:
                    add(Problem(where, f"params.{exc}"))
                else:
                    if expr.context_keys is None:
                        add(Problem(where, "params." + _whole_context("condition", condition)))
            bound = n.params.get("maxIterations")
            if bound is not None and (not _is_number(bound) or bound != int(bound) or bound < 1):
                add(
                    Problem(
                        where, f"params.maxIterations must be a whole number >= 1, got {bound!r}"
                    )
                )
        if n.uses == BATCH_SCATTER:
            worker = n.params.get("workerUsesKey")
            kind = canonical_uses(worker) if isinstance(worker, str) else None
            call = subflow_call(n.uses, n.params)
            if call is not None:
                # Each worker instance is a subflow node with these params.
                problems.extend(
                    Problem(where, f"{m} (the worker's, params.workerParams)")
                    for m in _subflow_problems(dict(call))
                )
            elif kind in BUILTIN_USES:
                add(
                    Problem(
                        where,
                        f"params.workerUsesKey {worker!r}: a batch worker runs node code or "
                        "the 'subflow' built-in",
                    )
                )
            elif (
                isinstance(worker, str)
                and worker
                and known_uses is not None
                and worker not in known_uses
            ):
                hint = _suggest(worker, _names(known_uses))
                add(Problem(where, f"unknown params.workerUsesKey {worker!r}{hint}"))
            worker_params = n.params.get("workerParams")
            if worker_params is not None and not isinstance(worker_params, dict):
                add(Problem(where, f"params.workerParams must be an object, got {worker_params!r}"))

    for e in bp.edges:
        where = e.describe()
        for role, nid in (("source", e.source), ("target", e.target)):
            if nid not in ids:
                add(Problem(where, f"{role} {nid!r} is not a node{_suggest(nid, ids)}"))
        for kind, text, names, hyphenated in (
            ("condition", e.condition, CONDITION_NAMES, ids),
            ("transform", e.transform, TRANSFORM_NAMES, set()),
        ):
            if text is not None:
                try:
                    expr = compile_expression(text, names=names, where=kind, hyphenated=hyphenated)
                except ExpressionError as exc:
                    add(Problem(where, str(exc)))
                    continue
                if expr.context_keys is None:
                    add(Problem(where, _whole_context(kind, text)))

    problems.extend(_fallbacks_with_edges(bp))
    cycles = _cycles(bp, ids)
    problems.extend(cycles)
    if not cycles:
        problems.extend(analyse(bp).problems)
    problems.extend(_unreachable(bp, ids))
    return problems


def _whole_context(kind: str, text: str) -> str:
    # The keys a job reads are known before it runs (never the whole context).
    return (
        f"{kind}: context must be read by a literal key (context.k or context['k']), not as "
        f"a whole (in {text!r})"
    )


def _subflow_problems(params: dict[str, Any]) -> list[str]:
    """What is wrong with a subflow node's params (blueprintId, inputs, outputs)."""
    found: list[str] = []
    target = params.get("blueprintId")
    if not isinstance(target, str) or not target:
        found.append(f"subflow is missing 'blueprintId' parameter (got {target!r})")
    for name, side in (("inputs", "child"), ("outputs", "parent")):
        mapping = params.get(name)
        if mapping is None:
            continue
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in mapping.items()
        ):
            found.append(
                f"subflow params.{name} must map non-empty strings to non-empty strings, "
                f"got {mapping!r}"[:300]
            )
            continue
        reserved = [k for k in mapping if k.startswith("_")]
        if reserved:
            found.append(
                f"subflow params.{name} writes the {side}'s context keys {reserved!r}; keys "
                "starting with '_' are reserved for flowcraft"
            )
    return found


def _fallbacks_with_edges(bp: Blueprint) -> list[Problem]:
    """A fallback runs inside the failed node's job and routes that node's edges; edges of its
    own would have no job to arrive from or leave from."""
    owners: dict[str, list[str]] = {}
    for n in bp.nodes:
        if n.config.fallback is not None and n.config.fallback != n.id:
            owners.setdefault(n.config.fallback, []).append(n.id)
    found = []
    for fb, of in owners.items():
        edges = [e.describe() for e in bp.edges if fb in (e.source, e.target)]
        if edges:
            names = ", ".join(repr(o) for o in of)
            message = (
                f"is the fallback of {names} and has edges of its own ({', '.join(edges)}); a "
                "fallback runs in place of the failed node and takes that node's outgoing "
                "edges, so give it none"
            )
            found.append(Problem(_node(fb), message))
    return found


def _node(nid: str) -> str:
    return f"node {nid!r}"


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _names(known: Container[str]) -> list[str]:
    # A Container need not be iterable (e.g. a registry with only __contains__): then no hints.
    names = set(BUILTIN_USES)
    if isinstance(known, Iterable):
        names.update(k for k in known if isinstance(k, str))
    return sorted(names)


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _successors(
    bp: Blueprint, ids: Container[str], *, skip: Container[int] = ()
) -> dict[str, list[str]]:
    succ: dict[str, list[str]] = {}
    for i, e in enumerate(bp.edges):
        if i in skip:
            continue
        # Edges naming unknown nodes are reported above; leaving them out here avoids echoes.
        if e.source in ids and e.target in ids:
            succ.setdefault(e.source, []).append(e.target)
    return succ


def _cycles(bp: Blueprint, ids: dict[str, int]) -> list[Problem]:
    """One problem per cycle-bearing strongly connected component (Tarjan, iterative), not
    counting the continue edges of declared loops."""
    succ = _successors(bp, ids, skip=continue_edges(bp))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in ids:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            children = succ.get(v, [])
            if i < len(children):
                work.append((v, i + 1))
                w = children[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                component: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])

    order = {nid: i for i, nid in enumerate(ids)}
    found: list[tuple[int, Problem]] = []
    for component in components:
        members = set(component)
        first = min(component, key=order.__getitem__)
        if len(component) == 1 and first not in succ.get(first, []):
            continue
        path = " -> ".join(_cycle_path(first, members, succ))
        message = (
            f"is on a cycle: {path}; a cycle is allowed only through a loop-controller's "
            "'continue' edge (a declared loop)"
        )
        found.append((order[first], Problem(_node(first), message)))
    return [p for _, p in sorted(found, key=lambda item: item[0])]


def _cycle_path(start: str, members: set[str], succ: dict[str, list[str]]) -> list[str]:
    """A concrete cycle from ``start`` back to itself inside one component (breadth-first)."""
    parent: dict[str, str] = {}
    queue = [start]
    for v in queue:
        for w in succ.get(v, []):
            if w == start:
                path = [start]
                while v != start:
                    path.append(v)
                    v = parent[v]
                return [start, *reversed(path[1:]), start]
            if w in members and w not in parent:
                parent[w] = v
                queue.append(w)
    return [start, start]  # pragma: no cover - a component with a cycle always has a path


def _unreachable(bp: Blueprint, ids: dict[str, int]) -> list[Problem]:
    starts = start_nodes(bp)
    fallbacks = fallback_nodes(bp)
    if bp.nodes and not starts:
        return [Problem("blueprint", "has no start node (every node has an incoming edge)")]
    succ = _successors(bp, ids)
    # Fallback nodes are entered by failure, not by edges, so they count as entry points too.
    seen = set(starts) | (fallbacks & ids.keys())
    queue = list(seen)
    for v in queue:
        for w in succ.get(v, []):
            if w not in seen:
                seen.add(w)
                queue.append(w)
    listed = ", ".join(starts)
    return [
        Problem(_node(nid), f"is not reachable from a start node (start nodes: {listed})")
        for nid in ids
        if nid not in seen
    ]
