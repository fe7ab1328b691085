"""What handling one delivery of one job holds and comes to: the small types the engine and
the ``subflow`` built-in share (a module of their own, so both import them at the top)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from flowcraft_core.engine.compiled import CompiledFlow, Node
from flowcraft_core.engine.state import Loaded, RunState
from flowcraft_core.protocols import Job

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class Stepped:
    """What handling one job came to."""

    ready: list[tuple[Job, bool]] = field(default_factory=list)
    """The targets it made ready: (job, live?). A dead one is skipped, a live one run."""
    successor: Delivery | None = None
    """A ready live target whose load came back with the completion (its lease taken)."""
    enqueue: list[Job] = field(default_factory=list)
    """Set by :meth:`Engine._continue`: the live targets this delivery does not go on with."""


NOTHING = Stepped()
"""Nothing made ready (never mutated: ``_continue`` leaves a step without live targets alone)."""


@dataclass(slots=True, eq=False)
class Delivery:
    """One delivery of one job, loaded: what handling it owns, passed from step to step.

    It is the one owner of the lease its load took (``held``). The lease is given back exactly
    once: by the run-state step that releases it as part of its writes (:meth:`given_back_by`),
    or by :meth:`give_back` when handling the job ends without one (an early exit, a crash), so
    a redelivery of this very job is not locked out until the lease lapses."""

    job: Job
    flow: CompiledFlow
    node: Node
    loaded: Loaded
    held: bool
    """Whether this delivery still holds the job's lease (at first: whether its load took it)."""
    may_continue: bool = False
    """Whether this delivery may go on inline with a successor (so prefetches its load)."""
    started: float | None = None
    """When this delivery began executing node code (its attempt's history record)."""

    async def given_back_by(
        self, step: Awaitable[T], *, when: Callable[[T], bool] | None = None
    ) -> T:
        """Await ``step``, a run-state step that releases the lease (always, or ``when`` its
        result says so): from then on the lease is no longer this delivery's to give back."""
        result = await step
        if when is None or when(result):
            self.held = False
        return result

    async def give_back(self, state: RunState) -> None:
        """Release the lease if this delivery still holds it; never raises (it lapses anyway,
        and the outcome that ended the handling must not be masked)."""
        if not self.held:
            return
        self.held = False
        try:
            await state.release(self.job)
        except Exception:
            log.warning("could not release the lease of %s", self.job, exc_info=True)
