"""The RabbitMQ driver's plugin: ``amqp://`` and ``amqps://`` URLs (see :mod:`flowcraft_amqp.url`).

It provides a queue only: pair it with another driver's context and coordination, e.g.
``FLOWCRAFT_QUEUE=amqp://… FLOWCRAFT_BACKEND=postgresql://…``. Registered through the
``flowcraft.drivers`` entry point, exactly as a third-party driver would be. Nothing here
imports pika: without the ``amqp`` extra the driver still lists itself, and an ``amqp://`` URL
says what to install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flowcraft_amqp.url import SCHEMES, AmqpSettings, parse_url
from flowcraft_core.hookspecs import DriverInfo, hookimpl

if TYPE_CHECKING:
    from flowcraft_amqp.queue import AmqpQueue

_DEFAULTS = AmqpSettings()


@hookimpl
def flowcraft_driver_info() -> DriverInfo:
    return DriverInfo(
        name="amqp",
        schemes=SCHEMES,
        provides=("queue",),
        capabilities={
            "delays": True,
            "redelivery_after_crash_s": round(_DEFAULTS.redelivery_bound, 3),
            "redelivery_after_error_s": round(_DEFAULTS.redelivery_after_error, 3),
            "delay_tolerance_s": 1.0,
            "multi_process": True,
            "isolation": "query:queue",
            "fault_injection": False,
        },
        description=(
            "Dramatiq queue on RabbitMQ (queue only). "
            "amqp://[user:password@]host[:port][/vhost][?queue=&poll=&expires=&<pika options>]"
        ),
    )


@hookimpl
def flowcraft_make_queue(url: str) -> AmqpQueue | None:
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    if scheme not in SCHEMES:
        return None
    settings = parse_url(url)  # says how to install pika if it is missing
    # Imported here: without the amqp extra the driver still lists itself and explains.
    from flowcraft_amqp.queue import AmqpQueue

    return AmqpQueue(settings)
