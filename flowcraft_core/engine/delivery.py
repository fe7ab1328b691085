"""What handling one delivery of one job holds and comes to: the small types the engine and
the ``subflow`` built-in share (a module of their own, so both import them at the top)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from flowcraft_core.engine.state import Loaded
from flowcraft_core.protocols import Job

T = TypeVar("T")


@dataclass(slots=True)
class Stepped:
    """What handling one job came to."""

    ready: list[tuple[Job, bool]] = field(default_factory=list)
    """The targets it made ready: (job, live?). A dead one is skipped, a live one run."""
    successor: tuple[Job, Loaded] | None = None
    """A ready live target whose load came back with the completion (its lease taken)."""
    enqueue: list[Job] = field(default_factory=list)
    """Set by :meth:`Engine._continue`: the live targets this delivery does not go on with."""


NOTHING = Stepped()
"""Nothing made ready (never mutated: ``_continue`` leaves a step without live targets alone)."""


class Lease:
    """The lease one delivery took on its job when it loaded it, and its one owner.

    It is given back exactly once: by the run-state step that releases it as part of its writes
    (:meth:`given_back_by`), or by the engine when handling the job ends without one."""

    __slots__ = ("held", "job", "started")

    def __init__(self, job: Job, held: bool) -> None:
        self.job = job
        self.held = held
        self.started: float | None = None  # when this delivery began executing node code

    async def given_back_by(
        self, step: Awaitable[T], *, when: Callable[[T], bool] | None = None
    ) -> T:
        """Await ``step``, a run-state step that releases the lease (always, or ``when`` its
        result says so): from then on the lease is no longer this delivery's to give back."""
        result = await step
        if when is None or when(result):
            self.held = False
        return result
