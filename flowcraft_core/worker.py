"""A worker: consumes the queue in this process and hands each job to the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.catalog import as_catalog
from flowcraft_core.drivers import Backends
from flowcraft_core.engine import Checkpoint, Engine, EngineSettings
from flowcraft_core.engine.reconcile import reconcile
from flowcraft_core.protocols import Consumer
from flowcraft_core.registry import Registry

log = logging.getLogger(__name__)


class Worker:
    """Runs ``concurrency`` jobs at a time until stopped. With ``reconcile_every`` seconds, it
    also sweeps for runs without progress for ``stale_after`` seconds and re-enqueues their
    ready frontier (safe to run anywhere, any number of times).

    Async node code that blocks the event loop (``time.sleep``, sync I/O) stalls every job of
    the worker, and its ``timeout`` cannot interrupt it: a timeout is only noticed at an
    ``await``. The worker watches the loop and logs a warning naming the nodes that were
    executing whenever it was blocked for more than ``stall_warning`` seconds."""

    def __init__(
        self,
        registry: Registry,
        backends: Backends,
        *,
        concurrency: int = 8,
        settings: EngineSettings | None = None,
        pm: pluggy.PluginManager | None = None,
        checkpoint: Checkpoint | None = None,
        reconcile_every: float | None = None,
        stale_after: float = 300.0,
        stall_warning: float = 1.0,
        blueprints: Iterable[Blueprint] | Mapping[str, Blueprint] = (),
    ) -> None:
        self.backends = backends
        self.concurrency = concurrency
        self.engine = Engine(
            registry,
            backends.queue,
            backends.context,
            backends.coordination,
            settings=settings,
            pm=pm,
            checkpoint=checkpoint,
            threads=concurrency,
            blueprints=as_catalog(blueprints),
        )
        self.reconcile_every = reconcile_every
        self.stale_after = stale_after
        self._consumer: Consumer | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.stall_warning = stall_warning
        self.stalls = 0
        """Times the event loop was seen blocked for longer than ``stall_warning``."""
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = await self.backends.queue.consume(
            self.engine.handle, concurrency=self.concurrency
        )
        if self.reconcile_every:
            self._sweeper = asyncio.create_task(self._sweep(self.reconcile_every))
        if self.stall_warning > 0:
            self._watchdog = asyncio.create_task(self._watch(self.stall_warning, time.monotonic()))

    async def _watch(self, limit: float, since: float) -> None:
        # Lateness is measured from the previous wake-up (the first time, from the task's
        # creation): a node that blocks before this task first runs is caught too.
        tick = min(0.25, limit / 2)
        before = since
        while True:
            executing = list(self.engine.executing.values())
            await asyncio.sleep(tick)
            now = time.monotonic()
            late, started_after = now - before - tick, before
            before = now
            if late > limit:
                self.stalls += 1
                executing += [n for t, n in self.engine.started if t >= started_after]
                executing = list(dict.fromkeys(executing))
                log.warning(
                    "the event loop was blocked for %.1f s while executing %s: async node code "
                    "must not block (time.sleep, sync I/O); its timeout cannot interrupt it. "
                    "Make it a sync function (it then runs in a thread) or await instead",
                    late,
                    ", ".join(executing) or "no node",
                )

    async def _sweep(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                revived = await reconcile(
                    self.backends, older_than=self.stale_after, state=self.engine.state
                )
                if revived:
                    log.info("reconcile re-enqueued the frontier of %d run(s)", len(revived))
            except Exception:  # the sweeper must outlive a backend hiccup
                log.warning("reconcile sweep failed", exc_info=True)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop consuming. With ``drain``, in-flight jobs finish first; without, they are
        cancelled and handed back to the queue (redelivered). A stop without ``drain`` while a
        draining one waits makes that one end too."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._consumer is not None:
            await self._consumer.stop(drain=drain)
            self._consumer = None
        self.engine.threads.close()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
