"""The blueprint catalog: the blueprints a ``subflow`` node may name, by id.

Clients and workers share one (``--blueprints DIR``, ``Client(..., blueprints=...)``,
``Worker(..., blueprints=...)``). A run started by a client with a catalog pins every blueprint
its subflows reach (by content digest, in the run's metadata and its children's), so workers need
no catalog for it, and a later edit of a catalog file never changes a run already started. A
worker's own catalog is only consulted for a subflow whose run did not pin it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.builtins import subflow_call
from flowcraft_core.errors import BlueprintError, Problem

#: Suffixes of the files a catalog directory is read from.
CATALOG_SUFFIXES = (".json", ".yaml", ".yml")

#: How deep subflows may nest at run time (a run's child is depth 1). A catalog refuses a cycle
#: of blueprints up front; this bounds what it cannot see (a worker's catalog that differs from
#: the client's), so a blueprint that includes itself fails its run instead of recursing forever.
MAX_SUBFLOW_DEPTH = 32


def load_catalog(directory: str | Path) -> dict[str, Blueprint]:
    """Every ``*.json``, ``*.yaml`` and ``*.yml`` file directly in ``directory``, by blueprint
    id. Raises :class:`BlueprintError` naming each file that cannot be read or is invalid, and
    each id that two files declare."""
    root = Path(directory)
    if not root.is_dir():
        raise BlueprintError([Problem(str(root), "--blueprints must name a directory")])
    found: dict[str, Blueprint] = {}
    origin: dict[str, Path] = {}
    problems: list[Problem] = []
    for path in sorted(root.iterdir()):
        if path.suffix.lower() not in CATALOG_SUFFIXES or not path.is_file():
            continue
        try:
            bp = Blueprint.load(path)
        except BlueprintError as exc:
            problems.extend(
                Problem(str(path), str(p) if p.where != str(path) else p.message)
                for p in exc.problems
            )
            continue
        if bp.id in found:
            problems.append(
                Problem(str(path), f"blueprint id {bp.id!r} is also declared by {origin[bp.id]}")
            )
            continue
        found[bp.id] = bp
        origin[bp.id] = path
    if problems:
        raise CatalogError(problems, str(root))
    return found


class CatalogError(BlueprintError):
    """A catalog directory holds files that are not blueprints, or two with one id."""

    def __init__(self, problems: list[Problem], directory: str) -> None:
        super().__init__(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        self.args = (
            f"blueprint catalog {directory} is invalid ({len(self.problems)} problem(s)):\n{lines}",
        )

    def __str__(self) -> str:
        return str(self.args[0])


def as_catalog(blueprints: Iterable[Blueprint] | Mapping[str, Blueprint]) -> dict[str, Blueprint]:
    """A catalog from blueprints (or a mapping of them), by id; a duplicate id is an error."""
    values = blueprints.values() if isinstance(blueprints, Mapping) else blueprints
    out: dict[str, Blueprint] = {}
    for bp in values:
        if bp.id in out and out[bp.id].digest() != bp.digest():
            raise BlueprintError(
                [Problem("catalog", f"two different blueprints have the id {bp.id!r}")]
            )
        out[bp.id] = bp
    return out


def subflow_ids(bp: Blueprint) -> list[str]:
    """The blueprint ids ``bp``'s subflow nodes name (in node order, once each)."""
    ids: dict[str, None] = {}
    for node in bp.nodes:
        call = subflow_call(node.uses, node.params)
        if call is not None:
            target = call.get("blueprintId")
            if isinstance(target, str) and target:
                ids[target] = None
    return list(ids)


def closure(bp: Blueprint, catalog: Mapping[str, Blueprint]) -> dict[str, Blueprint]:
    """Every blueprint ``bp``'s subflows reach, directly or through other subflows, by id.

    Raises :class:`BlueprintError` listing each subflow node that names an id the catalog does
    not have, and each cycle of blueprints (one that includes itself, directly or not)."""
    reached: dict[str, Blueprint] = {}
    problems: list[Problem] = []
    seen_problem: set[tuple[str, str]] = set()

    def visit(current: Blueprint, path: list[str]) -> None:
        for node in current.nodes:
            call = subflow_call(node.uses, node.params)
            if call is None:
                continue
            target = call.get("blueprintId")
            if not isinstance(target, str) or not target:
                continue  # validation reports it
            where = f"blueprint {current.id!r} node {node.id!r}"
            if target in path:
                cycle = " -> ".join([*path[path.index(target) :], target])
                if (where, cycle) not in seen_problem:
                    seen_problem.add((where, cycle))
                    problems.append(Problem(where, f"subflow includes itself (blueprints {cycle})"))
                continue
            child = catalog.get(target)
            if child is None:
                if (where, target) not in seen_problem:
                    seen_problem.add((where, target))
                    known = ", ".join(sorted(catalog)) or "none"
                    problems.append(
                        Problem(
                            where,
                            f"subflow names blueprint {target!r}, which is not in the catalog "
                            f"(known: {known})",
                        )
                    )
                continue
            if target in reached:
                continue
            reached[target] = child
            visit(child, [*path, target])

    visit(bp, [bp.id])
    if problems:
        raise BlueprintError(problems, bp.id)
    return reached


def pins(blueprints: Mapping[str, Blueprint]) -> dict[str, Any]:
    """The form a run's metadata pins its subflows' blueprints in: ``{id: digest}``."""
    return {bid: bp.digest() for bid, bp in sorted(blueprints.items())}
