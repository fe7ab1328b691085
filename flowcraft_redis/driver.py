"""The Redis driver's plugin: ``redis://`` and ``rediss://`` URLs (see :mod:`flowcraft_redis.url`).

Registered through the ``flowcraft.drivers`` entry point, exactly as a third-party driver would
be. The context and coordination stores built from one URL in one process share one connection
pool; each queue has its own (Dramatiq's client is synchronous).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis

from flowcraft_core.hookspecs import DriverInfo, hookimpl
from flowcraft_redis.connection import Connections
from flowcraft_redis.context import RedisContextStore
from flowcraft_redis.coordination import RedisCoordinationStore
from flowcraft_redis.queue import RedisQueue
from flowcraft_redis.run_state import RedisRunState
from flowcraft_redis.url import SCHEMES, RedisSettings, parse_url

_DEFAULTS = RedisSettings()
_connections: dict[tuple[str, tuple[tuple[str, Any], ...]], Connections] = {}


def _settings(url: str) -> RedisSettings | None:
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return parse_url(url) if scheme in SCHEMES else None


def _shared(settings: RedisSettings) -> Connections:
    # Keyed by what the connections depend on (server, database, credentials, options), not
    # by prefix: every deployment on one database shares the pool. Connections count their
    # users, so closing one deployment's stores leaves the pool to the others.
    key = (settings.url, settings.options)
    connections = _connections.get(key)
    if connections is None:
        connections = _connections[key] = Connections(settings)
    return connections


@hookimpl
def flowcraft_driver_info() -> DriverInfo:
    return DriverInfo(
        name="redis",
        schemes=SCHEMES,
        capabilities={
            "delays": True,
            "ttl": True,
            "redelivery_after_crash_s": round(_DEFAULTS.redelivery_bound, 3),
            "redelivery_after_error_s": round(5.0 + 2 * _DEFAULTS.poll, 3),
            "delay_tolerance_s": 1.0,
            "multi_process": True,
            "isolation": "query:prefix",
            "fault_injection": False,
        },
        description=(
            "Dramatiq queue on Redis, one hash per run for context, Lua scripts for "
            "coordination. redis://[:password@]host[:port][/db][?prefix=&heartbeat=&poll=]"
        ),
    )


@hookimpl
def flowcraft_make_queue(url: str) -> RedisQueue | None:
    settings = _settings(url)
    return None if settings is None else RedisQueue(settings, connections=_shared(settings))


@hookimpl
def flowcraft_make_context(url: str) -> RedisContextStore | None:
    settings = _settings(url)
    if settings is None:
        return None
    return RedisContextStore(settings, connections=_shared(settings))


@hookimpl
def flowcraft_make_coordination(url: str) -> RedisCoordinationStore | None:
    settings = _settings(url)
    if settings is None:
        return None
    return RedisCoordinationStore(settings, connections=_shared(settings))


@hookimpl
def flowcraft_discard(url: str) -> bool | None:
    settings = _settings(url)
    if settings is None:
        return None
    discard_prefix(settings)
    return True


#: Keys deleted per UNLINK while discarding a prefix.
_DISCARD_BATCH = 500


def discard_prefix(settings: RedisSettings) -> int:
    """Delete every key under ``settings.prefix`` (all the driver wrote for that deployment,
    Dramatiq's queues included); returns how many. SCAN, not KEYS, so the server is not held
    on a large database; the prefix is escaped, as MATCH takes a glob."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in settings.prefix) + ":*"
    client = redis.Redis.from_url(settings.url, **settings.connection_kwargs())
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= _DISCARD_BATCH:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    finally:
        client.close()
    return deleted


@hookimpl
def flowcraft_make_run_state(context: Any, coordination: Any, ttl: float) -> RedisRunState | None:
    # Fusing needs both stores on one Redis database: the scripts touch keys of each.
    if not (
        isinstance(context, RedisContextStore)
        and isinstance(coordination, RedisCoordinationStore)
        and context.connections is coordination.connections
    ):
        return None
    return RedisRunState(context, coordination, ttl=ttl)
