"""Dramatiq's Redis broker, configured from :class:`RedisSettings`, able to enqueue a batch of
messages in one transaction."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from flowcraft_redis.url import RedisSettings

#: The Dramatiq queue every job travels on. Deployments are kept apart by the namespace.
QUEUE_NAME = "flowcraft"


def namespace(settings: RedisSettings) -> str:
    """Dramatiq's key prefix: its queues, acks and heartbeats live under it."""
    return f"{settings.prefix}:dramatiq"


class _Batchable:
    """Dramatiq's dispatch script, sent into the calling thread's pipeline while that thread
    is enqueueing a batch, and run at once otherwise."""

    def __init__(self, script: Any, local: threading.local) -> None:
        self._script = script
        self._local = local

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        pipe = getattr(self._local, "pipe", None)
        return self._script(keys=keys, args=args, client=client or pipe)


class FlowcraftBroker(RedisBroker):
    """A :class:`dramatiq.brokers.redis.RedisBroker` for one deployment.

    Its tunables come from the settings: ``heartbeat_timeout`` (a worker silent that long is
    dead), ``maintenance_chance`` (how many calls look for dead workers and requeue their
    unacknowledged messages). :meth:`enqueue_batch` sends many messages in one MULTI/EXEC.
    """

    def __init__(
        self,
        settings: RedisSettings,
        client: redis.Redis,
        middleware: list[Middleware] | None = None,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            client=client,
            namespace=namespace(settings),
            middleware=middleware or [],
            heartbeat_timeout=round(settings.heartbeat * 1000),
            maintenance_chance=max(1, round(settings.maintenance * MAINTENANCE_SCALE)),
        )
        self.settings = settings
        # Dramatiq enqueues through self.scripts["dispatch"]; routing that one script through a
        # thread's pipeline batches enqueues without re-implementing Dramatiq's message layout.
        self._batch = threading.local()
        self.scripts["dispatch"] = _Batchable(self.scripts["dispatch"], self._batch)

    def enqueue_batch(self, messages: Sequence[tuple[Message[Any], int | None]]) -> None:
        """Enqueue ``(message, delay_ms)`` pairs in one MULTI/EXEC: all or none (and two round
        trips, the first checking that the script is loaded)."""
        if len(messages) == 1:
            message, delay = messages[0]
            self.enqueue(message, delay=delay)
            return
        with self.client.pipeline(transaction=True) as pipe:
            self._batch.pipe = pipe
            try:
                for message, delay in messages:
                    self.enqueue(message, delay=delay)
            finally:
                self._batch.pipe = None
            pipe.execute()
