"""A blueprint prepared for execution: validated once, expressions parsed once, adjacency and
the context keys each node reads precomputed, so handling a job never walks the whole graph.

How a node's input is resolved (Flowcraft's ``resolveNodeInput`` and ``applyEdgeTransform``,
docs/design.md § Blueprints) lives here, as does the scope of edge conditions and transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowcraft_core.blueprint import Blueprint, NodeDef
from flowcraft_core.builtins import BUILTIN_USES, MAX_ITERATIONS, SUBFLOW
from flowcraft_core.engine import keys
from flowcraft_core.errors import ExpressionError
from flowcraft_core.expressions import (
    CONDITION_NAMES,
    TRANSFORM_NAMES,
    Expression,
    compile_expression,
)
from flowcraft_core.instance import INSTANCE_SEP, ROOT, last_index, parent_instance
from flowcraft_core.scopes import analyse
from flowcraft_core.validation import check, fallback_nodes, start_nodes

OnError = Callable[[Expression, ExpressionError], None]
"""Called when an expression cannot be evaluated; it may raise (strict) or return (the
expression then reads as null, a condition as false)."""


@dataclass(frozen=True, slots=True)
class Ref:
    """One ``inputs`` reference, resolved as Flowcraft does: ``_x`` is the raw context key;
    a node id is that node's output if it has one, else the context key of that name; any
    other string is the context key, else (an extension) a path into a node's output when it
    starts with ``<node id>.``."""

    text: str
    node_output: str | None = None  # the output key of the node named by the whole text
    path_output: str | None = None  # the output key of the node the text starts with
    path: tuple[str, ...] = ()

    @property
    def read_keys(self) -> list[str]:
        wanted = [self.text]
        if self.node_output is not None:
            wanted.append(self.node_output)
        if self.path_output is not None:
            wanted.append(self.path_output)
        return wanted

    def present(self, values: Mapping[str, Any]) -> bool:
        """Whether Flowcraft's ``has`` check succeeds (a raw key or a node output is set)."""
        if self.text.startswith("_"):
            return self.text in values
        return self.node_output is not None and self.node_output in values

    def resolve(self, values: Mapping[str, Any]) -> Any:
        if self.text.startswith("_"):
            return values.get(self.text)
        if self.node_output is not None and self.node_output in values:
            return values[self.node_output]
        if self.text in values:
            return values[self.text]
        if self.path_output is not None and self.path_output in values:
            value = values[self.path_output]
            for part in self.path:
                value = value.get(part) if isinstance(value, dict) else None
            return value
        return None


@dataclass(slots=True)
class Edge:
    index: int
    source: str
    target: str
    action: str | None
    condition: Expression | None
    transform: Expression | None
    # How ``transform``'s ``context.k`` keys are read (each like an ``inputs`` reference).
    context_refs: dict[str, Ref] = field(default_factory=dict)
    # Set when the source has a fallback: where a fallen-back source's output is found.
    fallback_marker: str | None = None
    fallback_output: str | None = None
    # The target's instance from the source's: keep this many components below the root,
    # then append these (entering loops: 0 at a controller's first check, else iteration 1).
    keep: int = 0
    append: tuple[int, ...] = ()
    same_scope: bool = True

    @property
    def member(self) -> str:
        return str(self.index)


@dataclass(slots=True)
class Node:
    id: str
    definition: NodeDef
    incoming: list[Edge] = field(default_factory=list)
    outgoing: list[Edge] = field(default_factory=list)
    join: str = "all"
    is_start: bool = False
    fallback: NodeDef | None = None
    fallback_inputs: Ref | dict[str, Ref] | None = None
    output_key: str = ""
    action_key: str = ""
    # Context keys this node's input is read from, and whether join bookkeeping is needed.
    read_keys: list[str] = field(default_factory=list)
    needs_join: bool = False
    inputs: Ref | dict[str, Ref] | None = None
    # Incoming edges grouped by source: two edges from one source are alternatives.
    sources: dict[str, list[Edge]] = field(default_factory=dict)
    # Names the outgoing conditions read (besides ``result`` and ``context``), resolved like
    # references, and the keys they read as ``context.k`` (each resolved the same way).
    condition_refs: dict[str, Ref] = field(default_factory=dict)
    condition_context: dict[str, Ref] | None = None
    # A subflow node's ``params.inputs`` ({child key: parent reference}), resolved like
    # ``inputs`` references (read with the node's load, with the run's metadata).
    subflow_inputs: dict[str, Ref] | None = None
    # Loops and batches (see flowcraft_core.scopes): the frames the node runs inside.
    frames: tuple[str, ...] = ()
    # Loop controllers and starts: only some incoming edges can arrive at a given instance.
    # At the instance whose last component is ``first_index`` (0 for a controller's entry
    # check, 1 for a start's first iteration) ``incoming_first``, else ``incoming_later``.
    first_index: int | None = None
    incoming_first: list[Edge] = field(default_factory=list)
    incoming_later: list[Edge] = field(default_factory=list)
    loop: LoopSpec | None = None  # set on a loop controller
    batch: BatchSpec | None = None  # set on a scatter, its gather and its worker
    mirrored: bool = False  # in a loop body: commits also write the output's latest value
    records_route: bool = False  # its routing reads the context: the commit records it
    shared_keys: list[str] = field(default_factory=list)  # read keys besides its own

    @property
    def builtin(self) -> str | None:
        uses = self.definition.uses
        return uses if uses in BUILTIN_USES else None


@dataclass(slots=True)
class LoopSpec:
    """A loop controller's compiled parameters."""

    condition: Expression
    refs: dict[str, Ref]
    context_refs: dict[str, Ref] | None
    max_iterations: int
    continue_edge: Edge
    start: str

    def scope(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """What the loop's condition sees: each name it reads and, if it reads ``context.k``,
        ``context`` with those keys."""
        scope = {name: ref.resolve(values) for name, ref in self.refs.items()}
        if self.context_refs is not None:
            scope["context"] = {k: ref.resolve(values) for k, ref in self.context_refs.items()}
        return scope


@dataclass(slots=True)
class BatchSpec:
    """The three nodes of one batch (the worker is not in the blueprint: see ``worker_id``)."""

    scatter: str
    gather: str
    worker: str
    chunk: int | None
    output_key: str | None


@dataclass(frozen=True, slots=True)
class Own:
    """The context keys of one node instance's own result (its commit's guard is ``output``)."""

    output: str
    action: str
    fallback: str | None = None  # the marker set when its fallback ran in its place
    fallback_output: str | None = None
    fallback_action: str | None = None
    route: str | None = None  # the edges it took, when its conditions read the context

    @property
    def keys(self) -> list[str]:
        found = [self.output, self.action]
        if self.route is not None:
            found.append(self.route)
        if self.fallback is not None:
            found += [self.fallback, self.fallback_output or "", self.fallback_action or ""]
        return found


def worker_id(scatter_id: str, taken: Mapping[str, Any]) -> str:
    """The id the engine gives a batch's worker: not a node of the blueprint (Flowcraft makes
    the workers dynamically), so one no node has."""
    wid = f"{scatter_id}/worker"
    while wid in taken:
        wid += "'"
    return wid


class CompiledFlow:
    """Execution-ready form of one blueprint version (identified by its digest)."""

    def __init__(self, blueprint: Blueprint) -> None:
        check(blueprint)
        self.blueprint = blueprint
        self.digest = blueprint.digest()
        self.id = blueprint.id
        self.nodes: dict[str, Node] = {}
        # Own is frozen, and outside loops and batches a node has one instance: its keys are
        # made once, not three times per step (see :meth:`own`).
        self._own_at_root: dict[str, Own] = {}
        for nd in blueprint.nodes:
            self.nodes[nd.id] = Node(
                id=nd.id,
                definition=nd,
                join=nd.config.join_strategy or "all",
                output_key=keys.output_key(nd.id),
                action_key=keys.action_key(nd.id),
            )
        for nd in blueprint.nodes:
            node = self.nodes[nd.id]
            node.inputs = self._refs(nd.inputs)
        for index, ed in enumerate(blueprint.edges):
            where = ed.describe()
            edge = Edge(
                index=index,
                source=ed.source,
                target=ed.target,
                action=ed.action,
                condition=compile_expression(
                    ed.condition,
                    names=CONDITION_NAMES,
                    where=f"{where} condition",
                    hyphenated=self.nodes,
                )
                if ed.condition
                else None,
                transform=compile_expression(
                    ed.transform, names=TRANSFORM_NAMES, where=f"{where} transform"
                )
                if ed.transform
                else None,
            )
            if edge.transform is not None:
                edge.context_refs = {
                    k: self._ref(k) for k in sorted(edge.transform.context_keys or ())
                }
            source = self.nodes[ed.source]
            fb = source.definition.config.fallback
            if fb is not None:
                edge.fallback_marker = keys.fallback_key(ed.source)
                edge.fallback_output = keys.output_key(fb)
            source.outgoing.append(edge)
            target = self.nodes[ed.target]
            target.incoming.append(edge)
            target.sources.setdefault(ed.source, []).append(edge)
        starts = set(start_nodes(blueprint))
        self.start_ids = [n.id for n in blueprint.nodes if n.id in starts]
        self.fallback_ids = fallback_nodes(blueprint)
        for node in self.nodes.values():
            node.is_start = node.id in starts
            fb = node.definition.config.fallback
            node.fallback = self.nodes[fb].definition if fb else None
            if node.fallback is not None:
                node.fallback_inputs = self.nodes[node.fallback.id].inputs
            conditions = [e.condition for e in node.outgoing if e.condition is not None]
            node.condition_refs, node.condition_context = self._condition_refs(conditions)
            node.read_keys = self._read_keys(node)
            node.needs_join = bool(node.incoming)
            self._subflow(node)
        self._scopes(blueprint)
        for node in self.nodes.values():
            node.records_route = (
                bool(node.condition_refs)
                or node.condition_context is not None
                or node.loop is not None
            )
            own = self.own(node, ROOT)
            if own.route is not None:
                node.read_keys = [*node.read_keys, own.route]
            node.shared_keys = [k for k in node.read_keys if k not in own.keys]
        self._own_at_root.clear()  # made while compiling: made again once every node is set

    def _subflow(self, node: Node) -> None:
        """A subflow node (or batch worker): its ``params.inputs`` references, read with its
        load like its input's, with the run's metadata. A reference reads a node's latest
        output (the root keys a loop body's commits also write) or a context key, the same at
        every instance, as any other node's ``inputs`` does."""
        if node.definition.uses != SUBFLOW:
            return
        node.subflow_inputs = {
            k: self._ref(v) for k, v in (node.definition.params.get("inputs") or {}).items()
        }
        extra = [keys.RUN, *self._ref_keys(node.subflow_inputs)]
        node.read_keys = list(dict.fromkeys([*node.read_keys, *extra]))

    def _scopes(self, blueprint: Blueprint) -> None:
        """Loops and batches: frames, per-instance incoming edges, controller and batch specs."""
        scopes = analyse(blueprint)
        for nid, frames in scopes.frames.items():
            node = self.nodes[nid]
            node.frames = frames
            node.mirrored = bool(frames)
        for edge in (e for n in self.nodes.values() for e in n.outgoing):
            src, tgt = self.nodes[edge.source].frames, self.nodes[edge.target].frames
            keep = 0
            while keep < min(len(src), len(tgt)) and src[keep] == tgt[keep]:
                keep += 1
            edge.keep = keep
            edge.append = tuple(
                0 if (f == edge.target and i == len(tgt) - 1) else 1
                for i, f in enumerate(tgt[keep:], start=keep)
            )
            edge.same_scope = keep == len(src) == len(tgt)
        for loop in scopes.loops.values():
            controller = self.nodes[loop.id]
            cont = next(e for e in controller.outgoing if e.index == loop.continue_edge)
            text = str(controller.definition.params.get("condition", ""))
            condition = compile_expression(
                text,
                names=CONDITION_NAMES,
                where=f"loop {loop.id!r} params.condition",
                hyphenated=self.nodes,
            )
            bound = controller.definition.params.get("maxIterations")
            refs, context_refs = self._condition_refs([condition])
            controller.loop = LoopSpec(
                condition=condition,
                refs=refs,
                context_refs=context_refs,
                max_iterations=int(bound) if bound is not None else MAX_ITERATIONS,
                continue_edge=cont,
                start=loop.start,
            )
            entries = [e for e in controller.incoming if e.source not in loop.body]
            controller.first_index = 0
            controller.incoming_first = entries
            controller.incoming_later = [e for e in controller.incoming if e.source in loop.body]
            for ref in [*refs.values(), *(context_refs or {}).values()]:
                controller.read_keys.extend(
                    k for k in ref.read_keys if k not in controller.read_keys
                )
            start = self.nodes[loop.start]
            start_entries = [e for e in start.incoming if e is not cont]
            start.first_index = 1
            start.incoming_first = start_entries + ([cont] if entries else [])
            start.incoming_later = [cont]
        for scatter_id, gather_id in scopes.gather_of.items():
            scatter = self.nodes[scatter_id]
            params = scatter.definition.params
            wid = worker_id(scatter_id, self.nodes)
            chunk = params.get("chunkSize")
            out_key = self.nodes[gather_id].definition.params.get("outputKey")
            spec = BatchSpec(
                scatter=scatter_id,
                gather=gather_id,
                worker=wid,
                chunk=int(chunk) if chunk is not None else None,
                output_key=str(out_key) if out_key is not None else None,
            )
            scatter.batch = spec
            self.nodes[gather_id].batch = spec
            worker_params = params.get("workerParams")
            worker = Node(
                id=wid,
                definition=NodeDef(
                    id=wid,
                    uses=str(params.get("workerUsesKey", "")),
                    params=dict(worker_params) if isinstance(worker_params, dict) else {},
                ),
                frames=(*scatter.frames, scatter_id),
                batch=spec,
                output_key=keys.output_key(wid),
                action_key=keys.action_key(wid),
                needs_join=True,
            )
            worker.read_keys = [worker.output_key, worker.action_key]
            self._subflow(worker)
            self.nodes[wid] = worker

    # -- instances ------------------------------------------------------------------------

    def own(self, node: Node, instance: str) -> Own:
        """The keys of ``node``'s own result at ``instance``."""
        if instance != ROOT:
            return self._own(node, instance)
        own = self._own_at_root.get(node.id)
        if own is None:
            own = self._own_at_root[node.id] = self._own(node, ROOT)
        return own

    def _own(self, node: Node, instance: str) -> Own:
        fb = node.fallback
        route = keys.route_key(node.id, instance) if node.records_route else None
        if fb is None:
            return Own(
                keys.output_key(node.id, instance), keys.action_key(node.id, instance), route=route
            )
        return Own(
            keys.output_key(node.id, instance),
            keys.action_key(node.id, instance),
            keys.fallback_key(node.id, instance),
            keys.output_key(fb.id, instance),
            keys.action_key(fb.id, instance),
            route,
        )

    def read_keys_at(self, node: Node, instance: str) -> list[str]:
        """What a job of ``node`` at ``instance`` loads: its own result there, what its batch
        role needs (a worker's item and the batch size, a gather's batch size) and the keys
        it shares with every instance (other nodes' latest outputs, context keys)."""
        batch = node.batch
        if batch is None:
            if instance == ROOT:
                return node.read_keys
            return [*self.own(node, instance).keys, *node.shared_keys]
        found = [*self.own(node, instance).keys]
        if node.id == batch.worker:
            found += [
                keys.item_key(batch.scatter, instance),
                keys.output_key(batch.scatter, parent_instance(instance)),
            ]
        elif node.id == batch.gather:
            found.append(keys.output_key(batch.scatter, instance))
        return list(dict.fromkeys([*found, *node.shared_keys]))

    def incoming_at(self, node: Node, instance: str) -> list[Edge]:
        """The incoming edges that can arrive at ``node``'s ``instance``."""
        if node.first_index is None:
            return node.incoming
        if last_index(instance) == node.first_index:
            return node.incoming_first
        return node.incoming_later

    @staticmethod
    def batch_size(node: Node, instance: str, values: Mapping[str, Any]) -> int:
        """Items of the batch ``node`` (its gather or worker) belongs to at ``instance``, as its
        scatter committed them (0 when the scatter was skipped)."""
        assert node.batch is not None
        at = instance if node.id == node.batch.gather else parent_instance(instance)
        committed = values.get(keys.output_key(node.batch.scatter, at))
        count = committed.get("count") if isinstance(committed, dict) else None
        return count if isinstance(count, int) else 0

    def expected_at(self, node: Node, instance: str, values: Mapping[str, Any]) -> int:
        """Arrivals that make ``node`` ready at ``instance`` (0: a start node)."""
        batch = node.batch
        if batch is not None and node.id == batch.worker:
            return 1
        expected = len(self.incoming_at(node, instance))
        if batch is not None and node.id == batch.gather:
            expected += self.batch_size(node, instance, values)
        return expected

    @staticmethod
    def target_instance(edge: Edge, instance: str) -> str:
        """The instance ``edge`` arrives at from its source's ``instance``."""
        if edge.same_scope:
            return instance
        parts = instance.split(INSTANCE_SEP)[: 1 + edge.keep]
        parts += [str(i) for i in edge.append]
        return INSTANCE_SEP.join(parts)

    def commit_for(
        self,
        node: Node,
        instance: str,
        *,
        output: Any,
        action: Any,
        writes: Mapping[str, Any],
        fell_back: bool,
    ) -> dict[str, Any]:
        """A node instance's commit: its context ``writes`` and its result under its own keys,
        recorded as Flowcraft does when it ``fell_back`` (null under the failed node, the
        fallback's output and action under the fallback's id, and the marker successors read).
        Inside a loop the result is also written under the root keys, where the rest of the
        run reads a body node's latest output (and the run's result shows its last one)."""
        own = self.own(node, instance)
        commit: dict[str, Any] = dict(writes)
        targets = [own]
        if node.mirrored and instance != ROOT:
            targets.append(self.own(node, ROOT))
        for at in targets:
            if fell_back and node.fallback is not None:
                commit[at.output] = None
                commit[at.fallback_output or ""] = output
                commit[at.fallback or ""] = node.fallback.id
                if action is not None:
                    commit[at.fallback_action or ""] = action
            else:
                commit[at.output] = output
                if at is not own and at.fallback is not None:
                    commit[at.fallback] = None  # an earlier iteration may have fallen back
                if action is not None:
                    commit[at.action] = action
        return commit

    @property
    def terminal_ids(self) -> list[str]:
        """The nodes without outgoing edges, in blueprint order (Flowcraft's terminal nodes)."""
        return [n.id for n in self.blueprint.nodes if not self.nodes[n.id].outgoing]

    def _condition_refs(
        self, conditions: list[Expression]
    ) -> tuple[dict[str, Ref], dict[str, Ref] | None]:
        """The names ``conditions`` read (besides ``result``) and, if any reads ``context.k``,
        those keys: as in Flowcraft's evaluator, ``context`` is the run's context in a condition
        as in a transform (read by literal key; validation refuses any other use)."""
        names: set[str] = set()
        context: set[str] | None = None
        for condition in conditions:
            names.update(n for n in condition.names_used if n not in ("result", "context"))
            if "context" in condition.names_used:
                context = (context or set()) | set(condition.context_keys or ())
        refs = {name: self._ref(name) for name in sorted(names)}
        if context is None:
            return refs, None
        return refs, {k: self._ref(k) for k in sorted(context)}

    def _ref(self, text: str) -> Ref:
        if text.startswith("_"):
            return Ref(text)
        node_output = keys.output_key(text) if text in self.nodes else None
        head: str = text
        path: tuple[str, ...] = ()
        parts = text.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in self.nodes:
                head, path = prefix, tuple(parts[cut:])
                break
        path_output = keys.output_key(head) if path else None
        return Ref(text, node_output, path_output, path)

    def _refs(self, inputs: str | dict[str, str] | None) -> Ref | dict[str, Ref] | None:
        if inputs is None:
            return None
        if isinstance(inputs, str):
            return self._ref(inputs)
        return {name: self._ref(text) for name, text in inputs.items()}

    @staticmethod
    def _ref_keys(refs: Ref | dict[str, Ref] | None) -> list[str]:
        if refs is None:
            return []
        if isinstance(refs, Ref):
            return refs.read_keys
        return [k for ref in refs.values() for k in ref.read_keys]

    def _read_keys(self, node: Node) -> list[str]:
        wanted = [node.output_key, node.action_key]
        wanted.extend(self._ref_keys(node.inputs))
        if not node.incoming:
            if node.inputs is None:
                wanted.append(keys.INPUT)
        else:
            for e in node.incoming:
                wanted.append(keys.output_key(e.source))
                if e.fallback_marker is not None and e.fallback_output is not None:
                    wanted += [e.fallback_marker, e.fallback_output]
                for ref in e.context_refs.values():
                    wanted.extend(ref.read_keys)
        if node.fallback is not None:
            fb = node.fallback.id
            wanted += [keys.fallback_key(node.id), keys.output_key(fb), keys.action_key(fb)]
            wanted.extend(self._ref_keys(node.fallback_inputs))
        for ref in [*node.condition_refs.values(), *(node.condition_context or {}).values()]:
            wanted.extend(ref.read_keys)
        return list(dict.fromkeys(wanted))

    # -- input ----------------------------------------------------------------------------

    def input_for(
        self,
        node: Node,
        values: dict[str, Any],
        live: set[str],
        first: str | None,
        on_error: OnError,
        instance: str = ROOT,
    ) -> Any:
        """The node's input from what :meth:`RunState.load` read (see docs/design.md § Node
        semantics and § Blueprints)."""
        batch = node.batch
        if batch is not None and node.id == batch.worker:
            return values.get(keys.item_key(batch.scatter, instance))
        incoming = self.incoming_at(node, instance)
        chosen = self._chosen_edge(node, incoming, live, first)
        if node.inputs is not None:
            base = _resolve(node.inputs, values)
            if chosen is None or chosen.transform is None:
                return base
            # Flowcraft applies the edge's transform to the referenced value when a string
            # reference names a set raw key or node output (and not the edge's own source).
            if (
                isinstance(node.inputs, Ref)
                and node.inputs.text != chosen.source
                and node.inputs.present(values)
            ):
                return self._transform(chosen, base, values, on_error)
            return self._through(chosen, values, on_error)
        if not node.incoming:
            return values.get(keys.INPUT)
        if chosen is not None:
            return self._through(chosen, values, on_error)
        out: dict[str, Any] = {}
        for source, edges in _by_source(node, incoming).items():
            edge = next((e for e in edges if e.member in live), None)
            if edge is not None:
                out[source] = self._through(edge, values, on_error)
        return out

    @staticmethod
    def _chosen_edge(
        node: Node, incoming: list[Edge], live: set[str], first: str | None
    ) -> Edge | None:
        """The one edge a non-join input comes through (None for an ``all`` join of several
        sources, or a start node)."""
        if not incoming:
            return None
        if node.join == "any" and first is not None:
            found = next((e for e in incoming if e.member == first), None)
            if found is not None:
                return found
        if len(_by_source(node, incoming)) == 1 or node.join == "any":
            return next((e for e in incoming if e.member in live), incoming[0])
        return None

    def _through(self, edge: Edge, values: dict[str, Any], on_error: OnError) -> Any:
        value = self.source_output(edge, values)
        if edge.transform is None:
            return value
        return self._transform(edge, value, values, on_error)

    @staticmethod
    def source_output(edge: Edge, values: Mapping[str, Any]) -> Any:
        """What ``edge`` carries: its source's output, or its fallback's if the source fell
        back (the fallback takes the failed node's outgoing edges)."""
        if edge.fallback_marker is not None and values.get(edge.fallback_marker):
            return values.get(edge.fallback_output or "")
        return values.get(keys.output_key(edge.source))

    @staticmethod
    def _transform(edge: Edge, value: Any, values: dict[str, Any], on_error: OnError) -> Any:
        assert edge.transform is not None
        context = {k: ref.resolve(values) for k, ref in edge.context_refs.items()}
        try:
            return edge.transform.evaluate({"input": value, "context": context})
        except ExpressionError as exc:
            on_error(edge.transform, exc)
            return None

    def fallback_input(self, node: Node, values: dict[str, Any], failed_input: Any) -> Any:
        """A fallback's input: its own ``inputs`` if it has them, else the failed node's."""
        if node.fallback_inputs is None:
            return failed_input
        return _resolve(node.fallback_inputs, values)

    @staticmethod
    def condition_scope(
        node: Node,
        values: Mapping[str, Any],
        writes: Mapping[str, Any],
        output: Any,
        action: Any,
    ) -> dict[str, Any]:
        """What an outgoing condition sees: ``result`` and each name it reads — the node's own
        pending context write, else a node's output, else the context key (null if unset)."""
        scope: dict[str, Any] = {}
        own_output = keys.output_key(node.id)

        def read(name: str, ref: Ref) -> Any:
            if name in writes:
                return writes[name]
            if name in (node.id, own_output):
                return output
            return ref.resolve(values)

        for name, ref in node.condition_refs.items():
            scope[name] = read(name, ref)
        if node.condition_context is not None:
            scope["context"] = {k: read(k, ref) for k, ref in node.condition_context.items()}
        scope["result"] = {"output": output, "action": action}
        return scope


def _by_source(node: Node, incoming: list[Edge]) -> dict[str, list[Edge]]:
    if incoming is node.incoming:
        return node.sources
    grouped: dict[str, list[Edge]] = {}
    for e in incoming:
        grouped.setdefault(e.source, []).append(e)
    return grouped


def _resolve(refs: Ref | dict[str, Ref], values: Mapping[str, Any]) -> Any:
    if isinstance(refs, Ref):
        return refs.resolve(values)
    return {name: ref.resolve(values) for name, ref in refs.items()}
