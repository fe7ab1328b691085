"""The driver under test: a backend URL, or a factory for drivers built in code.

A :class:`Target` opens **fresh, isolated** components for a namespace token. For a URL, the
driver's ``isolation`` capability says how to derive a private URL (``query:prefix`` gives
``redis://host/0?prefix=<token>``; ``path`` gives ``memory://<token>``); without it, components
are shared and the suite keeps tests apart by using the token in every key and run id. A factory
receives the token and should return new, independent instances.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pluggy

from flowcraft_core.drivers import Backends, driver_for, mask, open_backends
from flowcraft_core.engine.state import RunState
from flowcraft_core.errors import DriverError
from flowcraft_core.hookspecs import DriverInfo
from flowcraft_core.plugins import default_manager
from flowcraft_core.protocols import ContextStore, CoordinationStore, Queue

from .capabilities import COMPONENTS, value_of


@dataclass
class DriverParts:
    """The components a driver provides; a component it does not provide is None."""

    queue: Queue | None = None
    context: ContextStore | None = None
    coordination: CoordinationStore | None = None
    urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, built: Backends | DriverParts) -> DriverParts:
        if isinstance(built, DriverParts):
            return built
        return cls(built.queue, built.context, built.coordination, dict(built.urls))

    def backends(self) -> Backends:
        """All three as :class:`Backends` (for workflow scenarios)."""
        if self.queue is None or self.context is None or self.coordination is None:
            raise RuntimeError("the driver under test does not provide all three components")
        return Backends(self.queue, self.context, self.coordination, dict(self.urls))

    async def close(self) -> None:
        closed: set[int] = set()
        for part in (self.queue, self.context, self.coordination):
            if part is not None and id(part) not in closed:
                closed.add(id(part))
                await part.close()


Built: TypeAlias = Backends | DriverParts
Factory: TypeAlias = Callable[..., Built | Awaitable[Built]]
Clock: TypeAlias = Callable[[], float]
RunStateFactory: TypeAlias = Callable[[ContextStore, CoordinationStore, float], "RunState | None"]
ClockedFactory: TypeAlias = Callable[[Clock], CoordinationStore | Awaitable[CoordinationStore]]
Discard: TypeAlias = Callable[[str], object]


@dataclass(frozen=True)
class Target:
    """How the suite reaches the driver under test.

    ``factory(namespace)`` returns fresh components (sync or async; it is called on the suite's
    event loop). ``clocked_coordination(clock)``, if given, returns a coordination store whose
    TTLs follow ``clock`` (seconds), for the TTL state machine. ``run_state(context,
    coordination, ttl)``, if given, returns the driver's fused run state over its stores (or
    None); without it the installed plugins' ``flowcraft_make_run_state`` hook is asked.
    ``url`` and ``info`` are set for URL targets: other processes can open the same driver, and
    its declaration is checked. ``discard(namespace)``, if given, deletes what a namespace's
    components stored (sync or async); the harness calls it when a test ends, after closing
    them, so runs on a shared server leave nothing behind.
    """

    name: str
    factory: Factory
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    provides: frozenset[str] = frozenset(COMPONENTS)
    clocked_coordination: ClockedFactory | None = None
    url: str | None = None
    info: DriverInfo | None = None
    selective: bool = False  # factory takes (namespace, components)
    run_state: RunStateFactory | None = None
    discard: Discard | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        capabilities: Mapping[str, Any] | None = None,
        clocked_coordination: ClockedFactory | None = None,
        pm: pluggy.PluginManager | None = None,
    ) -> Target:
        """A target built from ``url`` through the installed driver plugins. ``capabilities``
        override what the driver declares. Raises ``DriverError`` for an unknown scheme."""
        manager = pm or default_manager()
        info = driver_for(url, manager)
        declared = {**info.capabilities, **(capabilities or {})}
        provides = frozenset(info.provides) & frozenset(COMPONENTS)

        def factory(namespace: str, components: Iterable[str] = COMPONENTS) -> DriverParts:
            private = isolated_url(url, namespace, declared)
            wanted = provides & frozenset(components)
            if wanted == frozenset(COMPONENTS):
                return DriverParts.of(open_backends(private, pm=manager))
            parts = DriverParts(urls={c: private for c in wanted})
            for component in sorted(wanted):
                hook = getattr(manager.hook, f"flowcraft_make_{component}")
                built = hook(url=private)
                if built is None:
                    raise DriverError(
                        f"driver {info.name!r} returned no {component} for {mask(url)!r}"
                    )
                setattr(parts, component, built)
            return parts

        def run_state(
            context: ContextStore, coordination: CoordinationStore, ttl: float
        ) -> RunState | None:
            offered: RunState | None = manager.hook.flowcraft_make_run_state(
                context=context, coordination=coordination, ttl=ttl
            )
            return offered

        def discard(namespace: str) -> object:
            # A driver without the hook answers None: its namespaces stay until their TTLs.
            return manager.hook.flowcraft_discard(url=isolated_url(url, namespace, declared))

        return cls(
            name=f"{info.name} ({mask(url)})",
            factory=factory,
            capabilities=declared,
            provides=provides,
            clocked_coordination=clocked_coordination,
            url=url,
            info=info,
            selective=True,
            run_state=run_state,
            # Without isolation every namespace is the URL itself, shared with whatever else
            # uses it: discarding it would delete more than the test wrote.
            discard=discard if value_of(declared, "isolation") else None,
        )

    @classmethod
    def from_factory(
        cls,
        factory: Factory,
        *,
        name: str = "factory",
        capabilities: Mapping[str, Any] | None = None,
        provides: tuple[str, ...] | frozenset[str] = COMPONENTS,
        clocked_coordination: ClockedFactory | None = None,
        run_state: RunStateFactory | None = None,
        discard: Discard | None = None,
    ) -> Target:
        """A target for a driver built in code. ``capabilities`` are declared here, since there
        is no ``DriverInfo`` to read them from."""
        return cls(
            name=name,
            factory=factory,
            capabilities=dict(capabilities or {}),
            provides=frozenset(provides),
            clocked_coordination=clocked_coordination,
            run_state=run_state,
            discard=discard,
        )

    def fused_state(
        self, context: ContextStore, coordination: CoordinationStore, ttl: float
    ) -> RunState | None:
        """The driver's fused run state over these stores, or None if it offers none."""
        if self.run_state is not None:
            return self.run_state(context, coordination, ttl)
        offered: RunState | None = default_manager().hook.flowcraft_make_run_state(
            context=context, coordination=coordination, ttl=ttl
        )
        return offered

    def url_for(self, namespace: str) -> str | None:
        """The URL another process opens to share this namespace (None for factory targets)."""
        return None if self.url is None else isolated_url(self.url, namespace, self.capabilities)

    async def open(self, namespace: str, components: Iterable[str] = COMPONENTS) -> DriverParts:
        """Fresh components for ``namespace`` (call on the suite's event loop). ``components``
        is a hint: a factory target builds whatever its factory builds."""
        built = self.factory(namespace, components) if self.selective else self.factory(namespace)
        if inspect.isawaitable(built):
            built = await built
        return DriverParts.of(built)

    async def discard_namespace(self, namespace: str) -> None:
        """Delete what ``namespace``'s components stored, if the driver can (call on the
        suite's event loop, after closing them)."""
        if self.discard is None:
            return
        done = self.discard(namespace)
        if inspect.isawaitable(done):
            await done

    async def open_clocked(self, clock: Clock) -> CoordinationStore:
        if self.clocked_coordination is None:
            raise RuntimeError("this target has no clocked coordination store")
        store = self.clocked_coordination(clock)
        if inspect.isawaitable(store):
            store = await store
        return store


def isolated_url(url: str, namespace: str, capabilities: Mapping[str, Any]) -> str:
    """``url`` made private to ``namespace`` as the ``isolation`` capability says."""
    parts = urlsplit(url)
    how = value_of(capabilities, "isolation")
    if not how:
        return url
    if how == "path":
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + namespace))
    if isinstance(how, str) and how.startswith("query:"):
        param = how.split(":", 1)[1]
        query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != param]
        query.append((param, namespace))
        # Only the query changes: urlunsplit would turn sqlite:////abs/path into sqlite://abs.
        return url.split("?", 1)[0] + "?" + urlencode(query)
    raise ValueError(f"unknown isolation {how!r} (expected 'path' or 'query:NAME')")
