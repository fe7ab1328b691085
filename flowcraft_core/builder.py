"""A fluent builder for blueprints in Python.

``Flow("order").node("a", fetch).edge("a", "b").to_blueprint()`` builds the same
:class:`Blueprint` a JSON file would. Its verbs are Flowcraft's (``createFlow(...)``): ``node``,
``edge``, ``loop``, ``batch``, ``sleep``, ``wait``, plus ``subflow``, and ``to_blueprint`` gives
the JSON Flowcraft 2.10.1's ``toBlueprint()`` gives for the same calls, including its re-wiring of
edges around loops and batches (tests/builder_parity holds Flowcraft's own output as goldens).
Two deliberate differences, documented in docs/flowcraft.md: a callable's registry key is its
``__qualname__`` (Flowcraft: a class's name, or ``fn_<hash of the source>``), and an edge that
touches two constructs (batch -> batch, loop -> batch) is re-wired at both ends, where Flowcraft
emits two edges to node ids that do not exist.

Beyond the checks Flowcraft's builder makes (a loop's start and end nodes exist), the builder does
not validate: pass the result to :func:`flowcraft_core.validation.check` (the engine does so when
it registers a flow).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeConfig, NodeDef
from flowcraft_core.builtins import (
    BATCH_GATHER,
    BATCH_SCATTER,
    LOOP_CONTROLLER,
    SLEEP,
    SUBFLOW,
    WAIT,
)

__all__ = ["Flow", "uses_key"]


def uses_key(fn: Callable[..., Any]) -> str:
    """The registry key the builder derives for a callable: its ``__qualname__`` without the
    ``<locals>`` parts (``make.<locals>.fetch`` -> ``make.fetch``)."""
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):
        raise TypeError(f"{fn!r} has no __qualname__; pass a string key as `uses` instead")
    return ".".join(part for part in qualname.split(".") if part != "<locals>")


@dataclass(frozen=True)
class _Loop:
    id: str
    start: str
    end: str


@dataclass(frozen=True)
class _Batch:
    id: str
    scatter: str
    gather: str


class Flow:
    """Collects nodes and edges in call order; every method but :meth:`to_blueprint` and
    :meth:`registry` returns the flow itself."""

    def __init__(self, id: str, *, metadata: Mapping[str, Any] | None = None) -> None:
        self.id = id
        self._metadata: dict[str, Any] = copy.deepcopy(dict(metadata or {}))
        self._nodes: list[NodeDef] = []
        self._edges: list[EdgeDef] = []
        self._registry: dict[str, Callable[..., Any]] = {}
        self._loops: list[_Loop] = []
        self._batches: list[_Batch] = []
        self._cycle_entry_points: dict[str, None] = {}  # ordered, no repeats: Flowcraft's Map

    def node(
        self,
        id: str,
        uses: str | Callable[..., Any],
        *,
        params: Mapping[str, Any] | None = None,
        inputs: str | Mapping[str, str] | None = None,
        max_retries: int = 1,
        retry_delay: float = 0,
        timeout: float | None = None,
        fallback: str | None = None,
        join: str | None = None,
    ) -> Flow:
        """Add a node. A callable ``uses`` is registered under :func:`uses_key`; two different
        callables with the same key are an error (the registry could hold only one)."""
        uses = self._register(id, uses)
        self._nodes.append(
            NodeDef(
                id=id,
                uses=uses,
                # Copies, so later changes to the caller's dicts do not alter the blueprint.
                params=copy.deepcopy(dict(params or {})),
                inputs=inputs if inputs is None or isinstance(inputs, str) else dict(inputs),
                config=NodeConfig(
                    max_retries=max_retries,
                    retry_delay=retry_delay,
                    timeout=timeout,
                    fallback=fallback,
                    join_strategy=join,
                ),
            )
        )
        return self

    def _register(self, id: str, uses: str | Callable[..., Any]) -> str:
        if not callable(uses):
            return uses
        key = uses_key(uses)
        known = self._registry.get(key)
        if known is not None and known is not uses:
            raise ValueError(f"node {id!r}: {uses!r} and {known!r} share the key {key!r}")
        self._registry[key] = uses
        return key

    def edge(
        self,
        source: str,
        target: str,
        *,
        action: str | None = None,
        condition: str | None = None,
        transform: str | None = None,
    ) -> Flow:
        """Add an edge; nodes may be declared before or after it."""
        self._edges.append(EdgeDef(source, target, action, condition, transform))
        return self

    def chain(self, *ids: str) -> Flow:
        """Add plain edges ``ids[0] -> ids[1] -> ...``."""
        for source, target in itertools.pairwise(ids):
            self.edge(source, target)
        return self

    def wait(self, id: str, **kwargs: Any) -> Flow:
        """Add a built-in ``wait`` node (the run awaits ``resume``); kwargs as for :meth:`node`."""
        return self.node(id, WAIT, **kwargs)

    def sleep(self, id: str, *, duration: float, **kwargs: Any) -> Flow:
        """Add a built-in ``sleep`` node that continues after ``duration`` milliseconds."""
        params = {**kwargs.pop("params", {}), "duration": duration}
        return self.node(id, SLEEP, params=params, **kwargs)

    def loop(
        self,
        id: str,
        *,
        start_node_id: str,
        end_node_id: str,
        condition: str,
        max_iterations: int | None = None,
    ) -> Flow:
        """Flowcraft's ``.loop(id, {startNodeId, endNodeId, condition})``: a ``loop-controller``
        node ``id`` (an ``any`` join) after ``end_node_id``, with a ``continue`` edge back to
        ``start_node_id`` taken while ``condition`` holds. Edges you add from ``id`` are the
        ways out: :meth:`to_blueprint` gives each the action ``break`` (unless it has one) and
        the transform ``context["<end_node_id>"]``, so the body's last output flows on.

        ``max_iterations`` (ours; ``params.maxIterations``) bounds the passes; without it the
        engine's default applies. Both nodes must exist by :meth:`to_blueprint`.
        """
        params: dict[str, Any] = {"condition": condition}
        if max_iterations is not None:
            params["maxIterations"] = max_iterations
        self._loops.append(_Loop(id, start_node_id, end_node_id))
        self._nodes.append(
            NodeDef(
                id=id,
                uses=LOOP_CONTROLLER,
                params=params,
                config=NodeConfig(join_strategy="any"),
            )
        )
        self.edge(end_node_id, id)
        self.edge(id, start_node_id, action="continue", transform=f'context["{end_node_id}"]')
        return self

    def batch(
        self,
        id: str,
        worker: str | Callable[..., Any],
        *,
        input_key: str,
        output_key: str,
        chunk_size: int | None = None,
    ) -> Flow:
        """Flowcraft's ``.batch(id, worker, {inputKey, outputKey, chunkSize})``: a
        ``batch-scatter`` node ``<id>_scatter`` reading the array at ``input_key`` and a
        ``batch-gather`` node ``<id>_gather`` (an ``all`` join) whose output, the workers'
        results in item order, also lands in ``context[output_key]``. The worker is not a node
        of the blueprint: the scatter names it (``params.workerUsesKey``) and the engine starts
        one instance per item, at most ``chunk_size`` at a time.

        ``id`` is not a node either: edges you add to or from it are re-wired by
        :meth:`to_blueprint` to the scatter (incoming) and the gather (outgoing). A callable
        ``worker`` is registered as for :meth:`node`.
        """
        scatter, gather = f"{id}_scatter", f"{id}_gather"
        worker_key = self._register(id, worker)
        self._batches.append(_Batch(id, scatter, gather))
        scatter_params: dict[str, Any] = {
            "workerUsesKey": worker_key,
            "outputKey": output_key,
            "gatherNodeId": gather,
        }
        if chunk_size is not None:
            scatter_params["chunkSize"] = chunk_size
        self._nodes.append(
            NodeDef(id=scatter, uses=BATCH_SCATTER, params=scatter_params, inputs=input_key)
        )
        self._nodes.append(
            NodeDef(
                id=gather,
                uses=BATCH_GATHER,
                params={"outputKey": output_key, "gatherNodeId": gather},
                config=NodeConfig(join_strategy="all"),
            )
        )
        self.edge(scatter, gather)
        return self

    def subflow(
        self,
        id: str,
        blueprint: str | Flow | Blueprint,
        *,
        inputs: Mapping[str, str] | None = None,
        outputs: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Flow:
        """A ``subflow`` node running the blueprint ``blueprint`` (its id, or the flow or
        blueprint itself, which is then named by its id) as a child run: ``inputs`` maps a
        child context key to a reference in this run (a context key or a node id),
        ``outputs`` maps a key of this run's context to a child node id or context key
        (``params.blueprintId``, ``params.inputs``, ``params.outputs``, as Flowcraft's
        ``SubflowNode`` reads them). Other kwargs as for :meth:`node`.

        Flowcraft's builder has no such verb: there one writes
        ``.node(id, SubflowNode, {params: {blueprintId, inputs, outputs}})``, which gives the
        same node with ``uses: "SubflowNode"`` (the class's name) instead of the built-in key.
        """
        blueprint_id = blueprint if isinstance(blueprint, str) else blueprint.id
        params: dict[str, Any] = {**kwargs.pop("params", {}), "blueprintId": blueprint_id}
        if inputs is not None:
            params["inputs"] = dict(inputs)
        if outputs is not None:
            params["outputs"] = dict(outputs)
        return self.node(id, SUBFLOW, params=params, **kwargs)

    def set_cycle_entry_point(self, node_id: str) -> Flow:
        """Flowcraft's ``setCycleEntryPoint``: recorded in ``metadata.cycleEntryPoints`` (kept
        for Flowcraft; this runtime refuses cycles that are not declared loops)."""
        self._cycle_entry_points[node_id] = None
        return self

    def registry(self) -> dict[str, Callable[..., Any]]:
        """The callables given as ``uses``, by key: usable as (part of) a node registry."""
        return dict(self._registry)

    def to_blueprint(self, *, metadata: Mapping[str, Any] | None = None) -> Blueprint:
        """The blueprint built so far; ``metadata`` is merged over the flow's own.

        Edges are re-wired and ordered as Flowcraft's ``toBlueprint()`` does: first the ways
        out of each loop (in :meth:`loop` order), then per batch its incoming and outgoing
        edges, then every other edge in the order it was added. The flow itself is not changed,
        so calling this twice gives the same blueprint.

        Raises ``ValueError`` (with Flowcraft's message) if the flow has no nodes, or a loop
        names a start or end node that does not exist.
        """
        if not self._nodes:
            raise ValueError("Cannot build a blueprint with no nodes.")
        ids = {n.id for n in self._nodes}
        for lp in self._loops:
            for role, nid in (("start", lp.start), ("end", lp.end)):
                if nid not in ids:
                    raise ValueError(f"Loop '{lp.id}' references non-existent {role} node '{nid}'.")
        meta = {**self._metadata, **(metadata or {})}
        if self._cycle_entry_points:
            meta["cycleEntryPoints"] = list(self._cycle_entry_points)
        return Blueprint(
            id=self.id,
            nodes=tuple(self._nodes),
            edges=tuple(self._rewired_edges()),
            metadata=copy.deepcopy(meta),
        )

    def _rewired_edges(self) -> list[EdgeDef]:
        loops = {lp.id: lp for lp in self._loops}
        batches = {b.id: b for b in self._batches}

        def rewired(e: EdgeDef) -> EdgeDef:
            # Every end of an edge is re-wired, so an edge between two constructs is one edge
            # between real nodes (Flowcraft re-wires one end per copy and emits two).
            lp = loops.get(e.source)
            if lp is not None and e.target != lp.start:
                e = dataclasses.replace(
                    e, action=e.action or "break", transform=f'context["{lp.end}"]'
                )
            if e.target in batches:
                e = dataclasses.replace(e, target=batches[e.target].scatter)
            if e.source in batches:
                e = dataclasses.replace(e, source=batches[e.source].gather)
            return e

        # Indices, not edges: two equal edges are still two edges (Flowcraft keeps both).
        order: list[int] = []
        placed: set[int] = set()

        def place(indices: list[int]) -> None:
            for i in indices:
                if i not in placed:
                    placed.add(i)
                    order.append(i)

        edges = self._edges
        for lp in self._loops:
            place([i for i, e in enumerate(edges) if e.source == lp.id and e.target != lp.start])
        for b in self._batches:
            place([i for i, e in enumerate(edges) if e.target == b.id])
            place([i for i, e in enumerate(edges) if e.source == b.id])
        place(list(range(len(edges))))
        return [rewired(edges[i]) for i in order]
