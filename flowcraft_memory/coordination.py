"""In-memory coordination store: dicts with TTLs on a monotonic (or injected) clock."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Callable, Sequence
from typing import Any

from flowcraft_core.protocols.coordination import Op


class MemoryCoordinationStore:
    """Shared state of one process. No method awaits between reading and writing, so every
    operation — and every :meth:`batch` — is atomic on the event loop. ``clock`` returns seconds
    and may be injected (the conformance suite drives TTLs with a fake clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._values: dict[str, str | set[str]] = {}
        self._expiry: dict[str, float] = {}
        self._signals: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}

    # -- helpers ------------------------------------------------------------------------------

    def now(self) -> float:
        """The store's clock. A fused step reads it once and passes it to the ``*_now``
        methods: the step is atomic, so it happens at one instant, and it saves a clock read
        per key (about 17 per node)."""
        return self._clock()

    def _live(self, key: str, now: float | None = None) -> str | set[str] | None:
        deadline = self._expiry.get(key)
        if deadline is None:
            return self._values.get(key)
        if (self._clock() if now is None else now) >= deadline:
            self._values.pop(key, None)
            self._expiry.pop(key, None)
            self._signals.discard(key)
            return None
        return self._values.get(key)

    def _put(
        self,
        key: str,
        value: str | set[str],
        ttl: float | None,
        *,
        keep_ttl: bool,
        now: float | None = None,
    ) -> None:
        self._values[key] = value
        if ttl is not None:
            self._expiry[key] = (self._clock() if now is None else now) + ttl
        elif not keep_ttl:
            self._expiry.pop(key, None)

    # Synchronous operations: each completes without yielding, so each is atomic; the fused
    # run state (run_state.py) calls them directly, with the clock it read for its step.

    def get_now(self, key: str, now: float | None = None) -> str | None:
        current = self._live(key, now)
        return current if isinstance(current, str) else None

    def set_now(self, key: str, value: str, ttl: float | None, now: float | None = None) -> None:
        self._live(key, now)
        self._put(key, value, ttl, keep_ttl=False, now=now)

    def set_if_absent_now(
        self, key: str, value: str, ttl: float | None, now: float | None = None
    ) -> bool:
        if self._live(key, now) is not None:
            return False
        self._put(key, value, ttl, keep_ttl=False, now=now)
        return True

    def delete_now(self, key: str) -> bool:
        self._expiry.pop(key, None)
        self._signals.discard(key)
        return self._values.pop(key, None) is not None

    def add_member_now(
        self, key: str, member: str, ttl: float | None, now: float | None = None
    ) -> tuple[bool, int]:
        current = self._live(key, now)
        if current is None:
            self._put(key, {member}, ttl, keep_ttl=False, now=now)
            return True, 1
        if not isinstance(current, set):
            raise TypeError(f"add_member on a string key: {key}")
        if member in current:
            return False, len(current)
        current.add(member)
        return True, len(current)

    def extend_many_now(self, keys: Sequence[str], ttl: float, now: float) -> None:
        """``extend`` each of ``keys`` that exists (at ``now``) to ``ttl`` from ``now``."""
        values, expiry, deadline = self._values, self._expiry, now + ttl
        for key in keys:
            if key in values and expiry.get(key, deadline) > now:
                expiry[key] = deadline

    def count_now(self, key: str, now: float | None = None) -> int:
        current = self._live(key, now)
        return len(current) if isinstance(current, set) else 0

    def members_now(self, key: str, now: float | None = None) -> builtins.set[str]:
        current = self._live(key, now)
        return set(current) if isinstance(current, set) else set()

    def _apply(self, op: Op) -> Any:
        name = op.name
        if name == "get":
            return self.get_now(op.key)
        if name == "set":
            assert op.value is not None
            self.set_now(op.key, op.value, op.ttl)
            return None
        if name == "set_if_absent":
            assert op.value is not None
            return self.set_if_absent_now(op.key, op.value, op.ttl)
        if name == "add_member":
            assert op.value is not None
            return self.add_member_now(op.key, op.value, op.ttl)
        if name == "count":
            return self.count_now(op.key)
        if name == "members":
            return self.members_now(op.key)
        if name == "delete":
            return self.delete_now(op.key)
        current = self._live(op.key)
        if name == "incr":
            if isinstance(current, set):
                raise TypeError(f"incr on a set key: {op.key}")
            value = int(current or 0) + op.amount
            self._put(op.key, str(value), op.ttl if current is None else None, keep_ttl=True)
            return value
        if name == "remove_member":
            if isinstance(current, set) and op.value in current:
                current.discard(op.value)
                return True
            return False
        if name == "extend":
            if current is None:
                return False
            assert op.ttl is not None
            self._expiry[op.key] = self._clock() + op.ttl
            return True
        raise ValueError(f"unknown coordination op {name!r}")

    # -- protocol -----------------------------------------------------------------------------

    async def get(self, key: str) -> str | None:
        result: str | None = self._apply(Op.get(key))
        return result

    async def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        self._apply(Op.set(key, value, ttl))

    async def set_if_absent(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        return bool(self._apply(Op.set_if_absent(key, value, ttl)))

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        return int(self._apply(Op.incr(key, amount, ttl)))

    async def delete(self, key: str) -> bool:
        return bool(self._apply(Op.delete(key)))

    async def extend(self, key: str, ttl: float) -> bool:
        return bool(self._apply(Op.extend(key, ttl)))

    async def add_member(
        self, key: str, member: str, *, ttl: float | None = None
    ) -> tuple[bool, int]:
        added, size = self._apply(Op.add_member(key, member, ttl))
        return bool(added), int(size)

    async def remove_member(self, key: str, member: str) -> bool:
        return bool(self._apply(Op.remove_member(key, member)))

    async def members(self, key: str) -> builtins.set[str]:
        result: builtins.set[str] = self._apply(Op.members(key))
        return result

    async def batch(self, ops: Sequence[Op]) -> list[Any]:
        return [self._apply(op) for op in ops]

    async def signal(self, key: str, *, ttl: float | None = None) -> None:
        self._signals.add(key)
        if ttl is not None:
            self._values.setdefault(key, "1")
            self._expiry[key] = self._clock() + ttl
        running = asyncio.get_running_loop()
        for fut in self._waiters.pop(key, []):
            loop = fut.get_loop()
            # A waiter of an event loop that has since closed (an earlier asyncio.run) is
            # gone with it: nothing to wake. One of this loop is woken without the self-pipe
            # write (a system call) that waking another thread's loop needs.
            if fut.done() or loop.is_closed():
                continue
            if loop is running:
                loop.call_soon(_resolve, fut, key)
            else:
                loop.call_soon_threadsafe(_resolve, fut, key)

    async def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        for key in keys:
            self._live(key)
            if key in self._signals:
                return key
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._waiters.setdefault(key, []).append(fut)
        try:
            # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that arrives as
            # the signal does (CPython gh-86296), and the cancelled waiter would go on.
            async with asyncio.timeout(timeout):
                return await fut
        except TimeoutError:
            return None
        finally:
            for key in keys:
                waiting = self._waiters.get(key)
                if waiting and fut in waiting:
                    waiting.remove(fut)

    async def close(self) -> None:
        return None


def _resolve(fut: asyncio.Future[str], key: str) -> None:
    if not fut.done():
        fut.set_result(key)
