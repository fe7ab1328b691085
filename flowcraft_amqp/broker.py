"""Dramatiq's RabbitMQ broker, configured from :class:`AmqpSettings`."""

from __future__ import annotations

from typing import Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import xq_name
from dramatiq.middleware import Middleware

from flowcraft_amqp.url import AmqpSettings


class FlowcraftRabbitmqBroker(RabbitmqBroker):
    """A :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker` for one deployment.

    Publisher confirms are on: an enqueue returns only once RabbitMQ has taken the message, so
    a connection that died unnoticed cannot swallow a job (without confirms ``basic_publish``
    only writes to a socket). With ``expires`` set, every queue of the deployment carries
    ``x-expires``.
    """

    def __init__(self, settings: AmqpSettings, middleware: list[Middleware] | None = None) -> None:
        super().__init__(url=settings.url, middleware=middleware or [], confirm_delivery=True)
        self.settings = settings

    def _expiry(self) -> dict[str, Any]:
        expires = self.settings.expires
        return {} if expires is None else {"x-expires": round(expires * 1000)}

    def _build_queue_arguments(self, queue_name: str) -> dict[str, Any]:
        build = super()._build_queue_arguments
        return {**build(queue_name), **self._expiry()}  # type: ignore[no-untyped-call]

    def _declare_xq_queue(self, queue_name: str) -> Any:
        if not self._expiry():
            return super()._declare_xq_queue(queue_name)  # type: ignore[no-untyped-call]
        # Dramatiq's own declaration with x-expires added (its arguments are not a hook).
        return self.channel.queue_declare(
            queue=xq_name(queue_name),
            durable=True,
            arguments={"x-message-ttl": DEAD_MESSAGE_TTL, **self._expiry()},
        )
