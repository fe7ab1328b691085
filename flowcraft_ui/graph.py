"""The blueprint drawn as SVG on the server: no graph library, nothing fetched by the browser.

Layered left to right: a node's column is its longest path from a start node, ignoring the
edges that close a cycle (a loop's ``continue`` edge back to its body), which are drawn as
dashed arcs below the nodes. Each node is a ``<g class="node status-S" data-node=ID>``; its
colour comes from the status (the style sheet), so a live update only changes classes."""

from __future__ import annotations

from html import escape

from flowcraft_core import Blueprint

WIDTH, HEIGHT = 150, 46
GAP_X, GAP_Y = 60, 26
MARGIN = 24
KIND = {
    "loop-controller": "loop",
    "batch-scatter": "batch",
    "batch-gather": "batch",
    "wait": "wait",
    "sleep": "wait",
    "subflow": "subflow",
}


def _back_edges(blueprint: Blueprint) -> set[int]:
    """Indexes of the edges that close a cycle, found by a depth-first walk from the nodes
    without incoming edges (then from any node not reached)."""
    outgoing: dict[str, list[tuple[int, str]]] = {n.id: [] for n in blueprint.nodes}
    incoming: dict[str, int] = {n.id: 0 for n in blueprint.nodes}
    for i, e in enumerate(blueprint.edges):
        if e.source in outgoing and e.target in incoming:
            outgoing[e.source].append((i, e.target))
            incoming[e.target] += 1
    back: set[int] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    roots = [n.id for n in blueprint.nodes if incoming[n.id] == 0]
    roots += [n.id for n in blueprint.nodes]
    for root in roots:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, at = stack[-1]
            if at < len(outgoing[node]):
                stack[-1] = (node, at + 1)
                index, target = outgoing[node][at]
                if state.get(target) == 1:
                    back.add(index)
                elif target not in state:
                    state[target] = 1
                    stack.append((target, 0))
            else:
                state[node] = 2
                stack.pop()
    return back


def layout(blueprint: Blueprint) -> tuple[dict[str, tuple[float, float]], set[int], float, float]:
    """Each node's top-left corner, the back edges, and the drawing's size."""
    back = _back_edges(blueprint)
    ids = [n.id for n in blueprint.nodes]
    level = dict.fromkeys(ids, 0)
    forward = [e for i, e in enumerate(blueprint.edges) if i not in back and e.source in level]
    # Longest path on the acyclic rest: relax in rounds (bounded by the node count).
    for _ in range(len(ids)):
        changed = False
        for e in forward:
            if e.target in level and level[e.target] < level[e.source] + 1:
                level[e.target] = level[e.source] + 1
                changed = True
        if not changed:
            break
    rows: dict[int, int] = {}
    where: dict[str, tuple[float, float]] = {}
    for node_id in ids:
        column = level[node_id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        where[node_id] = (MARGIN + column * (WIDTH + GAP_X), MARGIN + row * (HEIGHT + GAP_Y))
    columns = max(level.values(), default=0) + 1
    height = MARGIN * 2 + max(rows.values(), default=1) * (HEIGHT + GAP_Y) + (40 if back else 0)
    return where, back, MARGIN * 2 + columns * (WIDTH + GAP_X) - GAP_X, height


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render(blueprint: Blueprint, status: dict[str, str]) -> str:
    """The SVG of ``blueprint`` with each node coloured by ``status`` (node id → status)."""
    where, back, width, height = layout(blueprint)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" '
        f'aria-label="blueprint {escape(blueprint.id)}" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>',
    ]
    bottom = height - MARGIN
    for i, e in enumerate(blueprint.edges):
        if e.source not in where or e.target not in where:
            continue
        (sx, sy), (tx, ty) = where[e.source], where[e.target]
        if i in back:
            x1, y1 = sx + WIDTH / 2, sy + HEIGHT
            x2, y2 = tx + WIDTH / 2, ty + HEIGHT
            d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{bottom:.0f} {x2:.0f},{bottom:.0f} {x2:.0f},{y2:.0f}"
            css, lx, ly = "edge back", (x1 + x2) / 2, bottom - 4
        else:
            x1, y1 = sx + WIDTH, sy + HEIGHT / 2
            x2, y2 = tx, ty + HEIGHT / 2
            mid = (x1 + x2) / 2
            d = f"M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
            css, lx, ly = "edge", mid, (y1 + y2) / 2 - 4
        parts.append(f'<path class="{css}" d="{d}" marker-end="url(#arrow)"/>')
        label = e.action or ("if" if e.condition else "")
        if label:
            parts.append(
                f'<text class="edge-label" x="{lx:.0f}" y="{ly:.0f}">'
                f"{escape(_short(label, 16))}</text>"
            )
    for node in blueprint.nodes:
        x, y = where[node.id]
        state = status.get(node.id, "pending")
        kind = KIND.get(node.uses, "task")
        parts.append(
            f'<g class="node status-{escape(state)} kind-{kind}" data-node="{escape(node.id)}" '
            f'data-status="{escape(state)}"><title>{escape(node.id)} ({escape(node.uses)}): '
            f"{escape(state)}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{WIDTH}" height="{HEIGHT}" rx="7"/>'
            f'<text class="node-id" x="{x + 10:.0f}" y="{y + 19:.0f}">'
            f"{escape(_short(node.id))}</text>"
            f'<text class="node-uses" x="{x + 10:.0f}" y="{y + 36:.0f}">'
            f"{escape(_short(node.uses, 16))} · {escape(state)}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
