"""A blueprint prepared for execution: validated once, expressions parsed once, adjacency
precomputed, so handling a job never walks the whole graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flowcraft_core.blueprint import Blueprint, NodeDef
from flowcraft_core.builtins import BUILTIN_USES
from flowcraft_core.engine import keys
from flowcraft_core.expressions import Expression, compile_expression
from flowcraft_core.validation import check, fallback_nodes, start_nodes


@dataclass(slots=True)
class Edge:
    index: int
    source: str
    target: str
    action: str | None
    condition: Expression | None
    transform: Expression | None

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
    output_key: str = ""
    action_key: str = ""
    # Context keys this node's input is read from, and whether join bookkeeping is needed.
    read_keys: list[str] = field(default_factory=list)
    needs_join: bool = False

    @property
    def builtin(self) -> str | None:
        uses = self.definition.uses
        return uses if uses in BUILTIN_USES else None


class CompiledFlow:
    """Execution-ready form of one blueprint version (identified by its digest)."""

    def __init__(self, blueprint: Blueprint) -> None:
        check(blueprint)
        self.blueprint = blueprint
        self.digest = blueprint.digest()
        self.id = blueprint.id
        self.nodes: dict[str, Node] = {}
        for nd in blueprint.nodes:
            self.nodes[nd.id] = Node(
                id=nd.id,
                definition=nd,
                join=nd.config.join_strategy or "all",
                output_key=keys.output_key(nd.id),
                action_key=keys.action_key(nd.id),
            )
        for index, ed in enumerate(blueprint.edges):
            where = ed.describe()
            edge = Edge(
                index=index,
                source=ed.source,
                target=ed.target,
                action=ed.action,
                condition=compile_expression(
                    ed.condition, names=("result",), where=f"{where} condition"
                )
                if ed.condition
                else None,
                transform=compile_expression(
                    ed.transform, names=("input",), where=f"{where} transform"
                )
                if ed.transform
                else None,
            )
            self.nodes[ed.source].outgoing.append(edge)
            self.nodes[ed.target].incoming.append(edge)
        starts = set(start_nodes(blueprint))
        self.start_ids = [n.id for n in blueprint.nodes if n.id in starts]
        fallbacks = fallback_nodes(blueprint)
        for node in self.nodes.values():
            node.is_start = node.id in starts
            fb = node.definition.config.fallback
            node.fallback = self.nodes[fb].definition if fb else None
            node.read_keys = self._read_keys(node)
            node.needs_join = bool(node.incoming)
        self.fallback_ids = fallbacks

    @staticmethod
    def _read_keys(node: Node) -> list[str]:
        wanted = [node.output_key, node.action_key]
        inputs = node.definition.inputs
        if isinstance(inputs, str):
            wanted.append(inputs)
        elif isinstance(inputs, dict):
            wanted.extend(inputs.values())
        elif not node.incoming:
            wanted.append(keys.INPUT)
        else:
            wanted.extend(dict.fromkeys(keys.output_key(e.source) for e in node.incoming))
        return wanted

    def input_for(
        self, node: Node, values: dict[str, Any], live: set[str], first: str | None
    ) -> Any:
        """The node's input from what :meth:`RunState.load` read (see DESIGN § Node semantics)."""
        inputs = node.definition.inputs
        if isinstance(inputs, str):
            return values.get(inputs)
        if isinstance(inputs, dict):
            return {name: values.get(key) for name, key in inputs.items()}
        if not node.incoming:
            return values.get(keys.INPUT)
        if len(node.incoming) == 1 or node.join == "any":
            chosen = node.incoming[0]
            if node.join == "any" and first is not None:
                chosen = next((e for e in node.incoming if e.member == first), chosen)
            return self._through(chosen, values)
        return {e.source: self._through(e, values) for e in node.incoming if e.member in live}

    @staticmethod
    def _through(edge: Edge, values: dict[str, Any]) -> Any:
        value = values.get(keys.output_key(edge.source))
        if edge.transform is not None:
            return edge.transform.evaluate({"input": value})
        return value
