"""The node registry: implementations keyed by a blueprint node's ``uses``.

An implementation is a sync or async function taking one :class:`NodeContext`, or a class whose
instances are such callables (``__call__`` or ``run``); a class is instantiated once per attempt.
Sync functions run in a thread so they never block the event loop — the executing engine's pool
(:mod:`flowcraft_core.threads`), sized by its concurrency — unless registered with
``inline=True`` (for code known to be quick and non-blocking).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flowcraft_core.builtins import BUILTIN_USES
from flowcraft_core.errors import RegistryError
from flowcraft_core.node import NodeContext
from flowcraft_core.threads import CURRENT

NodeCallable = Callable[[NodeContext], Any]


@dataclass(frozen=True)
class Implementation:
    """A registered implementation, normalised to one async call."""

    key: str
    target: Any
    inline: bool = False

    @functools.cached_property
    def call(self) -> Callable[[NodeContext], Awaitable[Any]]:
        target = self.target
        if inspect.isclass(target):
            cls = target
            inline = self.inline

            async def run_class(ctx: NodeContext) -> Any:
                instance: Any = cls()
                method: Any = getattr(instance, "run", None) or instance
                if inspect.iscoroutinefunction(method) or inline:
                    result = method(ctx)
                else:
                    result = await _in_thread(method, ctx)
                return await result if inspect.isawaitable(result) else result

            return run_class
        if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
            getattr(target, "__call__", None)  # noqa: B004 - an object with async __call__
        ):
            return target  # type: ignore[no-any-return]
        if self.inline:

            async def run_inline(ctx: NodeContext) -> Any:
                result = target(ctx)
                return await result if inspect.isawaitable(result) else result

            return run_inline

        async def run_in_thread(ctx: NodeContext) -> Any:
            result = await _in_thread(target, ctx)
            return await result if inspect.isawaitable(result) else result

        return run_in_thread


async def _in_thread(fn: Callable[[NodeContext], Any], ctx: NodeContext) -> Any:
    threads = CURRENT.get()
    if threads is None:
        return await asyncio.to_thread(fn, ctx)
    return await threads.run(fn, ctx)


class Registry(Mapping[str, Implementation]):
    """Implementations by key. Also a decorator: ``@registry.node("charge")``."""

    def __init__(self, nodes: Mapping[str, Any] | None = None) -> None:
        self._impls: dict[str, Implementation] = {}
        for key, target in (nodes or {}).items():
            self.register(key, target)

    def register(self, key: str, target: Any, *, inline: bool = False) -> None:
        if not isinstance(key, str) or not key:
            raise RegistryError(f"registry keys must be non-empty strings, got {key!r}")
        if key in BUILTIN_USES:
            raise RegistryError(f"{key!r} is a built-in node kind and cannot be registered")
        if not callable(target):
            raise RegistryError(f"implementation for {key!r} is not callable: {target!r}")
        self._impls[key] = Implementation(key, target, inline)

    def node(self, key: str, *, inline: bool = False) -> Callable[[Any], Any]:
        def decorate(target: Any) -> Any:
            self.register(key, target, inline=inline)
            return target

        return decorate

    def __getitem__(self, key: str) -> Implementation:
        return self._impls[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._impls)

    def __len__(self) -> int:
        return len(self._impls)

    def __contains__(self, key: object) -> bool:
        return key in self._impls

    @classmethod
    def of(cls, value: Any) -> Registry:
        """A registry from a :class:`Registry` or a mapping of key → callable."""
        if isinstance(value, Registry):
            return value
        if isinstance(value, Mapping):
            return cls(value)
        raise RegistryError(
            f"expected a Registry or a dict of callables, got {type(value).__name__}"
        )


def load_registry(spec: str) -> Registry:
    """Import ``MODULE:ATTR`` (a dict of callables or a Registry)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise RegistryError(f"--registry must look like MODULE:ATTR, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a syntax error or a failing import is the user's, not ours
        raise RegistryError(
            f"cannot import registry module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    try:
        value = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise RegistryError(f"module {module_name!r} has no attribute {attr!r}") from None
    try:
        return Registry.of(value)
    except RegistryError as exc:
        raise RegistryError(f"{spec}: {exc}") from None
