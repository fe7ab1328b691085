"""The plugin manager: driver and lifecycle plugins, found through entry points."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, entry_points
from typing import Any

import pluggy

from flowcraft_core import hookspecs
from flowcraft_core.errors import DriverError
from flowcraft_core.protocols.queue import MAX_HEADER_BYTES, check_headers

log = logging.getLogger(__name__)

DRIVER_GROUP = "flowcraft.drivers"
PLUGIN_GROUP = "flowcraft.plugins"


def new_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with every hookspec; with ``load_entry_points``, every installed driver
    and lifecycle plugin registered. An entry point whose import fails is recorded, not fatal:
    for a driver, the error surfaces only if a URL asks for it (see :func:`unavailable`). One
    module may serve several entry points (one per URL scheme); it is registered once."""
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
                    # Several schemes' entry points to one module are one driver, named once.
                    label = next(
                        (u.label for u in _UNAVAILABLE.values() if u.value == ep.value),
                        ep.name,
                    )
                    broken = Unavailable.of(ep, exc, label)
                    _UNAVAILABLE[ep.name] = broken
                    # A driver whose extra is not installed is a choice, not a fault.
                    level = logging.DEBUG if broken.requirement else logging.WARNING
                    log.log(level, "flowcraft plugin %r failed to load: %s", ep.name, exc)
                    continue
                if not pm.is_registered(plugin):
                    pm.register(plugin, name=ep.name)
    return pm


@dataclass(frozen=True)
class Unavailable:
    """An installed entry point that could not be imported, and what would fix it."""

    name: str
    """The entry point's name; a driver's is the URL scheme it serves."""
    group: str
    value: str
    """What it points at (``module`` or ``module:attr``)."""
    error: str
    requirement: str | None = None
    """What to ``pip install`` for the module that was missing, e.g. ``flowcraft[redis]``."""
    extra: str | None = None
    """The extra of the entry point's own distribution that brings that module."""
    label: str = ""
    """What messages call it: the first entry point's name among those to the same module."""

    @classmethod
    def of(cls, ep: EntryPoint, exc: BaseException, label: str = "") -> Unavailable:
        error = f"{ep.value}: {type(exc).__name__}: {exc}"
        requirement, extra = None, None
        if isinstance(exc, ModuleNotFoundError) and exc.name and ep.dist is not None:
            requirement, extra = missing_requirement(ep.dist, exc.name, prefer=label or ep.name)
        return cls(ep.name, ep.group, ep.value, error, requirement, extra, label or ep.name)

    def reason(self, what: str = "driver") -> str:
        """One line saying what is wrong and what to run."""
        subject = f"the {self.label or self.name} {what}"
        return install_line(subject, self.requirement, self.extra, self.error)


def install_line(subject: str, requirement: str | None, extra: str | None, error: str) -> str:
    if requirement and extra:
        return f"{subject} needs the {extra!r} extra: pip install '{requirement}'"
    if requirement:
        return (
            f"{subject} needs {requirement!r}, which is not installed: pip install '{requirement}'"
        )
    return f"{subject} is installed but failed to import: {error}"


_REQUIREMENT = re.compile(r"\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["'](?P<extra>[^"']+)["']""")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing_requirement(
    dist: Distribution, module: str, *, prefer: str = ""
) -> tuple[str | None, str | None]:
    """What to install so that ``module`` (which failed to import) is there, read from
    ``dist``'s own metadata: ``(dist[extra], extra)`` when one of its extras requires the
    distribution of that name (``prefer`` wins among several), ``(name, None)`` when a plain
    requirement does; else, when ``dist`` has an extra named ``prefer`` (a dependency of a
    dependency is missing, say pika under ``dramatiq[rabbitmq]``), that extra; else
    ``(None, None)``. The extras are declared once, in the package's metadata
    (``pyproject.toml``), so no table here repeats them."""
    wanted = _canonical(module.partition(".")[0])
    extras: list[str] = []
    plain: str | None = None
    for line in dist.requires or ():
        spec, _, marker = line.partition(";")
        match = _REQUIREMENT.match(spec)
        if match is None or _canonical(match["name"]) != wanted:
            continue
        extra = _EXTRA_MARKER.search(marker)
        if extra is None:
            plain = match["name"]
        else:
            extras.append(extra["extra"])
    if extras:
        chosen = prefer if prefer in extras else sorted(extras)[0]
        return f"{dist.name}[{chosen}]", chosen
    if plain is None and prefer in (dist.metadata.get_all("Provides-Extra") or ()):
        return f"{dist.name}[{prefer}]", prefer
    return plain, None


_UNAVAILABLE: dict[str, Unavailable] = {}


def unavailable() -> dict[str, Unavailable]:
    """Entry points that failed to import, by name, with the reason."""
    return dict(_UNAVAILABLE)


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

    def run_headers(self, run_id: str, flow_id: str) -> dict[str, str]:
        """The headers every job of a new run carries: what each
        ``flowcraft_run_headers`` implementation returned, merged, the first called winning a
        clash. One that raises or returns something other than a str → str mapping is logged
        and left out; one that would take the total past ``MAX_HEADER_BYTES`` is left out."""
        caller: pluggy.HookCaller = self._relay.flowcraft_run_headers
        merged: dict[str, str] = {}
        kwargs = {"run_id": run_id, "flow_id": flow_id}
        for impl in reversed(caller.get_hookimpls()):
            if impl.wrapper or impl.hookwrapper:
                _warn_wrapper(impl.plugin_name, "flowcraft_run_headers")
                continue
            try:
                given = impl.function(*[kwargs[arg] for arg in impl.argnames])
                if given is None:
                    continue
                headers = check_headers(given, f"the headers of plugin {impl.plugin_name!r}")
                candidate = {**headers, **merged}
                check_headers(candidate, f"the headers with plugin {impl.plugin_name!r}'s")
            except Exception:
                log.exception(
                    "flowcraft plugin %r failed in flowcraft_run_headers; its headers are left "
                    "out (at most %d bytes in all)",
                    impl.plugin_name,
                    MAX_HEADER_BYTES,
                )
                continue
            merged = candidate
        return merged

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
