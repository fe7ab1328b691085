"""A sync facade over the async stores, for Hypothesis state machines (which are sync).

:class:`LoopThread` runs one event loop in a dedicated daemon thread; every store the suite opens
is created and used on that loop, so loop-bound resources (connection pools, asyncio queues)
stay on one loop for their whole life. :class:`SyncContextStore` and
:class:`SyncCoordinationStore` turn each protocol call into a blocking call on that loop.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import threading
from collections.abc import Awaitable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from flowcraft_core.protocols import ContextStore, CoordinationStore, Missing, Op

T = TypeVar("T")

DEFAULT_TIMEOUT = 120.0


class LoopThread:
    """An event loop running in its own thread until :meth:`stop`."""

    def __init__(self, name: str = "flowcraft-conformance-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, awaitable: Awaitable[T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        """Run ``awaitable`` on the loop and return its result (or raise its exception). After
        ``timeout`` seconds it is cancelled and :class:`TimeoutError` is raised."""
        future = asyncio.run_coroutine_threadsafe(_as_coroutine(awaitable), self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # Since Python 3.11 this is the builtin TimeoutError, which the awaitable itself may
            # raise: only a future still running has run out of time here.
            if future.done():
                raise
            future.cancel()
            raise TimeoutError(f"conformance call did not finish within {timeout}s") from None

    def stop(self) -> None:
        """Cancel whatever is still running on the loop, then stop and close it."""
        if self.loop.is_closed():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_all(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            if not self._thread.is_alive():
                self.loop.close()


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _run(loop: LoopThread, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run(coro)


class SyncContextStore:
    """Blocking calls on a :class:`ContextStore` living on ``loop``."""

    def __init__(self, store: ContextStore, loop: LoopThread) -> None:
        self.store = store
        self.loop = loop

    def get(self, run_id: str, key: str) -> Any | Missing:
        return _run(self.loop, self.store.get(run_id, key))

    def get_many(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        return _run(self.loop, self.store.get_many(run_id, list(keys)))

    def get_all(self, run_id: str) -> dict[str, Any]:
        return _run(self.loop, self.store.get_all(run_id))

    def set(self, run_id: str, key: str, value: Any) -> None:
        _run(self.loop, self.store.set(run_id, key, value))

    def delete(self, run_id: str, key: str) -> None:
        _run(self.loop, self.store.delete(run_id, key))

    def has(self, run_id: str, key: str) -> bool:
        return _run(self.loop, self.store.has(run_id, key))

    def patch(self, run_id: str, set: Mapping[str, Any], delete: Iterable[str] = ()) -> None:
        _run(self.loop, self.store.patch(run_id, set, list(delete)))

    def commit(self, run_id: str, guard: str, set: Mapping[str, Any]) -> bool:
        return _run(self.loop, self.store.commit(run_id, guard, set))

    def expire(self, run_id: str, seconds: float) -> None:
        _run(self.loop, self.store.expire(run_id, seconds))


class SyncCoordinationStore:
    """Blocking calls on a :class:`CoordinationStore` living on ``loop``."""

    def __init__(self, store: CoordinationStore, loop: LoopThread) -> None:
        self.store = store
        self.loop = loop

    def get(self, key: str) -> str | None:
        return _run(self.loop, self.store.get(key))

    def set(self, key: str, value: str, *, ttl: float | None = None) -> None:
        _run(self.loop, self.store.set(key, value, ttl=ttl))

    def set_if_absent(self, key: str, value: str, *, ttl: float | None = None) -> bool:
        return _run(self.loop, self.store.set_if_absent(key, value, ttl=ttl))

    def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        return _run(self.loop, self.store.incr(key, amount, ttl=ttl))

    def delete(self, key: str) -> bool:
        return _run(self.loop, self.store.delete(key))

    def extend(self, key: str, ttl: float) -> bool:
        return _run(self.loop, self.store.extend(key, ttl))

    def add_member(self, key: str, member: str, *, ttl: float | None = None) -> tuple[bool, int]:
        return _run(self.loop, self.store.add_member(key, member, ttl=ttl))

    def remove_member(self, key: str, member: str) -> bool:
        return _run(self.loop, self.store.remove_member(key, member))

    def members(self, key: str) -> builtins.set[str]:
        return _run(self.loop, self.store.members(key))

    def batch(self, ops: Sequence[Op]) -> list[Any]:
        return _run(self.loop, self.store.batch(ops))

    def signal(self, key: str, *, ttl: float | None = None) -> None:
        _run(self.loop, self.store.signal(key, ttl=ttl))

    def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        return _run(self.loop, self.store.wait_any(keys, timeout))
