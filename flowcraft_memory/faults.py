"""Fault injection for the in-memory queue: the failures a real queue has, on demand.

* ``duplicate``: deliver every matching job twice (two deliveries of one enqueue).
* ``crash_before_ack``: after the handler returns, behave as if the worker died before
  acknowledging: the job is delivered again.

Both take a predicate over ``(job, delivery_number)`` (or True for all), so a test can aim
at one node or one delivery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from flowcraft_core.protocols.queue import Job

Predicate = Callable[[Job, int], bool]


def _never(job: Job, delivery: int) -> bool:
    return False


def _first_delivery(job: Job, delivery: int) -> bool:
    return delivery == 1


@dataclass
class Faults:
    duplicate: Predicate = _never
    crash_before_ack: Predicate = _never
    duplicated: int = field(default=0, init=False)
    crashed: int = field(default=0, init=False)

    @classmethod
    def duplicate_all(cls) -> Faults:
        return cls(duplicate=_first_delivery)

    @classmethod
    def crash_each_once(cls) -> Faults:
        """Every job's first delivery 'crashes' after its handler ran."""
        return cls(crash_before_ack=_first_delivery)
