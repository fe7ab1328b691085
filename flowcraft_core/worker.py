"""A worker: consumes the queue in this process and hands each job to the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pluggy

from flowcraft_core.drivers import Backends
from flowcraft_core.engine import Checkpoint, Engine, EngineSettings
from flowcraft_core.engine.reconcile import reconcile
from flowcraft_core.protocols import Consumer
from flowcraft_core.registry import Registry

log = logging.getLogger(__name__)


class Worker:
    """Runs ``concurrency`` jobs at a time until stopped. With ``reconcile_every`` seconds, it
    also sweeps for runs without progress for ``stale_after`` seconds and re-enqueues their
    ready frontier (safe to run anywhere, any number of times)."""

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
        )
        self.reconcile_every = reconcile_every
        self.stale_after = stale_after
        self._consumer: Consumer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = await self.backends.queue.consume(
            self.engine.handle, concurrency=self.concurrency
        )
        if self.reconcile_every:
            self._sweeper = asyncio.create_task(self._sweep(self.reconcile_every))

    async def _sweep(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                revived = await reconcile(self.backends, older_than=self.stale_after)
                if revived:
                    log.info("reconcile re-enqueued the frontier of %d run(s)", len(revived))
            except Exception:  # the sweeper must outlive a backend hiccup
                log.warning("reconcile sweep failed", exc_info=True)

    async def stop(self, *, drain: bool = True) -> None:
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
