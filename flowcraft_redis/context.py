"""The Redis context store: one hash per run, each value the JSON text of one key."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

from flowcraft_core.protocols.context import MISSING, Missing, encode
from flowcraft_redis.connection import Connections
from flowcraft_redis.url import RedisSettings, settings_of


class RedisContextStore:
    """Per-run JSON maps in Redis hashes at ``{prefix}:ctx:{run_id}``.

    Every method is one round trip. :meth:`patch` is one MULTI/EXEC transaction and
    :meth:`commit` one Lua script, so both are atomic. Values are encoded before anything is
    sent: a value without a JSON form raises and nothing is written.
    """

    def __init__(self, url: str | RedisSettings, *, connections: Connections | None = None) -> None:
        self.settings = settings_of(url)
        self.connections = (connections or Connections(self.settings)).acquire()
        self._closed = False

    def key(self, run_id: str) -> str:
        return f"{self.settings.prefix}:ctx:{run_id}"

    async def get(self, run_id: str, key: str) -> Any | Missing:
        raw = await self.connections.client.hget(self.key(run_id), key)
        return MISSING if raw is None else json.loads(raw)

    async def get_many(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        raws = await self.connections.client.hmget(self.key(run_id), wanted)
        return {k: json.loads(raw) for k, raw in zip(wanted, raws, strict=True) if raw is not None}

    async def get_all(self, run_id: str) -> dict[str, Any]:
        raws = await self.connections.client.hgetall(self.key(run_id))
        return {str(k): json.loads(raw) for k, raw in raws.items()}

    async def set(self, run_id: str, key: str, value: Any) -> None:
        await self.connections.client.hset(self.key(run_id), key, encode(value))

    async def delete(self, run_id: str, key: str) -> None:
        await self.connections.client.hdel(self.key(run_id), key)

    async def has(self, run_id: str, key: str) -> bool:
        return bool(await self.connections.client.hexists(self.key(run_id), key))

    async def patch(self, run_id: str, set: Mapping[str, Any], delete: Iterable[str] = ()) -> None:
        encoded = {k: encode(v) for k, v in set.items()}
        removed = list(delete)
        if not encoded and not removed:
            return
        name = self.key(run_id)
        async with self.connections.client.pipeline(transaction=True) as pipe:
            # Writes before deletes, so a key in both ends up deleted, as in the reference.
            if encoded:
                pipe.hset(name, mapping=cast("Mapping[Any, Any]", encoded))
            if removed:
                pipe.hdel(name, *removed)
            await pipe.execute()

    async def commit(self, run_id: str, guard: str, set: Mapping[str, Any]) -> bool:
        args: list[str] = [guard]
        for k, v in set.items():
            args += (k, encode(v))
        script = self.connections.script("commit.lua")
        return bool(await script(keys=[self.key(run_id)], args=args))

    async def expire(self, run_id: str, seconds: float) -> None:
        # Milliseconds, rounded up so a run is never dropped early; at least 1 because
        # PEXPIRE 0 would delete at once rather than "very soon".
        await self.connections.client.pexpire(self.key(run_id), max(1, math.ceil(seconds * 1000)))

    async def ping(self) -> None:
        """Raise :class:`flowcraft_core.errors.DriverError` naming the URL if Redis does not
        answer."""
        await self.connections.ping()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.connections.release()
