"""The plugin manager: driver and lifecycle plugins, found through entry points."""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint, entry_points
from typing import Any, cast
from urllib.parse import urlsplit

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
    module may serve several entry points (one per URL scheme); it is registered once.

    A driver is registered as a :class:`LazyDriver` standing in for its module: the module is
    imported only when a URL of one of its entry points' names (its schemes) is used, or its
    :class:`~flowcraft_core.hookspecs.DriverInfo` is asked for by every driver's
    (:func:`~flowcraft_core.drivers.installed_drivers`). A ``memory://`` run so imports neither
    SQLAlchemy nor redis-py nor Dramatiq. Lifecycle plugins are imported here."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        lazy: dict[str, LazyDriver] = {}
        names: set[str] = set()  # every driver entry point's name, shared by the stand-ins
        for ep in entry_points(group=DRIVER_GROUP):
            if pm.get_plugin(ep.name) is not None:
                continue
            names.add(ep.name.lower())
            if ep.value in lazy:
                lazy[ep.value].entries.append(ep)
                continue
            lazy[ep.value] = LazyDriver(ep, names)
            pm.register(lazy[ep.value], name=ep.name)
        for ep in entry_points(group=PLUGIN_GROUP):
            if pm.get_plugin(ep.name) is not None:
                continue
            plugin = _load(ep)
            if plugin is not _FAILED and not pm.is_registered(plugin):
                pm.register(plugin, name=ep.name)
    return pm


_FAILED = object()


def _load(ep: EntryPoint, label: str = "") -> Any:
    """``ep``'s object, or ``_FAILED`` with the failure recorded (see :func:`unavailable`)."""
    try:
        return ep.load()
    except Exception as exc:  # a broken third-party plugin must not break the CLI
        # Several schemes' entry points to one module are one driver, named once.
        label = label or next(
            (u.label for u in _UNAVAILABLE.values() if u.value == ep.value), ep.name
        )
        broken = Unavailable.of(ep, exc, label)
        _UNAVAILABLE[ep.name] = broken
        # A driver whose extra is not installed is a choice, not a fault.
        level = logging.DEBUG if broken.requirement else logging.WARNING
        log.log(level, "flowcraft plugin %r failed to load: %s", ep.name, exc)
        return _FAILED


def _scheme(url: Any) -> str | None:
    try:
        scheme: str = urlsplit(url).scheme
        return scheme.lower()
    except (ValueError, TypeError, AttributeError):
        return None


class LazyDriver:
    """What :func:`new_manager` registers for a driver's entry points (all those naming one
    module): it implements every driver hook, and imports the module (registering it on a
    manager of its own) the first time a hook needs it. Until then a hook given a URL whose
    scheme is another entry point's name returns None without importing: the module's own
    hooks would have, as a driver owns only its schemes. A URL of a scheme no entry point is
    named after, or one that does not parse, reaches the module as before;
    ``flowcraft_make_run_state`` reaches it once it is imported or the stores are of its
    package. A module whose import fails is recorded in :func:`unavailable` under every entry
    point's name, the first one's as its label, and answers None to every hook."""

    def __init__(self, ep: EntryPoint, names: set[str]) -> None:
        self.entries = [ep]
        self._names = names
        self._hooks: pluggy.HookRelay | None = None
        self._tried = False
        self._lock = threading.Lock()
        _LAZY.add(self)

    @property
    def schemes(self) -> frozenset[str]:
        """The names of its entry points, lower-cased: the URL schemes that import it."""
        return frozenset(ep.name.lower() for ep in self.entries)

    @property
    def module(self) -> str:
        return self.entries[0].value.partition(":")[0].strip()

    @property
    def loaded(self) -> bool:
        return self._tried

    def serves(self, scheme: str) -> bool:
        """Whether a URL of ``scheme`` must be asked of the module itself."""
        return self._tried or scheme in self.schemes or scheme not in self._names

    def load(self) -> pluggy.HookRelay | None:
        """The module's own hooks (imported on the first call), or None if it cannot be."""
        with self._lock:
            if not self._tried:
                first = self.entries[0]
                for ep in self.entries:
                    plugin = _load(ep, first.name)
                    if plugin is _FAILED:
                        continue  # each entry point is recorded, as each was tried
                    own = pluggy.PluginManager(hookspecs.PROJECT)
                    own.add_hookspecs(hookspecs)
                    own.register(plugin, name=first.name)
                    self._hooks = own.hook
                    break
                self._tried = True
            return self._hooks

    def _for(self, url: Any) -> pluggy.HookRelay | None:
        scheme = _scheme(url)
        return self.load() if scheme is None or self.serves(scheme) else None

    @hookspecs.hookimpl
    def flowcraft_driver_info(self) -> hookspecs.DriverInfo | None:
        hooks = self.load()
        infos: list[hookspecs.DriverInfo] = [] if hooks is None else hooks.flowcraft_driver_info()
        return infos[0] if infos else None

    @hookspecs.hookimpl
    def flowcraft_make_queue(self, url: str) -> Any:
        hooks = self._for(url)
        return None if hooks is None else hooks.flowcraft_make_queue(url=url)

    @hookspecs.hookimpl
    def flowcraft_make_context(self, url: str) -> Any:
        hooks = self._for(url)
        return None if hooks is None else hooks.flowcraft_make_context(url=url)

    @hookspecs.hookimpl
    def flowcraft_make_coordination(self, url: str) -> Any:
        hooks = self._for(url)
        return None if hooks is None else hooks.flowcraft_make_coordination(url=url)

    @hookspecs.hookimpl
    def flowcraft_discard(self, url: str) -> Any:
        hooks = self._for(url)
        return None if hooks is None else hooks.flowcraft_discard(url=url)

    @hookspecs.hookimpl
    def flowcraft_make_run_state(self, context: Any, coordination: Any, ttl: float) -> Any:
        package = self.module.partition(".")[0]
        ours = (
            self._tried
            or self.module in sys.modules
            or any(
                type(part).__module__.partition(".")[0] == package
                for part in (context, coordination)
            )
        )
        hooks = self.load() if ours else None
        if hooks is None:
            return None
        return hooks.flowcraft_make_run_state(context=context, coordination=coordination, ttl=ttl)


_LAZY: weakref.WeakSet[LazyDriver] = weakref.WeakSet()


def driver_infos(pm: pluggy.PluginManager, scheme: str) -> list[hookspecs.DriverInfo]:
    """The :class:`~flowcraft_core.hookspecs.DriverInfo` of each driver that may own
    ``scheme``, importing no other: every plugin registered in code, and of the entry points,
    the module of those named ``scheme`` (see :meth:`LazyDriver.serves`); sorted by name."""
    caller: pluggy.HookCaller = pm.hook.flowcraft_driver_info
    impls = caller.get_hookimpls()
    if any(impl.wrapper or impl.hookwrapper for impl in impls):
        infos: list[hookspecs.DriverInfo] = caller()
    else:
        infos = []
        for impl in reversed(impls):  # pluggy's own order
            if isinstance(impl.plugin, LazyDriver) and not impl.plugin.serves(scheme):
                continue
            info = cast("hookspecs.DriverInfo | None", impl.function())
            if info is not None:
                infos.append(info)
    return sorted(infos, key=lambda i: i.name)


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
    """Entry points that failed to import, by name, with the reason. Every driver a manager
    has not imported yet is tried first, so what is listed is what the managers made with
    entry points could not import, as if they had imported every driver when made."""
    for driver in list(_LAZY):
        driver.load()
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
