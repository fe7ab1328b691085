"""The in-memory driver's plugin: ``memory://`` and ``memory://NAME``.

Backends are shared per name within a process, so a client and the workers of the same process
(``flowcraft run``, tests) see one queue and one state. Registered through the
``flowcraft.drivers`` entry point, exactly as a third-party driver would be.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flowcraft_core.hookspecs import DriverInfo, hookimpl
from flowcraft_memory.context import MemoryContextStore
from flowcraft_memory.coordination import MemoryCoordinationStore
from flowcraft_memory.queue import ERROR_BACKOFF_MAX, MemoryQueue
from flowcraft_memory.run_state import MemoryRunState

SCHEME = "memory"

_queues: dict[str, MemoryQueue] = {}
_contexts: dict[str, MemoryContextStore] = {}
_coordinations: dict[str, MemoryCoordinationStore] = {}


def _name(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        return None
    return (parts.netloc + parts.path).strip("/") or "default"


def reset() -> None:
    """Forget every named backend (tests)."""
    _queues.clear()
    _contexts.clear()
    _coordinations.clear()


@hookimpl
def flowcraft_driver_info() -> DriverInfo:
    return DriverInfo(
        name="memory",
        schemes=(SCHEME,),
        capabilities={
            "delays": True,
            "ttl": True,
            "redelivery_after_crash_s": 0.0,
            "redelivery_after_error_s": ERROR_BACKOFF_MAX,
            "multi_process": False,
            "fault_injection": True,
            "isolation": "path",
            "signal": True,
        },
        description="In-process asyncio queue and dicts: development, tests, flowcraft run.",
    )


@hookimpl
def flowcraft_make_queue(url: str) -> MemoryQueue | None:
    name = _name(url)
    return None if name is None else _queues.setdefault(name, MemoryQueue())


@hookimpl
def flowcraft_make_context(url: str) -> MemoryContextStore | None:
    name = _name(url)
    return None if name is None else _contexts.setdefault(name, MemoryContextStore())


@hookimpl
def flowcraft_make_coordination(url: str) -> MemoryCoordinationStore | None:
    name = _name(url)
    return None if name is None else _coordinations.setdefault(name, MemoryCoordinationStore())


@hookimpl
def flowcraft_discard(url: str) -> bool | None:
    # Forgets the name's backends (already closed by the caller): a process that runs many
    # tests on fresh names would otherwise keep every one's state until it exits.
    name = _name(url)
    if name is None:
        return None
    _queues.pop(name, None)
    _contexts.pop(name, None)
    _coordinations.pop(name, None)
    return True


@hookimpl
def flowcraft_make_run_state(context: Any, coordination: Any, ttl: float) -> MemoryRunState | None:
    if isinstance(context, MemoryContextStore) and isinstance(
        coordination, MemoryCoordinationStore
    ):
        return MemoryRunState(context, coordination, ttl=ttl)
    return None
