"""What node code sees (:class:`NodeContext`) and may return (:class:`Result`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowcraft_core.protocols.context import MISSING, ContextStore


@dataclass(frozen=True, slots=True)
class Result:
    """A node's output with an optional ``action`` that picks the outgoing edges."""

    output: Any = None
    action: str | None = None


class RunContext:
    """The run's context store as node code sees it.

    Reads see the node's own pending writes first. Writes (:meth:`set`) are buffered and
    committed atomically with the node's output, so a retried or redelivered node never
    leaves half its writes behind, and a committed node writes nothing again.
    """

    __slots__ = ("_run_id", "_store", "_writes")

    def __init__(self, store: ContextStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self._writes: dict[str, Any] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        if key in self._writes:
            return self._writes[key]
        value = await self._store.get(self._run_id, key)
        return default if value is MISSING else value

    async def get_many(self, keys: list[str]) -> dict[str, Any]:
        missing = [k for k in keys if k not in self._writes]
        found = await self._store.get_many(self._run_id, missing) if missing else {}
        found.update({k: self._writes[k] for k in keys if k in self._writes})
        return found

    async def has(self, key: str) -> bool:
        if key in self._writes:
            return True
        return await self._store.has(self._run_id, key)

    def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"context keys must be strings, got {type(key).__name__} {key!r}")
        if key.startswith("_"):
            raise ValueError(f"context keys starting with '_' are reserved for flowcraft: {key!r}")
        self._writes[key] = value

    @property
    def pending(self) -> Mapping[str, Any]:
        """Writes not yet committed."""
        return self._writes


@dataclass
class NodeContext:
    """The single argument of every node callable."""

    input: Any
    params: dict[str, Any]
    run_id: str
    node_id: str
    attempt: int
    context: RunContext
    instance: str = "0"
    """Which execution of the node this is: ``"0"``, or a path inside loops and batches."""
    metadata: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    """How many attempts the node has (its ``maxRetries``): ``attempt == attempts`` is the last."""

    async def get(self, key: str, default: Any = None) -> Any:
        """Shortcut for ``await ctx.context.get(key)``."""
        return await self.context.get(key, default)


class BaseNode:
    """Flowcraft's class node, with its lifecycle: ``prep`` → ``exec`` (the only phase that is
    retried) → ``fallback`` (after the last failed ``exec``) → ``post``; ``recover`` runs
    whenever a phase failed, even if ``fallback`` saved the node. Any method may be sync or
    async. A new instance is made per attempt, as ``cls(params, node_id)``; an attempt may run
    on another worker, so ``prep`` runs again before each retried ``exec``.

    A failure in ``prep``, ``post`` or ``fallback`` is not retried: the node goes to its
    blueprint ``config.fallback`` if it has one, else fails the run.
    """

    def __init__(self, params: dict[str, Any] | None = None, node_id: str | None = None) -> None:
        self.params = params or {}
        self.node_id = node_id

    def prep(self, ctx: NodeContext) -> Any:
        return ctx.input

    def exec(self, prep_result: Any, ctx: NodeContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define exec()")

    def post(self, exec_result: Any, ctx: NodeContext) -> Any:
        return exec_result

    def fallback(self, error: Exception, ctx: NodeContext) -> Any:
        raise error

    def recover(self, error: Exception, ctx: NodeContext) -> None:
        return None
