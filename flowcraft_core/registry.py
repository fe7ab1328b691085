"""The node registry: implementations keyed by a blueprint node's ``uses``.

An implementation is a sync or async function taking one :class:`NodeContext`, or a class whose
instances are such callables (``__call__`` or ``run``); a class is instantiated once per attempt.
A class with an ``exec`` method (such as a :class:`~flowcraft_core.node.BaseNode`) gets
Flowcraft's lifecycle instead: ``prep`` → ``exec`` → ``fallback`` → ``post``, and ``recover``.
Sync functions run in a thread so they never block the event loop — the executing engine's pool
(:mod:`flowcraft_core.threads`), sized by its concurrency — unless registered with
``inline=True`` (for code known to be quick and non-blocking).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from flowcraft_core.builtins import BUILTIN_USES, canonical_uses
from flowcraft_core.errors import NotRetried, RegistryError
from flowcraft_core.node import NodeContext
from flowcraft_core.threads import in_thread

NodeCallable = Callable[[NodeContext], Any]
log = logging.getLogger(__name__)


async def _invoke(fn: Any, *args: Any, inline: bool) -> Any:
    """Call ``fn`` (sync in a thread unless ``inline``, or async) and await its result."""
    if inspect.iscoroutinefunction(fn) or inline:
        result = fn(*args)
    else:
        result = await in_thread(lambda _: fn(*args), None)
    return await result if inspect.isawaitable(result) else result


def _construct(cls: type) -> Callable[[NodeContext], Any]:
    """How to make an instance: ``cls(params, node_id)`` as Flowcraft does, if it takes them."""
    try:
        inspect.signature(cls).bind({}, "")
    except (TypeError, ValueError):
        return lambda ctx: cls()
    return lambda ctx: cls(ctx.params, ctx.node_id)


def _lifecycle(cls: type, inline: bool) -> Callable[[NodeContext], Awaitable[Any]]:
    """Flowcraft's class-node lifecycle for one attempt (see :class:`~flowcraft_core.node.
    BaseNode`): only an ``exec`` failure is retried (the engine schedules the next attempt);
    on the last attempt ``fallback`` replaces it; ``recover`` runs after any failure."""
    make = _construct(cls)

    async def run_lifecycle(ctx: NodeContext) -> Any:
        instance: Any = make(ctx)
        error: Exception | None = None
        try:
            try:
                prepared = await _invoke(instance.prep, ctx, inline=inline)
            except Exception as exc:
                error = exc
                raise NotRetried(exc) from exc
            try:
                result = await _invoke(instance.exec, prepared, ctx, inline=inline)
            except Exception as exc:
                error = exc
                if ctx.attempt < ctx.attempts:
                    raise  # retried: the next attempt is a new instance (prep runs again)
                try:
                    result = await _invoke(instance.fallback, exc, ctx, inline=inline)
                except Exception as fb_exc:
                    raise NotRetried(fb_exc) from fb_exc
            try:
                return await _invoke(instance.post, result, ctx, inline=inline)
            except Exception as exc:
                error = exc
                raise NotRetried(exc) from exc
        finally:
            if error is not None and callable(getattr(instance, "recover", None)):
                try:
                    await _invoke(instance.recover, error, ctx, inline=inline)
                except Exception:
                    log.warning("recover() of node %r failed", ctx.node_id, exc_info=True)

    return run_lifecycle


@dataclass(frozen=True)
class Implementation:
    """A registered implementation, normalised to one async call."""

    key: str
    target: Any
    inline: bool = False

    @functools.cached_property
    def call(self) -> Callable[[NodeContext], Awaitable[Any]]:
        target = self.target
        if inspect.isclass(target) and callable(getattr(target, "exec", None)):
            return _lifecycle(target, self.inline)
        if inspect.isclass(target):
            cls = target
            inline = self.inline

            async def run_class(ctx: NodeContext) -> Any:
                instance: Any = cls()
                method: Any = getattr(instance, "run", None) or instance
                if inspect.iscoroutinefunction(method) or inline:
                    result = method(ctx)
                else:
                    result = await in_thread(method, ctx)
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
            result = await in_thread(target, ctx)
            return await result if inspect.isawaitable(result) else result

        return run_in_thread


class Registry(Mapping[str, Implementation]):
    """Implementations by key. Also a decorator: ``@registry.node("charge")``."""

    def __init__(self, nodes: Mapping[str, Any] | None = None) -> None:
        self._impls: dict[str, Implementation] = {}
        for key, target in (nodes or {}).items():
            self.register(key, target)

    def register(self, key: str, target: Any, *, inline: bool = False) -> None:
        if not isinstance(key, str) or not key:
            raise RegistryError(f"registry keys must be non-empty strings, got {key!r}")
        if canonical_uses(key) in BUILTIN_USES:
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
