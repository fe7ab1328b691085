"""Dramatiq's Redis broker, configured from :class:`RedisSettings`, able to hand over the
script calls that enqueue messages instead of running them."""

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


class _Dispatch:
    """Dramatiq's dispatch script as its broker calls it; while the calling thread collects
    (:meth:`FlowcraftBroker.dispatches`), a call is recorded instead of run."""

    def __init__(self, script: Any, local: threading.local) -> None:
        self._script = script
        self._local = local

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        calls = getattr(self._local, "calls", None)
        if calls is None:
            return self._script(keys=keys, args=args, client=client)
        calls.append((tuple(keys or ()), tuple(args or ())))
        return None


class FlowcraftBroker(RedisBroker):
    """A :class:`dramatiq.brokers.redis.RedisBroker` for one deployment.

    Its tunables come from the settings: ``heartbeat_timeout`` (a worker silent that long is
    dead), ``maintenance_chance`` (how many calls look for dead workers and requeue their
    unacknowledged messages). :meth:`dispatches` gives the script calls that enqueue messages
    without running them, so they can travel on the event loop's connection.
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
        # Dramatiq enqueues through self.scripts["dispatch"]; collecting that one script's calls
        # lets them be sent elsewhere without re-implementing Dramatiq's message layout.
        self._collecting = threading.local()
        text = self.scripts["dispatch"].script
        self.dispatch_text = bytes(text).decode() if not isinstance(text, str) else text
        """The text of Dramatiq's dispatch script (what :meth:`dispatches`' calls run)."""
        self.scripts["dispatch"] = _Dispatch(self.scripts["dispatch"], self._collecting)

    def prepare(self) -> None:
        """Make the one blocking call Dramatiq's dispatch makes on its first use (reading the
        server's Lua stack size), so :meth:`dispatches` makes none."""
        self._max_unpack_size()  # type: ignore[no-untyped-call]

    def dispatches(
        self, messages: Sequence[Message[Any]], delay: int | None
    ) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
        """The ``(keys, args)`` of the dispatch script calls that enqueue ``messages`` with
        ``delay`` ms, exactly as Dramatiq's own ``enqueue`` makes them (a Redis message id
        each, the delay queue and due time, the maintenance draw), none of them run. Call
        :meth:`prepare` once first (on a thread that may block)."""
        calls: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
        self._collecting.calls = calls
        try:
            for message in messages:
                self.enqueue(message, delay=delay)
        finally:
            self._collecting.calls = None
        return calls
