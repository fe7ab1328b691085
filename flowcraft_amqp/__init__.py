"""The RabbitMQ driver: a Dramatiq queue on RabbitMQ, and nothing else (context and
coordination come from another driver). Selected by ``amqp://`` and ``amqps://`` URLs (see
:mod:`.url`). Needs the ``amqp`` extra (pika) for :class:`~flowcraft_amqp.queue.AmqpQueue`."""

from flowcraft_amqp.url import AmqpSettings, parse_url

__all__ = ["AmqpSettings", "parse_url"]
