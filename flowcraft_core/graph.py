"""Render a blueprint as a Mermaid flowchart.

Node ids are replaced by ``n0``, ``n1``, ... in the chart (a node called ``end`` or ``a-b``
would otherwise break Mermaid's syntax); the real id is the first line of the label. Every
user-supplied text is escaped, so the output is well-formed whatever the blueprint holds.

Loops, batches and subflows are drawn as what they mean rather than as their built-in nodes: a
loop controller is a decision whose ``continue`` edge back to the body's start (a thick arrow) is
labelled with the loop's condition; a batch is one fan-out, scatter -> the worker (a stacked
node: one instance per item, named by its ``workerUsesKey``) -> gather; a subflow is a
subroutine naming the child blueprint. The stacked node uses Mermaid's ``@{ shape: procs }``
syntax, which needs Mermaid 11.3 or later.
"""

from __future__ import annotations

import json
from typing import Any

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeDef
from flowcraft_core.builtins import (
    BATCH_GATHER,
    BATCH_SCATTER,
    LOOP_CONTROLLER,
    SLEEP,
    SUBFLOW,
    WAIT,
)
from flowcraft_core.scopes import continue_edges

__all__ = ["to_mermaid"]

# Mermaid entity codes (#<decimal>;). Inside quoted labels these characters would end the label,
# split an edge label, or be read as HTML or Markdown.
_ESCAPES = {
    "#": "#35;",
    '"': "#34;",
    "|": "#124;",
    "<": "#60;",
    ">": "#62;",
    "&": "#38;",
    "`": "#96;",
}


def escape(text: str) -> str:
    """``text`` made safe inside a double-quoted Mermaid label, on one line."""
    text = " ".join(text.split())
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def _text(value: Any) -> str:
    """A parameter as label text: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _shape(k: str, body: str, uses: str | None) -> str:
    if uses == WAIT:
        return f'    {k}{{{{"{body}"}}}}'
    if uses == SLEEP:
        return f'    {k}(["{body}"])'
    if uses == LOOP_CONTROLLER:
        return f'    {k}{{"{body}"}}'
    if uses == BATCH_SCATTER:
        return f'    {k}[/"{body}"\\]'
    if uses == BATCH_GATHER:
        return f'    {k}[\\"{body}"/]'
    if uses == SUBFLOW:
        return f'    {k}[["{body}"]]'
    return f'    {k}["{body}"]'


def _label(node: NodeDef | None) -> str:
    if node is None:
        return "(missing)"
    if node.uses == SUBFLOW:
        child = node.params.get("blueprintId")
        return "subflow (no blueprintId)" if child is None else f"subflow: {_text(child)}"
    return node.uses


def to_mermaid(bp: Blueprint) -> str:
    """``flowchart TD`` with one line per node and per edge; fallbacks are dotted edges.

    Wait nodes are hexagons, sleep nodes stadiums, loop controllers decisions, batch scatters
    and gathers trapezoids, subflows subroutines. Each batch scatter gets a stacked worker node
    between it and its gather (``params.gatherNodeId``), which stands for the scatter -> gather
    edge. Edges naming unknown nodes get a node marked ``(missing)`` so that an invalid
    blueprint can still be drawn.
    """
    lines = ["flowchart TD"]
    keys: dict[str, str] = {}
    by_id: dict[str, NodeDef] = {}
    for n in bp.nodes:
        by_id.setdefault(n.id, n)
    counter = 0

    def fresh() -> str:
        nonlocal counter
        counter += 1
        return f"n{counter - 1}"

    def key(nid: str) -> str:
        """The chart id of ``nid``, declaring it on first use."""
        if nid in keys:
            return keys[nid]
        node = by_id.get(nid)
        k = keys[nid] = fresh()
        body = f"{escape(nid)}<br/>{escape(_label(node))}"
        lines.append(_shape(k, body, None if node is None else node.uses))
        return k

    # The worker of each batch: a node of the chart, not of the blueprint.
    workers: dict[str, str] = {}
    for n in bp.nodes:
        key(n.id)
        if n.uses == BATCH_SCATTER and n.id not in workers:
            worker = n.params.get("workerUsesKey")
            label = "(missing worker)" if worker is None else _text(worker)
            k = workers[n.id] = fresh()
            lines.append(f'    {k}@{{ shape: procs, label: "{escape(label)}<br/>per item" }}')

    def gather_of(scatter: NodeDef) -> str | None:
        gather = scatter.params.get("gatherNodeId")
        return gather if isinstance(gather, str) and gather in by_id else None

    def fan_out(scatter: NodeDef) -> None:
        parts = []
        if isinstance(scatter.inputs, str):
            parts.append(f"each of {scatter.inputs}")
        chunk = scatter.params.get("chunkSize")
        if chunk is not None:
            parts.append(f"{_text(chunk)} at a time")
        label = f'|"{escape(", ".join(parts))}"|' if parts else ""
        lines.append(f"    {keys[scatter.id]} -->{label} {workers[scatter.id]}")
        gather = gather_of(scatter)
        if gather is not None:
            lines.append(f'    {workers[scatter.id]} -->|"results in order"| {key(gather)}')

    def edge_line(e: EdgeDef, loop_back: bool) -> str:
        source = key(e.source)
        target = key(e.target)
        node = by_id.get(e.source)
        parts = []
        if e.action is not None:
            parts.append(e.action)
        if loop_back and node is not None:
            condition = node.params.get("condition")
            if condition is not None:
                parts.append(f"if {_text(condition)}")
            if e.condition is not None:
                parts.append(f"and {e.condition}")
        elif e.condition is not None:
            parts.append(f"if {e.condition}")
        label = f'|"{escape(" ".join(parts))}"|' if parts else ""
        return f"    {source} {'==>' if loop_back else '-->'}{label} {target}"

    # The loop-back edges, as validation and the engine define them (flowcraft_core.scopes).
    loop_backs = continue_edges(bp)
    drawn: set[str] = set()
    for i, e in enumerate(bp.edges):
        scatter = by_id.get(e.source)
        if (
            scatter is not None
            and scatter.id in workers
            and e.target == scatter.params.get("gatherNodeId")
            and gather_of(scatter) is not None
        ):
            # The worker stands for this edge: drawn once, where the edge is.
            if scatter.id not in drawn:
                drawn.add(scatter.id)
                fan_out(scatter)
            continue
        lines.append(edge_line(e, i in loop_backs))
    for sid in workers:
        if sid not in drawn:
            fan_out(by_id[sid])
    for n in bp.nodes:
        if n.config.fallback is not None:
            lines.append(f'    {key(n.id)} -.->|"fallback"| {key(n.config.fallback)}')
    return "\n".join(lines) + "\n"
