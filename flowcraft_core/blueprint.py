"""Blueprints: the JSON form shared with Flowcraft (TypeScript), as Python dataclasses.

JSON uses camelCase (``maxRetries``, ``retryDelay`` in milliseconds, ``joinStrategy``); the Python
API uses snake_case. ``Blueprint.from_dict(bp.to_dict()) == bp`` for every blueprint.
Structural checks (unknown nodes, cycles, ...) live in :mod:`flowcraft_core.validation`; this
module only rejects what cannot be read at all, naming the place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Container
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from flowcraft_core.builtins import canonical_uses
from flowcraft_core.errors import BlueprintError, Problem

JoinStrategy = Literal["all", "any"]
JOIN_STRATEGIES: tuple[str, ...] = ("all", "any")

#: Deepest nesting of arrays and objects a blueprint may have (JSON or YAML): deeper data would
#: exhaust Python's recursion when it is encoded, digested or stored.
MAX_NESTING = 100
#: Most values (array items and object members, counted where YAML aliases expand them) a
#: blueprint may hold: an alias bomb of a few hundred bytes would otherwise expand to gigabytes
#: when the blueprint is encoded to be stored.
MAX_VALUES = 1_000_000
#: Longest ``retryDelay`` (ms), and the cap of its doubling backoff: one day.
MAX_RETRY_DELAY_MS = 86_400_000


@dataclass(frozen=True)
class NodeConfig:
    """Per-node execution settings. Times are in milliseconds, as in Flowcraft."""

    max_retries: int = 1
    retry_delay: float = 0
    timeout: float | None = None
    fallback: str | None = None
    join_strategy: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=True)
    """Fields this version does not know, kept as they were (and otherwise ignored)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.max_retries != 1:
            out["maxRetries"] = self.max_retries
        if self.retry_delay:
            out["retryDelay"] = self.retry_delay
        if self.timeout is not None:
            out["timeout"] = self.timeout
        if self.fallback is not None:
            out["fallback"] = self.fallback
        if self.join_strategy is not None:
            out["joinStrategy"] = self.join_strategy
        return out


@dataclass(frozen=True)
class NodeDef:
    """A node: ``uses`` names its implementation in the registry.

    ``inputs`` overrides where the input comes from: a string names a context key (or
    ``"_outputs.<node>"``), a mapping builds a dict of such keys.
    """

    id: str
    uses: str
    params: dict[str, Any] = field(default_factory=dict)
    inputs: str | dict[str, str] | None = None
    config: NodeConfig = field(default_factory=NodeConfig)
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields this version does not know (``_sourceLocation``, a UI's ``position`` or
    ``data``), kept as they were and otherwise ignored."""

    spelled: str | None = None
    """``uses`` as the blueprint wrote it when that was another name of a built-in (Flowcraft's
    class name, ``SubflowNode``): written back as it was, while ``uses`` is the built-in's."""

    def __post_init__(self) -> None:
        # A built-in named by its Flowcraft class name is that built-in: ``uses`` holds its one
        # name, so nothing that looks at it spells both.
        canonical = canonical_uses(self.uses)
        if canonical != self.uses:
            object.__setattr__(self, "spelled", self.uses)
            object.__setattr__(self, "uses", canonical)
        elif self.spelled is not None and canonical_uses(self.spelled) != self.uses:
            object.__setattr__(self, "spelled", None)  # replace()d with another uses

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.extra, "id": self.id, "uses": self.spelled or self.uses}
        if self.params:
            out["params"] = self.params
        if self.inputs is not None:
            out["inputs"] = self.inputs
        cfg = self.config.to_dict()
        if cfg:
            out["config"] = cfg
        return out


@dataclass(frozen=True)
class EdgeDef:
    """An edge. Taken when the source returned ``action`` (or none, for an edge without one)
    and ``condition`` holds; ``transform`` reshapes the source's output on the way."""

    source: str
    target: str
    action: str | None = None
    condition: str | None = None
    transform: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Fields this version does not know, kept as they were and otherwise ignored."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.extra, "source": self.source, "target": self.target}
        if self.action is not None:
            out["action"] = self.action
        if self.condition is not None:
            out["condition"] = self.condition
        if self.transform is not None:
            out["transform"] = self.transform
        return out

    def describe(self) -> str:
        label = f" [{self.action}]" if self.action is not None else ""
        return f"edge {self.source} -> {self.target}{label}"


@dataclass(frozen=True)
class Blueprint:
    """A workflow graph in Flowcraft's JSON form."""

    id: str
    nodes: tuple[NodeDef, ...] = ()
    edges: tuple[EdgeDef, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Top-level fields this version does not know, kept as they were and otherwise ignored."""

    def node(self, node_id: str) -> NodeDef:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            **self.extra,
            "id": self.id,
            "nodes": [n.to_dict() for n in self.nodes],
            "edges": [e.to_dict() for e in self.edges],
        }
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def digest(self) -> str:
        """Content digest: the identity of this exact blueprint version, pinned per run."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    @classmethod
    def from_dict(cls, data: Any, *, known_uses: Container[str] | None = None) -> Blueprint:
        """Read a blueprint from its JSON form; every unreadable part is reported at once,
        with every problem validation finds in what could be read (an unknown ``uses`` too,
        given the registry's ``known_uses``)."""
        _check_size(data)
        reader = _Reader()
        bp = reader.blueprint(data)
        if reader.problems or bp is None:
            problems = list(reader.problems)
            if bp is not None and isinstance(data.get("nodes"), list):
                # What could be read is checked too, so every problem is reported at once.
                from flowcraft_core.validation import validate

                seen = {(p.where, p.message) for p in problems}
                found = validate(bp, known_uses=known_uses)
                problems += [p for p in found if (p.where, p.message) not in seen]
            bid = data.get("id") if isinstance(data, dict) else None
            raise BlueprintError(problems, bid if isinstance(bid, str) else None)
        return bp

    @classmethod
    def from_json(cls, text: str, *, known_uses: Container[str] | None = None) -> Blueprint:
        return cls.from_dict(_parse_json(text, ""), known_uses=known_uses)

    @classmethod
    def load(cls, path: str | Path, *, known_uses: Container[str] | None = None) -> Blueprint:
        """Load a ``.json``, ``.yaml`` or ``.yml`` file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise BlueprintError([Problem(str(p), f"cannot read file: {exc.strerror}")]) from None
        if p.suffix.lower() in (".yaml", ".yml"):
            data = _parse_yaml(text, str(p))
        else:
            data = _parse_json(text, str(p))
        return cls.from_dict(data, known_uses=known_uses)


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BlueprintError([Problem(where, f"not valid JSON: {exc}")]) from None
    except RecursionError:
        raise BlueprintError([Problem(where, _too_deep())]) from None
    except ValueError as exc:  # an integer literal longer than Python converts (4,300 digits)
        raise BlueprintError([Problem(where, f"not valid JSON: {exc}")]) from None


def _parse_yaml(text: str, where: str) -> Any:
    import yaml

    # libyaml's loader when PyYAML has it: it refuses deep nesting in milliseconds, where the
    # pure-Python one recurses for seconds before its RecursionError.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise BlueprintError([Problem(where, f"not valid YAML: {exc}")]) from None
    except RecursionError:
        raise BlueprintError([Problem(where, _too_deep())]) from None
    except ValueError as exc:  # an integer literal longer than Python converts (4,300 digits)
        raise BlueprintError([Problem(where, f"not valid YAML: {exc}")]) from None


def _too_deep() -> str:
    return f"nested more than {MAX_NESTING} levels deep"


def _check_size(data: Any) -> None:
    """Refuse data nested deeper than :data:`MAX_NESTING` or holding more than
    :data:`MAX_VALUES` values. Iterative, and it stops at the bound, so a YAML alias bomb
    (shared objects that expand exponentially) costs at most that many steps."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > MAX_NESTING:
            raise BlueprintError([Problem("blueprint", _too_deep())])
        count += len(children)
        if count > MAX_VALUES:
            raise BlueprintError(
                [
                    Problem(
                        "blueprint",
                        f"holds more than {MAX_VALUES:,} values (YAML aliases counted where "
                        "they expand)",
                    )
                ]
            )
        stack.extend((child, depth + 1) for child in children)


_NODE_KEYS = {"id", "uses", "params", "inputs", "config"}
_EDGE_KEYS = {"source", "target", "action", "condition", "transform"}
_CONFIG_KEYS = {"maxRetries", "retryDelay", "timeout", "fallback", "joinStrategy"}


class _Reader:
    """Turns JSON data into dataclasses, collecting every problem instead of stopping."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def bad(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def blueprint(self, data: Any) -> Blueprint | None:
        if not isinstance(data, dict):
            self.bad("", f"a blueprint must be an object, got {type(data).__name__}")
            return None
        bid = data.get("id")
        if not isinstance(bid, str) or not bid:
            self.bad("blueprint", "'id' must be a non-empty string")
            bid = "?"
        extra = _extra(data, {"id", "nodes", "edges", "metadata"})
        raw_nodes = data.get("nodes", [])
        raw_edges = data.get("edges", [])
        metadata = _absent_as_empty(data.get("metadata"))
        if not isinstance(raw_nodes, list):
            self.bad("blueprint", "'nodes' must be a list")
            raw_nodes = []
        if not isinstance(raw_edges, list):
            self.bad("blueprint", "'edges' must be a list")
            raw_edges = []
        if not isinstance(metadata, dict):
            self.bad("blueprint", "'metadata' must be an object")
            metadata = {}
        nodes = [n for i, raw in enumerate(raw_nodes) if (n := self.node(i, raw)) is not None]
        edges = [e for i, raw in enumerate(raw_edges) if (e := self.edge(i, raw)) is not None]
        return Blueprint(
            id=bid, nodes=tuple(nodes), edges=tuple(edges), metadata=metadata, extra=extra
        )

    def node(self, index: int, raw: Any) -> NodeDef | None:
        where = f"nodes[{index}]"
        if not isinstance(raw, dict):
            self.bad(where, "a node must be an object")
            return None
        nid = raw.get("id")
        if isinstance(nid, str) and nid:
            where = f"node {nid!r}"
            if not _encodable(nid):
                # Any other string is an id, but every store keeps keys as UTF-8.
                self.bad(where, "'id' holds a lone surrogate, which is not Unicode text")
        else:
            self.bad(where, "'id' must be a non-empty string")
            nid = f"?{index}"
        extra = _extra(raw, _NODE_KEYS)
        uses = raw.get("uses")
        if not isinstance(uses, str) or not uses:
            self.bad(where, "'uses' must be a non-empty string")
            uses = "?"
        params = _absent_as_empty(raw.get("params"))
        if not isinstance(params, dict):
            self.bad(where, "'params' must be an object")
            params = {}
        inputs = raw.get("inputs")
        if inputs is not None and not (
            isinstance(inputs, str)
            or (isinstance(inputs, dict) and all(isinstance(v, str) for v in inputs.values()))
        ):
            self.bad(where, "'inputs' must be a string or an object of strings")
            inputs = None
        config = self.config(where, _absent_as_empty(raw.get("config")))
        return NodeDef(id=nid, uses=uses, params=params, inputs=inputs, config=config, extra=extra)

    def config(self, where: str, raw: Any) -> NodeConfig:
        if not isinstance(raw, dict):
            self.bad(where, "'config' must be an object")
            return NodeConfig()
        extra = _extra(raw, _CONFIG_KEYS)
        max_retries = raw.get("maxRetries", 1)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 1:
            self.bad(where, f"config.maxRetries must be an integer >= 1, got {max_retries!r}")
            max_retries = 1
        retry_delay = raw.get("retryDelay", 0)
        if not _is_number(retry_delay) or not 0 <= retry_delay <= MAX_RETRY_DELAY_MS:
            self.bad(
                where,
                f"config.retryDelay must be a number of ms >= 0 and at most "
                f"{MAX_RETRY_DELAY_MS} (one day), got {retry_delay!r}",
            )
            retry_delay = 0
        timeout = raw.get("timeout")
        if timeout is not None and (not _is_number(timeout) or not 0 < timeout < float("inf")):
            self.bad(where, f"config.timeout must be a number of ms > 0, got {timeout!r}")
            timeout = None
        fallback = raw.get("fallback")
        if fallback is not None and not isinstance(fallback, str):
            self.bad(where, "config.fallback must be a node id")
            fallback = None
        join = raw.get("joinStrategy")
        if join is not None and join not in JOIN_STRATEGIES:
            self.bad(where, f"config.joinStrategy must be 'all' or 'any', got {join!r}")
            join = None
        return NodeConfig(
            max_retries=max_retries,
            retry_delay=retry_delay,
            timeout=timeout,
            fallback=fallback,
            join_strategy=join,
            extra=extra,
        )

    def edge(self, index: int, raw: Any) -> EdgeDef | None:
        where = f"edges[{index}]"
        if not isinstance(raw, dict):
            self.bad(where, "an edge must be an object")
            return None
        extra = _extra(raw, _EDGE_KEYS)
        ok = True
        for key in ("source", "target"):
            if not isinstance(raw.get(key), str) or not raw.get(key):
                self.bad(where, f"'{key}' must be a non-empty string")
                ok = False
        for key in ("action", "condition", "transform"):
            if raw.get(key) is not None and not isinstance(raw.get(key), str):
                self.bad(where, f"'{key}' must be a string")
                ok = False
        if not ok:
            return None
        return EdgeDef(
            source=raw["source"],
            target=raw["target"],
            action=raw.get("action"),
            condition=raw.get("condition"),
            transform=raw.get("transform"),
            extra=extra,
        )


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _extra(raw: dict[str, Any], known: set[str]) -> dict[str, Any]:
    """Fields outside ``known``: kept, never a reason to refuse (Flowcraft's compiler adds
    ``_sourceLocation``, UIs add ``position`` and ``data``)."""
    return {k: v for k, v in raw.items() if k not in known}


def _absent_as_empty(value: Any) -> Any:
    """``None`` (a missing key, or an empty YAML value) reads as ``{}``; anything else is kept
    for the type check, so a wrong but falsy value such as ``[]`` is still reported."""
    return {} if value is None else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
