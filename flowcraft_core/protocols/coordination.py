"""The coordination store protocol: atomic counters, set-if-absent markers, member sets, TTLs
and latched signals, shared by every worker of a deployment.

Contract every implementation keeps:

* Every operation is atomic with respect to every other on the same key.
* :meth:`batch` runs its operations atomically and in order: no other client observes a state
  between two of them, and results come back in order. It is one round trip where the backend
  allows.
* ``ttl`` (seconds) makes a key expire; an expired key reads as absent. :meth:`extend` renews a
  key's TTL only while it exists.
* :meth:`add_member` counts once per member: adding the same member again changes nothing and
  reports ``added=False`` — this is what makes join arrivals safe under redelivery.
* :meth:`signal` latches: a :meth:`wait_any` that starts after a signal returns at once.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

OpName = Literal[
    "get",
    "set",
    "set_if_absent",
    "incr",
    "delete",
    "add_member",
    "remove_member",
    "count",
    "members",
    "extend",
]


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a :meth:`CoordinationStore.batch`. Results by ``name``:

    ``get`` → str | None; ``set`` → None; ``set_if_absent`` → bool; ``incr`` → int;
    ``delete`` → bool (existed); ``add_member`` → tuple[bool, int] (added, new size);
    ``remove_member`` → bool (was present);
    ``count`` → int (members of a set, 0 if absent); ``members`` → set[str]; ``extend`` → bool.
    """

    name: OpName
    key: str
    value: str | None = None
    amount: int = 1
    ttl: float | None = None

    @staticmethod
    def get(key: str) -> Op:
        return Op("get", key)

    @staticmethod
    def set(key: str, value: str, ttl: float | None = None) -> Op:
        return Op("set", key, value, ttl=ttl)

    @staticmethod
    def set_if_absent(key: str, value: str, ttl: float | None = None) -> Op:
        return Op("set_if_absent", key, value, ttl=ttl)

    @staticmethod
    def incr(key: str, amount: int = 1, ttl: float | None = None) -> Op:
        return Op("incr", key, amount=amount, ttl=ttl)

    @staticmethod
    def delete(key: str) -> Op:
        return Op("delete", key)

    @staticmethod
    def add_member(key: str, member: str, ttl: float | None = None) -> Op:
        return Op("add_member", key, member, ttl=ttl)

    @staticmethod
    def remove_member(key: str, member: str) -> Op:
        return Op("remove_member", key, member)

    @staticmethod
    def count(key: str) -> Op:
        return Op("count", key)

    @staticmethod
    def members(key: str) -> Op:
        return Op("members", key)

    @staticmethod
    def extend(key: str, ttl: float) -> Op:
        return Op("extend", key, ttl=ttl)


@runtime_checkable
class CoordinationStore(Protocol):
    """Shared atomic state (see the module docstring for the contract)."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl: float | None = None) -> None: ...

    async def set_if_absent(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        """Set ``key`` only if absent; True if this call set it."""
        ...

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        """Add ``amount`` (absent counts as 0) and return the new value. ``ttl`` is applied
        when the key is created."""
        ...

    async def delete(self, key: str) -> bool: ...

    async def extend(self, key: str, ttl: float) -> bool:
        """Renew the TTL of an existing key; False if it does not exist."""
        ...

    async def add_member(
        self, key: str, member: str, *, ttl: float | None = None
    ) -> tuple[bool, int]:
        """Add ``member`` to the set at ``key`` once: (whether it was new, size after)."""
        ...

    async def remove_member(self, key: str, member: str) -> bool:
        """Remove ``member`` from the set at ``key``; True if it was there."""
        ...

    async def members(self, key: str) -> builtins.set[str]: ...

    async def batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` atomically and in order; return their results in order."""
        ...

    async def signal(self, key: str, *, ttl: float | None = None) -> None:
        """Latch ``key``: every current and later :meth:`wait_any` on it returns."""
        ...

    async def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        """Block until one of ``keys`` is signalled (or already is); return it, or None on
        timeout. Must not poll: it wakes on a push from the backend."""
        ...

    async def close(self) -> None: ...


class BatchBacked:
    """Every single-key operation of :class:`CoordinationStore` as a batch of one, for a store
    whose :meth:`batch` is its one primitive (one Lua script, one SQL transaction). A subclass
    writes :meth:`batch`, :meth:`signal`, :meth:`wait_any` and :meth:`close`; the single
    operations then answer exactly as their batched form does."""

    async def batch(self, ops: Sequence[Op]) -> list[Any]:
        raise NotImplementedError

    async def _one(self, op: Op) -> Any:
        return (await self.batch([op]))[0]

    async def get(self, key: str) -> str | None:
        result: str | None = await self._one(Op.get(key))
        return result

    async def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        await self._one(Op.set(key, value, ttl))

    async def set_if_absent(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        return bool(await self._one(Op.set_if_absent(key, value, ttl)))

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        return int(await self._one(Op.incr(key, amount, ttl)))

    async def delete(self, key: str) -> bool:
        return bool(await self._one(Op.delete(key)))

    async def extend(self, key: str, ttl: float) -> bool:
        return bool(await self._one(Op.extend(key, ttl)))

    async def add_member(
        self, key: str, member: str, *, ttl: float | None = None
    ) -> tuple[bool, int]:
        added, size = await self._one(Op.add_member(key, member, ttl))
        return bool(added), int(size)

    async def remove_member(self, key: str, member: str) -> bool:
        return bool(await self._one(Op.remove_member(key, member)))

    async def members(self, key: str) -> builtins.set[str]:
        result: builtins.set[str] = await self._one(Op.members(key))
        return result
