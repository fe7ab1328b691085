"""The Redis coordination store: counters, set-if-absent markers, member sets and latched
signals under ``{prefix}:co:`` and ``{prefix}:sig:``."""

from __future__ import annotations

import asyncio
import builtins
import math
from collections.abc import Sequence
from typing import Any, get_args

from flowcraft_core.protocols.coordination import BatchBacked, Op, OpName
from flowcraft_redis.connection import Connections
from flowcraft_redis.url import RedisSettings, settings_of

OP_NAMES = frozenset(get_args(OpName))
_NEEDS_VALUE = frozenset({"set", "set_if_absent", "add_member", "remove_member"})


def milliseconds(ttl: float) -> int:
    """A TTL in whole milliseconds, rounded up so nothing expires early, and at least 1 since
    Redis rejects ``PX 0``."""
    return max(1, math.ceil(ttl * 1000))


def _decode(name: str, reply: Any) -> Any:
    if name == "get":
        return reply
    if name == "set":
        return None
    if name == "add_member":
        added, size = reply
        return bool(added), int(size)
    if name in ("incr", "count"):
        return int(reply)
    if name == "members":
        return builtins.set(reply)
    return bool(reply)  # set_if_absent, delete, remove_member, extend


class RedisCoordinationStore(BatchBacked):
    """Shared atomic state in Redis. Every operation, and every :meth:`batch`, is one run of one
    Lua script (``batch.lua``, by EVALSHA): atomic, in order, one round trip.

    Why one script rather than MULTI/EXEC: "set the TTL only when the key is created" (``incr``
    and ``add_member``) needs a read before the write, which a transaction cannot branch on
    (``EXPIRE NX`` is not the same: it would also add a TTL to an old key that has none). One
    interpreter also gives single operations and batches exactly the same semantics, including
    reads of a key of the other type answering as absent, like the reference model.

    Signals are lists at ``{prefix}:sig:{key}``, separate from values: a latched signal is a
    one-element list, and a waiter blocks on it with ``BLMOVE key key`` (see :meth:`wait_any`).
    """

    def __init__(self, url: str | RedisSettings, *, connections: Connections | None = None) -> None:
        self.settings = settings_of(url)
        self.connections = (connections or Connections(self.settings)).acquire()
        self._closed = False

    def key(self, key: str) -> str:
        return f"{self.settings.prefix}:co:{key}"

    def signal_key(self, key: str) -> str:
        return f"{self.settings.prefix}:sig:{key}"

    # -- operations ---------------------------------------------------------------------------

    async def batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` atomically and in order; results as documented on :class:`Op`. An
        operation that fails (a write to a key of the other type) raises, after the operations
        before it were applied, as in the reference model."""
        if not ops:
            return []
        keys: list[str] = []
        args: list[str | int] = []
        for op in ops:
            if op.name not in OP_NAMES:
                raise ValueError(f"unknown coordination op {op.name!r}")
            if op.name in _NEEDS_VALUE and op.value is None:
                raise ValueError(f"coordination op {op.name!r} on {op.key!r} needs a value")
            if op.name == "extend" and op.ttl is None:
                raise ValueError(f"coordination op 'extend' on {op.key!r} needs a ttl")
            keys.append(self.key(op.key))
            ttl = "" if op.ttl is None else milliseconds(op.ttl)
            args += (op.name, op.value or "", op.amount, ttl)
        replies = await self.connections.script("batch.lua")(keys=keys, args=args)
        return [_decode(op.name, reply) for op, reply in zip(ops, replies, strict=True)]

    # -- signals ------------------------------------------------------------------------------

    async def signal(self, key: str, *, ttl: float | None = None) -> None:
        """Latch ``key``: its list holds exactly one element until it expires."""
        name = self.signal_key(key)
        async with self.connections.client.pipeline(transaction=True) as pipe:
            # DEL first keeps the list at one element however often it is signalled.
            pipe.delete(name)
            pipe.rpush(name, "1")
            if ttl is not None:
                pipe.pexpire(name, milliseconds(ttl))
            await pipe.execute()

    async def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        """Block until one of ``keys`` is signalled; woken by Redis, never by polling.

        Each key is waited on with ``BLMOVE k k RIGHT LEFT``, which moves the latch's element
        onto the same list in one atomic step: the wait returns as soon as the list is
        non-empty and leaves it exactly as it was, so every other waiter, present or future,
        still sees the latch. Redis has no non-destructive wait on several lists (``BLPOP``
        would take the element away, and a waiter dying before pushing it back would erase the
        latch for everyone), so several keys are waited on concurrently, one connection each,
        after one round trip that returns at once if any is already signalled. Blocking
        commands use a client without socket timeout.
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            if timeout is None:
                await asyncio.Event().wait()  # nothing can ever be signalled
            elif timeout > 0:
                await asyncio.sleep(timeout)
            return None
        names = [self.signal_key(k) for k in wanted]
        if len(wanted) > 1 or (timeout is not None and timeout <= 0):
            async with self.connections.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.exists(name)
                found = await pipe.execute()
            for key, hit in zip(wanted, found, strict=True):
                if hit:
                    return key
            if timeout is not None and timeout <= 0:
                return None
        # Redis reads a fractional timeout in whole milliseconds and takes 0 as "forever", so
        # a positive timeout is sent as at least 1 ms, with exactly three decimals.
        seconds = "0" if timeout is None else f"{milliseconds(timeout) / 1000:.3f}"
        if len(wanted) == 1:
            return wanted[0] if await self._wait(names[0], seconds) else None
        waits = {
            asyncio.create_task(self._wait(name, seconds)): key
            for name, key in zip(names, wanted, strict=True)
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            # Look at every finished wait (so none leaves an unretrieved error behind); a
            # signal wins over an error, an error over a timeout.
            failure: BaseException | None = None
            for task in done:
                if task.exception() is not None:
                    failure = task.exception()
                elif task.result():
                    return waits[task]
            if failure is not None:
                raise failure
            return None  # they share one deadline: the first to time out means all did
        finally:
            pending = [task for task in waits if not task.done()]
            for task in pending:
                task.cancel()  # redis-py drops a connection cancelled mid-command
            await asyncio.gather(*pending, return_exceptions=True)
            for task in waits:
                # A wait that failed after the others won (or after `done` was taken) still
                # has its error retrieved, so asyncio does not log it as never retrieved.
                if task.done() and not task.cancelled():
                    task.exception()

    async def _wait(self, name: str, seconds: str) -> bool:
        client: Any = self.connections.blocking  # BLMOVE's stub wants an int timeout
        moved = await client.execute_command("BLMOVE", name, name, "RIGHT", "LEFT", seconds)
        return moved is not None

    # -- lifecycle ----------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`flowcraft_core.errors.DriverError` naming the URL if Redis does not
        answer."""
        await self.connections.ping()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.connections.release()
