"""The plugin manager: driver and lifecycle plugins, found through entry points."""

from __future__ import annotations

import functools
import logging
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
