"""Every pluggy hook of flowcraft, in one place.

Two families:

* **Driver hooks** (entry-point group ``flowcraft.drivers``): build backends from URLs. They are
  ``firstresult``: a driver returns None for a URL whose scheme it does not own.
* **Lifecycle hooks** (entry-point group ``flowcraft.plugins``, or registered in code): observe a
  run. They return nothing and must be quick; they are called in the worker that does the work,
  so on a distributed backend each worker sees only its own events. They are only ever called
  through :class:`flowcraft_core.plugins.Guests`: an implementation that raises is logged with
  its plugin's name and the others still run, so a plugin never fails or stalls a job.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from flowcraft_core.engine.state import RunState
    from flowcraft_core.protocols import ContextStore, CoordinationStore, Job, Queue

PROJECT = "flowcraft"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass(frozen=True)
class DriverInfo:
    """What a driver says about itself: its name, the URL schemes it owns, what it provides
    (``queue``, ``context``, ``coordination``) and its capabilities (see
    :mod:`flowcraft_conformance.capabilities` for the names the conformance suite knows)."""

    name: str
    schemes: tuple[str, ...]
    provides: tuple[str, ...] = ("queue", "context", "coordination")
    capabilities: dict[str, Any] = field(default_factory=dict)
    description: str = ""


# -- driver hooks ---------------------------------------------------------------------------


@hookspec
def flowcraft_driver_info() -> DriverInfo:  # type: ignore[empty-body]
    """Called when drivers are listed or a URL is resolved. Return this driver's
    :class:`DriverInfo`."""


@hookspec(firstresult=True)
def flowcraft_make_queue(url: str) -> Queue | None:
    """Called to build the queue for ``url``. Return a :class:`Queue` if this driver owns the
    URL's scheme, else None."""


@hookspec(firstresult=True)
def flowcraft_make_context(url: str) -> ContextStore | None:
    """Called to build the context store for ``url``; None if the scheme is not this driver's."""


@hookspec(firstresult=True)
def flowcraft_make_coordination(url: str) -> CoordinationStore | None:
    """Called to build the coordination store for ``url``; None if not this driver's."""


@hookspec(firstresult=True)
def flowcraft_make_run_state(
    context: ContextStore, coordination: CoordinationStore, ttl: float
) -> RunState | None:
    """Optional optimisation. Called once per engine and client with its two stores and the
    TTL of a run's bookkeeping keys (seconds): a driver that owns both stores may return a
    fused :class:`flowcraft_core.engine.state.RunState` that does each step in one round trip.
    It must keep that class's contract; the conformance contract ``run state`` checks it
    against the reference, :class:`~flowcraft_core.engine.state.ComposedRunState`. Return None
    to let the engine compose the steps from the two protocols (always correct, just more round
    trips)."""


@hookspec(firstresult=True)
def flowcraft_discard(url: str) -> bool | Awaitable[object] | None:
    """Optional; never called by the engine. The conformance suite calls it when a test ends,
    with the URL of each namespace the test opened (made private by the driver's ``isolation``
    capability), after closing the components built from it: delete everything the driver
    stored under that URL's namespace (its keys, rows or queues), so that test runs leave
    nothing behind on a shared server. Return None if the scheme is not this driver's; else do
    it and return True, or return an awaitable that does it (awaited on the suite's loop). A
    driver without it keeps working: its namespaces stay until their TTLs end."""


# -- lifecycle hooks ------------------------------------------------------------------------


@hookspec
def flowcraft_run_started(run_id: str, flow_id: str, input: Any) -> None:
    """Called by the client after a run has been stored and its start jobs enqueued."""


@hookspec
def flowcraft_run_headers(run_id: str, flow_id: str) -> dict[str, str] | None:
    """Called by the client as it starts a run, before the run is stored. Return headers
    (str → str) for every job of the run to carry to whichever worker takes it, on every queue
    — a trace context, say — or None. The plugins' headers are merged (on a clash, the plugin
    called first wins: the last registered); a plugin whose headers are not strings, or that
    raises, is logged and left out; all of them together take at most
    :data:`flowcraft_core.protocols.queue.MAX_HEADER_BYTES`. They are stored with the run, so
    the jobs that a resume, a retry or reconcile enqueues later carry them too. Lifecycle
    hooks that get a job read them as ``job.headers``."""


@hookspec
def flowcraft_run_finished(run_id: str, status: str, error: dict[str, Any] | None) -> None:
    """Called once, by the worker that wrote the run's final status."""


@hookspec
def flowcraft_node_started(job: Job) -> None:
    """Called before a node attempt executes (not when a committed node is skipped)."""


@hookspec
def flowcraft_node_finished(job: Job, output: Any, action: str | None) -> None:
    """Called after a node's result was committed by this worker."""


@hookspec
def flowcraft_node_skipped(job: Job) -> None:
    """Called when a node is skipped because none of its incoming edges was taken (its own
    edges are then dead too), by the worker that recorded it."""


@hookspec
def flowcraft_node_failed(job: Job, error: dict[str, Any]) -> None:
    """Called when a node failed its last attempt (and any fallback) and fails the run."""


@hookspec
def flowcraft_node_retried(job: Job, error: dict[str, Any], delay: float) -> None:
    """Called when a failed attempt is scheduled again after ``delay`` seconds."""


@hookspec
def flowcraft_expression_failed(job: Job, where: str, error: str) -> None:
    """An edge condition (then false) or transform (then null) of ``job``'s node could not be
    evaluated; ``where`` names the edge and which expression. Not called under
    ``EngineSettings.strict``, which fails the run instead."""


@hookspec
def flowcraft_job_enqueued(job: Job, delay: float) -> None:
    """Called for every job the engine or client enqueues."""


LIFECYCLE = frozenset(
    spec.__name__
    for spec in (
        flowcraft_run_started,
        flowcraft_run_finished,
        flowcraft_node_started,
        flowcraft_node_finished,
        flowcraft_node_skipped,
        flowcraft_node_failed,
        flowcraft_node_retried,
        flowcraft_expression_failed,
        flowcraft_job_enqueued,
    )
)
"""The lifecycle family's names: the hooks :class:`flowcraft_core.plugins.Guests` calls as
attributes. (``flowcraft_run_headers`` returns a value: it is :meth:`Guests.run_headers`.)"""
