"""The RabbitMQ queue: the shared Dramatiq queue on Dramatiq's RabbitMQ broker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import pika.exceptions
from dramatiq.common import dq_name, xq_name
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Middleware

from flowcraft_amqp.broker import FlowcraftRabbitmqBroker
from flowcraft_amqp.url import MAX_BACKOFF_MS, AmqpSettings, settings_of
from flowcraft_core.errors import DriverError
from flowcraft_core.protocols.queue import Handler
from flowcraft_dramatiq import DramatiqConsumer, DramatiqQueue

T = TypeVar("T")


def _reason(exc: BaseException) -> str:
    """One line saying why: pika's own exception (Dramatiq wraps it), whose repr carries the
    cause (refused, authentication, unknown vhost) where its str is often empty."""
    if isinstance(exc, BrokerConnectionError) and exc.args and isinstance(exc.args[0], Exception):
        exc = exc.args[0]
    text = (
        repr(exc) if isinstance(exc, pika.exceptions.AMQPError) else f"{type(exc).__name__}: {exc}"
    )
    return " ".join(text.split())


class _Quiet(logging.Filter):
    """Drops pika's connection-failure records unless logging is verbose: the failure reaches
    the caller as one DriverError line instead of a page of tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL or logging.getLogger().isEnabledFor(logging.INFO)


for _name in (
    "pika.adapters.utils.connection_workflow",
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.blocking_connection",
    "pika.connection",
):
    logging.getLogger(_name).addFilter(_Quiet())


class AmqpQueue(DramatiqQueue):
    """Jobs delivered at least once, with delays, through Dramatiq's RabbitMQ broker (see
    :class:`~flowcraft_dramatiq.DramatiqQueue`).

    RabbitMQ gives a message back when the connection holding it unacknowledged closes: a
    worker process that dies has its jobs redelivered at once, and a stopping consumer hands
    back what it prefetched by closing its connection. A handler that raises, or is cancelled,
    gets its job again after a backoff (100 ms doubling to 5 s). Delayed jobs wait on Dramatiq's
    delay queue (``<queue>.DQ``), held unacknowledged by a consumer until due, at most
    ``max_hold`` seconds at a time. A broker that cannot be reached is a :class:`DriverError`
    naming the URL.
    """

    driver = "amqp"
    broker: FlowcraftRabbitmqBroker

    def __init__(self, url: str | AmqpSettings, *, threads: int = 4) -> None:
        self.settings = settings_of(url)
        super().__init__(
            queue_name=self.settings.queue,
            poll=self.settings.poll,
            max_hold=self.settings.max_hold,
            max_backoff=MAX_BACKOFF_MS / 1000,
            threads=threads,
        )

    def new_broker(self, middleware: list[Middleware]) -> FlowcraftRabbitmqBroker:
        return FlowcraftRabbitmqBroker(self.settings, middleware)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await super()._call(fn, *args, **kwargs)
        except (BrokerConnectionError, pika.exceptions.AMQPError, OSError) as exc:
            raise DriverError(
                f"cannot reach RabbitMQ at {self.settings.masked}: {_reason(exc)}"
            ) from None

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> DramatiqConsumer:
        """As :meth:`DramatiqQueue.consume`, after proving RabbitMQ answers (Dramatiq's consumer
        threads would otherwise log and retry a refused connection forever)."""
        await self.ping()
        return await super().consume(handler, concurrency=concurrency)

    async def size(self) -> int:
        """Jobs waiting or delayed that no consumer holds (RabbitMQ does not count what a
        consumer holds unacknowledged, delayed jobs included)."""
        ready, delayed, _ = await self._call(self.broker.get_queue_message_counts, self.queue_name)
        return int(ready) + int(delayed)

    async def purge(self) -> None:
        """Drop every job of this deployment's queues that no consumer holds (tests)."""
        await self._call(self.broker.flush, self.queue_name)

    async def ping(self) -> None:
        """Raise :class:`DriverError` naming the URL if RabbitMQ does not answer."""
        await self._call(lambda: self.broker.connection)

    async def delete(self) -> None:
        """Delete the deployment's queues and every job in them (tests)."""

        def delete() -> None:
            for name in (self.queue_name, dq_name(self.queue_name), xq_name(self.queue_name)):
                self.broker.channel.queue_delete(name)

        await self._call(delete)
