"""Choosing backends by URL: one URL for all three components, or one per component."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pluggy

from flowcraft_core.errors import DriverError
from flowcraft_core.hookspecs import DriverInfo
from flowcraft_core.plugins import (
    DRIVER_GROUP,
    Unavailable,
    default_manager,
    driver_infos,
    unavailable,
)
from flowcraft_core.protocols import ContextStore, CoordinationStore, Queue

DEFAULT_BACKEND = "memory://"
ENV_BACKEND = "FLOWCRAFT_BACKEND"
ENV_COMPONENTS = {
    "queue": "FLOWCRAFT_QUEUE",
    "context": "FLOWCRAFT_CONTEXT",
    "coordination": "FLOWCRAFT_COORDINATION",
}


# scheme://user:PASSWORD@ — the user (possibly empty) is kept, the password is what is hidden.
# A password cannot hold "/" or whitespace unescaped, so one URL's match never runs into the next.
_PASSWORD = re.compile(r"(?P<keep>[A-Za-z][A-Za-z0-9+.-]*://[^/\s@:]*:)[^\s/]*@")


def mask(text: str) -> str:
    """``text`` (a URL, several, or a message quoting them) with the password of every URL in
    it replaced by ``***``. The one place flowcraft hides passwords: anything that prints or
    logs a backend URL passes it through here first."""
    return _PASSWORD.sub(r"\g<keep>***@", text)


@dataclass
class Backends:
    """The three components an engine or client works with, and the URLs they came from."""

    queue: Queue
    context: ContextStore
    coordination: CoordinationStore
    urls: dict[str, str]

    async def close(self) -> None:
        closed: set[int] = set()
        for part in (self.queue, self.context, self.coordination):
            if id(part) not in closed:
                closed.add(id(part))
                await part.close()


def installed_drivers(pm: pluggy.PluginManager | None = None) -> list[DriverInfo]:
    pm = pm or default_manager()
    infos: list[DriverInfo] = pm.hook.flowcraft_driver_info()
    return sorted(infos, key=lambda i: i.name)


@dataclass(frozen=True)
class UnavailableDriver:
    """An installed driver that cannot be used here: the schemes its entry points name, and
    the one line saying why and what to install."""

    name: str
    schemes: tuple[str, ...]
    reason: str


def unavailable_drivers() -> list[UnavailableDriver]:
    found: dict[str, list[Unavailable]] = {}
    for entry in unavailable().values():
        if entry.group == DRIVER_GROUP:
            found.setdefault(entry.value, []).append(entry)
    return sorted(
        (
            UnavailableDriver(
                entries[0].label or entries[0].name,
                tuple(e.name for e in entries),
                entries[0].reason(),
            )
            for entries in found.values()
        ),
        key=lambda d: d.name,
    )


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme
    if not scheme:
        raise DriverError(
            f"backend URL {mask(url)!r} has no scheme (expected e.g. memory:// or redis://)"
        )
    return scheme.lower()


def driver_for(url: str, pm: pluggy.PluginManager | None = None) -> DriverInfo:
    """The driver that owns ``url``'s scheme, or a :class:`DriverError` that lists the installed
    drivers and suggests the closest scheme. Only the driver whose entry point is named after
    the scheme is imported (and those registered in code are asked), unless none of them owns
    it: then every driver is, to list them."""
    scheme = scheme_of(url)
    pm = pm or default_manager()
    for info in driver_infos(pm, scheme):
        if scheme in info.schemes:
            return info
    infos = installed_drivers(pm)
    for info in infos:
        if scheme in info.schemes:
            return info
    missing = unavailable().get(scheme)
    if missing is not None and missing.group == DRIVER_GROUP:
        raise DriverError(missing.reason())
    known = sorted({s for info in infos for s in info.schemes})
    hint = ""
    close = difflib.get_close_matches(scheme, known + list(unavailable()), n=1)
    if close:
        hint = f" Did you mean {close[0]}://?"
    listing = ", ".join(f"{i.name} ({', '.join(s + '://' for s in i.schemes)})" for i in infos)
    raise DriverError(
        f"no installed driver handles {scheme}:// (from {mask(url)!r}).{hint} Installed: {listing}."
    )


def _build(url: str, component: str, pm: pluggy.PluginManager) -> Any:
    info = driver_for(url, pm)
    if component not in info.provides:
        raise DriverError(
            f"driver {info.name!r} does not provide a {component} (it provides "
            f"{', '.join(info.provides)}); choose another URL for FLOWCRAFT_{component.upper()}"
        )
    hook = getattr(pm.hook, f"flowcraft_make_{component}")
    built = hook(url=url)
    if built is None:
        raise DriverError(f"driver {info.name!r} returned no {component} for {mask(url)!r}")
    return built


def resolve_urls(
    backend: str | None = None,
    *,
    queue: str | None = None,
    context: str | None = None,
    coordination: str | None = None,
) -> dict[str, str]:
    """Per-component URLs: explicit arguments first, then FLOWCRAFT_QUEUE / _CONTEXT /
    _COORDINATION, then ``backend`` or FLOWCRAFT_BACKEND, then ``memory://``."""
    base = backend or os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND
    given = {"queue": queue, "context": context, "coordination": coordination}
    return {
        name: given[name] or os.environ.get(env) or base for name, env in ENV_COMPONENTS.items()
    }


def open_backends(
    backend: str | None = None,
    *,
    queue: str | None = None,
    context: str | None = None,
    coordination: str | None = None,
    pm: pluggy.PluginManager | None = None,
) -> Backends:
    """Build the three components from URLs (see :func:`resolve_urls`)."""
    pm = pm or default_manager()
    urls = resolve_urls(backend, queue=queue, context=context, coordination=coordination)
    return Backends(
        queue=_build(urls["queue"], "queue", pm),
        context=_build(urls["context"], "context", pm),
        coordination=_build(urls["coordination"], "coordination", pm),
        urls=urls,
    )
