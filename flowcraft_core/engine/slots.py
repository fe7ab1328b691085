"""Slots: at most so many holders at once, first come, first served.

What bounds the jobs a worker handles at once, from load to commit, to its concurrency (the
queue bounds only its handlers, and a message of siblings runs several jobs in one handler).
``asyncio.Semaphore`` would do, but costs several calls and a coroutine per take even when a
slot is free, on a path every delivery takes; here a free slot is taken by one plain call.
One event loop at a time uses it (waiters are futures of the loop that waits).
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    def __init__(self, size: int) -> None:
        self.free = max(1, size)
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """Take a slot if one is free and nobody waits for it (no await)."""
        if self.free and not self._waiters:
            self.free -= 1
            return True
        return False

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for a slot, first come first served; False if ``timeout`` seconds passed
        first. A cancelled waiter takes no slot."""
        if self.take():
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter
            return True
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot just as the wait ended: pass it on
            else:
                waiter.cancel()  # left in the queue, where give() skips it
            if isinstance(exc, TimeoutError):
                return False
            raise

    def give(self) -> None:
        """Give a slot back: to the first waiter still waiting, else to the free ones."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
