"""The three backend protocols. The engine talks to backends only through these."""

from flowcraft_core.protocols.context import MISSING, ContextStore, Missing
from flowcraft_core.protocols.coordination import BatchBacked, CoordinationStore, Op
from flowcraft_core.protocols.queue import Consumer, Handler, Job, Queue

__all__ = [
    "MISSING",
    "BatchBacked",
    "Consumer",
    "ContextStore",
    "CoordinationStore",
    "Handler",
    "Job",
    "Missing",
    "Op",
    "Queue",
]
