"""The Dramatiq glue every Dramatiq-backed queue shares, whatever its broker.

A driver subclasses :class:`DramatiqQueue` and says how to build its broker; the queue, the
consumer (an in-process Dramatiq worker feeding an async handler), the :class:`Redeliver`
middleware and the JSON-only check come from here. It depends on ``flowcraft_core``'s public
protocols and on Dramatiq, nothing else.
"""

from flowcraft_dramatiq.consumer import ACTOR_NAME, DramatiqConsumer
from flowcraft_dramatiq.encoder import require_json
from flowcraft_dramatiq.queue import DramatiqQueue, delay_ms
from flowcraft_dramatiq.redeliver import Redeliver

__all__ = [
    "ACTOR_NAME",
    "DramatiqConsumer",
    "DramatiqQueue",
    "Redeliver",
    "delay_ms",
    "require_json",
]
