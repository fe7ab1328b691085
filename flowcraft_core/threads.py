"""The threads that sync node code runs in, one pool per engine, sized by its concurrency.

Python cannot stop a thread. A sync attempt that times out (or whose job is cancelled) is
*abandoned*: the attempt fails at once and the job moves on (retry, fallback, failure), while
its thread runs the function to its end and the result is discarded. Each abandonment is logged
and counted (:attr:`NodeThreads.abandoned` running now, :attr:`NodeThreads.abandoned_total`
ever). The pool has ``size`` spare threads to stand in for abandoned ones, so up to ``size``
of them never cost the engine a slot; beyond that, new sync attempts wait for a thread, and the
warning says so.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: The pool of the engine executing the current node; sync implementations run in it (see
#: :mod:`flowcraft_core.registry`). Unset outside an engine: the event loop's default executor.
CURRENT: contextvars.ContextVar[NodeThreads | None] = contextvars.ContextVar(
    "flowcraft_node_threads", default=None
)


async def in_thread(fn: Callable[[Any], Any], arg: Any) -> Any:
    """``fn(arg)`` in a thread: the executing engine's pool (:data:`CURRENT`), else the event
    loop's default executor. Whatever ``fn`` raises is raised here, in the caller's frame."""
    threads = CURRENT.get()
    if threads is not None:
        return await threads.run(fn, arg)
    try:
        return await asyncio.to_thread(_carrying, fn, arg)
    except _Carried as carried:
        raise carried.exc from None


class _Carried(Exception):
    """A ``GeneratorExit`` that sync code raised in a thread, on its way to the caller.

    asyncio hands a future's exception to the awaiting task by throwing it into the task's
    outermost coroutine, and a ``GeneratorExit`` thrown there does not travel down the chain
    of awaits: each awaited coroutine is closed instead (PEP 380), so it would skip every
    handler between the consumer and the node, the engine's included, and end the consumer.
    Wrapped, it reaches the awaiting frame as an ordinary exception and is raised from there."""

    def __init__(self, exc: GeneratorExit) -> None:
        super().__init__(exc)
        self.exc = exc


def _carrying(fn: Callable[[Any], Any], arg: Any) -> Any:
    try:
        return fn(arg)
    except GeneratorExit as exc:
        raise _Carried(exc) from None


class NodeThreads:
    """``size`` threads for sync attempts in flight, plus ``size`` for abandoned ones."""

    _process_lock = threading.Lock()
    _process_abandoned = 0

    @classmethod
    def abandoned_in_process(cls) -> int:
        """Abandoned threads of every pool in this process that are still running node code
        (what a process about to exit would wait for)."""
        with cls._process_lock:
            return cls._process_abandoned

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.abandoned = 0
        self.abandoned_total = 0
        self._lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2 * self.size, thread_name_prefix="flowcraft-node"
        )

    async def run(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        """``fn(arg)`` in a thread of this pool, with the caller's context variables."""
        future = self._executor.submit(contextvars.copy_context().run, _carrying, fn, arg)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.cancel() and not future.done():
                self._abandon(fn, future)
            raise
        except _Carried as carried:
            raise carried.exc from None

    def _abandon(self, fn: Callable[[Any], Any], future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self.abandoned += 1
            self.abandoned_total += 1
            now = self.abandoned
        with NodeThreads._process_lock:
            NodeThreads._process_abandoned += 1
        crowded = (
            f"; beyond {self.size}, new sync attempts wait for a thread" if now > self.size else ""
        )
        log.warning(
            "sync node code %s was abandoned (timed out or cancelled); Python cannot stop its "
            "thread, which runs on until the function returns (%d such thread(s) now%s)",
            getattr(fn, "__qualname__", fn),
            now,
            crowded,
        )
        future.add_done_callback(self._returned)

    def _returned(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self.abandoned -= 1
        with NodeThreads._process_lock:
            NodeThreads._process_abandoned -= 1

    def close(self) -> None:
        """Start no more threads; running ones (abandoned ones too) run to their end."""
        self._executor.shutdown(wait=False, cancel_futures=True)
