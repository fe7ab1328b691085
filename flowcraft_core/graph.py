"""Render a blueprint as a Mermaid flowchart.

Node ids are replaced by ``n0``, ``n1``, ... in the chart (a node called ``end`` or ``a-b``
would otherwise break Mermaid's syntax); the real id is the first line of the label. Every
user-supplied text is escaped, so the output is well-formed whatever the blueprint holds.
"""

from __future__ import annotations

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.builtins import SLEEP, WAIT

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


def to_mermaid(bp: Blueprint) -> str:
    """``flowchart TD`` with one line per node and per edge; fallbacks are dotted edges.

    Wait nodes are hexagons, sleep nodes stadiums. Edges naming unknown nodes get a node marked
    ``(missing)`` so that an invalid blueprint can still be drawn.
    """
    lines = ["flowchart TD"]
    keys: dict[str, str] = {}

    def key(nid: str, uses: str | None = None) -> str:
        """The chart id of ``nid``, declaring it on first use (``uses`` None: a missing node)."""
        if nid in keys:
            return keys[nid]
        k = keys[nid] = f"n{len(keys)}"
        body = f"{escape(nid)}<br/>{escape('(missing)' if uses is None else uses)}"
        if uses == WAIT:
            lines.append(f'    {k}{{{{"{body}"}}}}')
        elif uses == SLEEP:
            lines.append(f'    {k}(["{body}"])')
        else:
            lines.append(f'    {k}["{body}"]')
        return k

    for n in bp.nodes:
        key(n.id, n.uses)
    for e in bp.edges:
        source = key(e.source)
        target = key(e.target)
        parts = []
        if e.action is not None:
            parts.append(e.action)
        if e.condition is not None:
            parts.append(f"if {e.condition}")
        label = f'|"{escape(" ".join(parts))}"|' if parts else ""
        lines.append(f"    {source} -->{label} {target}")
    for n in bp.nodes:
        if n.config.fallback is not None:
            lines.append(f'    {key(n.id)} -.->|"fallback"| {key(n.config.fallback)}')
    return "\n".join(lines) + "\n"
