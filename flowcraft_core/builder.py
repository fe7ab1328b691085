"""A fluent builder for blueprints in Python.

``Flow("order").node("a", fetch).edge("a", "b").to_blueprint()`` builds the same
:class:`Blueprint` a JSON file would. The builder does not validate: pass the result to
:func:`flowcraft_core.validation.check` (the engine does so when it registers a flow).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeConfig, NodeDef
from flowcraft_core.builtins import SLEEP, WAIT

__all__ = ["Flow", "uses_key"]


def uses_key(fn: Callable[..., Any]) -> str:
    """The registry key the builder derives for a callable: its ``__qualname__`` without the
    ``<locals>`` parts (``make.<locals>.fetch`` -> ``make.fetch``)."""
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):
        raise TypeError(f"{fn!r} has no __qualname__; pass a string key as `uses` instead")
    return ".".join(part for part in qualname.split(".") if part != "<locals>")


class Flow:
    """Collects nodes and edges in call order; every method but :meth:`to_blueprint` and
    :meth:`registry` returns the flow itself."""

    def __init__(self, id: str, *, metadata: Mapping[str, Any] | None = None) -> None:
        self.id = id
        self._metadata: dict[str, Any] = copy.deepcopy(dict(metadata or {}))
        self._nodes: list[NodeDef] = []
        self._edges: list[EdgeDef] = []
        self._registry: dict[str, Callable[..., Any]] = {}

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
        if callable(uses):
            key = uses_key(uses)
            known = self._registry.get(key)
            if known is not None and known is not uses:
                raise ValueError(f"node {id!r}: {uses!r} and {known!r} share the key {key!r}")
            self._registry[key] = uses
            uses = key
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

    def registry(self) -> dict[str, Callable[..., Any]]:
        """The callables given as ``uses``, by key: usable as (part of) a node registry."""
        return dict(self._registry)

    def to_blueprint(self, *, metadata: Mapping[str, Any] | None = None) -> Blueprint:
        """The blueprint built so far; ``metadata`` is merged over the flow's own."""
        return Blueprint(
            id=self.id,
            nodes=tuple(self._nodes),
            edges=tuple(self._edges),
            metadata=copy.deepcopy({**self._metadata, **(metadata or {})}),
        )
