"""The plugin manager: driver and lifecycle plugins, found through entry points."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import pluggy

from flowcraft_core import hookspecs
from flowcraft_core.errors import DriverError

log = logging.getLogger(__name__)

DRIVER_GROUP = "flowcraft.drivers"
PLUGIN_GROUP = "flowcraft.plugins"


def new_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with every hookspec; with ``load_entry_points``, every installed driver
    and lifecycle plugin registered. A driver whose import fails is recorded, not fatal: the
    error surfaces only if a URL asks for it (see :func:`broken_drivers`)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        for group in (DRIVER_GROUP, PLUGIN_GROUP):
            for ep in entry_points(group=group):
                if pm.get_plugin(ep.name) is not None:
                    continue
                try:
                    plugin = ep.load()
                except Exception as exc:  # a broken third-party plugin must not break the CLI
                    _BROKEN[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
                    log.warning("flowcraft plugin %r failed to load: %s", ep.name, exc)
                    continue
                pm.register(plugin, name=ep.name)
    return pm


_BROKEN: dict[str, str] = {}


def broken_drivers() -> dict[str, str]:
    """Entry points that failed to import, by name, with the reason."""
    return dict(_BROKEN)


@functools.lru_cache(maxsize=1)
def default_manager() -> pluggy.PluginManager:
    """The process-wide manager, built on first use."""
    return new_manager()


def register(plugin: Any, name: str | None = None) -> None:
    """Register a lifecycle plugin in code, on the process-wide manager."""
    pm = default_manager()
    if name is not None and pm.get_plugin(name) is not None:
        raise DriverError(f"a plugin named {name!r} is already registered")
    pm.register(plugin, name=name)


class Guests:
    """Calls the lifecycle hooks: ``guests.flowcraft_node_started(job=job)``.

    Guaranteed: every implementation of the hook is called (in pluggy's order: last
    registered first, ``tryfirst`` / ``trylast`` honoured), each with the arguments it names;
    one that raises an :class:`Exception` is logged with its plugin's name and the hook, and
    the others still run; the call itself never raises it. Plugins are guests, as Dramatiq's
    middleware is: a broken one cannot fail, retry or stall a job. (``BaseException`` such as
    cancellation still propagates: it is the engine's, not the plugin's.)

    Each implementation is called on its own, so wrappers (``wrapper=True`` / ``hookwrapper``)
    have nothing to wrap here: they are skipped with a warning. Pluggy's call tracing
    (``add_hookcall_monitoring``) does not see these calls."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._relay = pm.hook

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name not in hookspecs.LIFECYCLE:
            raise AttributeError(f"{name!r} is not a flowcraft lifecycle hook")
        caller: pluggy.HookCaller = getattr(self._relay, name)

        def call(**kwargs: Any) -> None:
            # pluggy's own order: hookimpls are stored first-called last.
            for impl in reversed(caller.get_hookimpls()):
                if impl.wrapper or impl.hookwrapper:
                    _warn_wrapper(impl.plugin_name, name)
                    continue
                try:
                    impl.function(*[kwargs[arg] for arg in impl.argnames])
                except Exception:
                    log.exception(
                        "flowcraft plugin %r raised in %s; ignored (a plugin cannot fail a job)",
                        impl.plugin_name,
                        name,
                    )

        setattr(self, name, call)  # later lookups skip __getattr__
        return call


@functools.cache
def _warn_wrapper(plugin: str, hook: str) -> None:
    log.warning(
        "flowcraft plugin %r implements %s as a wrapper; lifecycle hooks call each plugin on "
        "its own, so it is skipped",
        plugin,
        hook,
    )
