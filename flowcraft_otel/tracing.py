"""The tracing plugin: lifecycle hooks → OpenTelemetry spans.

What a trace of one run holds (all in one trace, whichever workers did the work):

* ``run <blueprint>`` (kind PRODUCER): the start of the run, made by the client as it stores the
  run — a child of the span current there, so a run started while handling a request joins the
  request's trace. Its context is what every job of the run carries (``Job.headers``, through
  the process's propagator: W3C ``traceparent`` / ``tracestate`` and baggage unless
  ``OTEL_PROPAGATORS`` says otherwise).
* ``node <id>`` (kind CONSUMER): one per node attempt, a child of the run's span, from just
  before the node's code runs until its result is committed (``flowcraft.outcome``
  ``completed``), a retry is scheduled (``retried``) or the run fails with it (``failed``; the
  error as the span's status and an ``exception`` event).
* ``run <blueprint> finished``: made by the worker that wrote the final status, with
  ``flowcraft.outcome`` the run's status (when that worker ran a job of the run: a client's
  cancel makes none).

The trace begins where the run starts: a client that does not trace (no provider) gives its
jobs no trace context, and each worker's node spans are then roots of traces of their own.

Every span has the attributes in :data:`ATTRIBUTES` that apply. Spans go to the global tracer
provider unless one is given: set one up in code (the SDK, any exporter), or let
:func:`configure_from_env` build it from the standard variables — it does when
``OTEL_TRACES_EXPORTER`` or an ``OTEL_EXPORTER_OTLP_*ENDPOINT`` is set and nothing else set a
provider first; ``OTEL_SDK_DISABLED=true`` turns tracing off. Hooks are guests: whatever an
exporter does, a job never fails because of tracing.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from flowcraft_core.hookspecs import hookimpl
from flowcraft_core.protocols import Job

log = logging.getLogger(__name__)

BLUEPRINT_HEADER = "flowcraft-blueprint"
"""The header with the run's blueprint id, so a worker's spans name it without a read."""

RUN_ID = "flowcraft.run_id"
BLUEPRINT = "flowcraft.blueprint"
NODE = "flowcraft.node"
INSTANCE = "flowcraft.instance"
ATTEMPT = "flowcraft.attempt"
OUTCOME = "flowcraft.outcome"
ATTRIBUTES = (RUN_ID, BLUEPRINT, NODE, INSTANCE, ATTEMPT, OUTCOME)
"""The span attributes this plugin sets."""

OPEN_LIMIT = 10_000
"""Spans kept open at most (node attempts under way, runs being started): a span whose end
never comes (its worker lost the commit to a duplicate, say) is ended as ``abandoned`` when
the limit pushes it out, so memory stays bounded."""

PARENTS_LIMIT = 1_000
"""Runs whose parsed trace context is kept (oldest dropped first)."""

_configured = threading.Lock()
_done = False
_env_provider = False  # whether OTEL_PYTHON_TRACER_PROVIDER was set when configure_from_env ran
_UNKNOWN = object()


def configure_from_env() -> bool:
    """Build the global tracer provider from the standard ``OTEL_*`` variables, once per
    process, if they ask for one and none was set in code: a ``TracerProvider`` with the
    resource from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (default service name
    ``flowcraft``) and a batch processor per exporter in ``OTEL_TRACES_EXPORTER`` (default
    ``otlp``; the names of the ``opentelemetry_traces_exporter`` entry points, e.g.
    ``console``, ``otlp``, ``otlp_proto_http``; ``none`` for none). Returns whether it did."""
    global _done, _env_provider
    with _configured:
        if _done:
            return False
        _done = True
        env = os.environ
        _env_provider = OTEL_PYTHON_TRACER_PROVIDER in env
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        asked = "OTEL_TRACES_EXPORTER" in env or any(
            name in env
            for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        )
        if not asked or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            return False
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": "flowcraft"}).merge(
            OTELResourceDetector().detect()
        )
        if "OTEL_SERVICE_NAME" in env:
            resource = resource.merge(Resource({"service.name": env["OTEL_SERVICE_NAME"]}))
        provider = SdkTracerProvider(resource=resource)
        names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
        known = {ep.name: ep for ep in entry_points(group="opentelemetry_traces_exporter")}
        for name in names:
            if not name or name == "none":
                continue
            ep = known.get(name)
            if ep is None:
                log.warning(
                    "OTEL_TRACES_EXPORTER names %r, which no installed package provides "
                    "(installed: %s); its spans are dropped",
                    name,
                    ", ".join(sorted(known)) or "none",
                )
                continue
            provider.add_span_processor(BatchSpanProcessor(ep.load()()))
        trace.set_tracer_provider(provider)
        return True


class TracingPlugin:
    """The lifecycle plugin; :data:`plugin` is the instance the entry point registers. Give
    ``tracer_provider`` to trace into a provider of your own instead of the global one."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self._provider = tracer_provider
        self._open: collections.OrderedDict[tuple[str, str, str, int], Span] = (
            collections.OrderedDict()
        )
        self._starting: collections.OrderedDict[str, Span] = collections.OrderedDict()
        # The latest job of each run seen here: its headers parent the "finished" span.
        self._seen: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._parents: collections.OrderedDict[tuple[tuple[str, str], ...], Context] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    def _tracer(self) -> trace.Tracer:
        if self._provider is None:
            configure_from_env()
        return trace.get_tracer("flowcraft", tracer_provider=self._provider)

    def _tracing(self) -> bool:
        """Whether a span made now could be recorded: a provider was given, or a global one
        is set (in code, or from the ``OTEL_*`` variables). Without one every span is a no-op,
        so the hooks skip making them: that work was about a tenth of the Python calls per
        node of the in-memory driver, for nothing. A provider set later is seen at once."""
        if self._provider is not None:
            return True
        if not _done:
            configure_from_env()
        if not _env_provider and getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
            # No global provider: set_tracer_provider keeps it there (an API of every
            # version this supports). Asked through get_tracer_provider, which looks in
            # os.environ for a provider to load every time, this was two environment lookups
            # per node, 6% of the memory driver's time. One named in the environment after
            # the first job is not seen; one set in code is, at once.
            return False
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

    @staticmethod
    def _keep(table: collections.OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > OPEN_LIMIT:
            _, old = table.popitem(last=False)
            if isinstance(old, Span):
                old.set_attribute(OUTCOME, "abandoned")
                old.end()

    # -- a run starts (in the client) -------------------------------------------------------

    @hookimpl
    def flowcraft_run_headers(self, run_id: str, flow_id: str) -> dict[str, str] | None:
        if not self._tracing():
            return None  # jobs carry nothing
        span = self._tracer().start_span(
            f"run {flow_id}",
            kind=SpanKind.PRODUCER,
            attributes={RUN_ID: run_id, BLUEPRINT: flow_id},
        )
        if not span.get_span_context().is_valid:
            return None  # not tracing here (no provider, or not sampled): jobs carry nothing
        headers: dict[str, str] = {}
        propagate.inject(headers, context=trace.set_span_in_context(span))
        headers[BLUEPRINT_HEADER] = flow_id
        with self._lock:
            self._keep(self._starting, run_id, span)
        return headers

    @hookimpl
    def flowcraft_run_started(self, run_id: str, flow_id: str, input: Any) -> None:
        with self._lock:
            span = self._starting.pop(run_id, None)
        if span is not None:
            span.set_attribute(OUTCOME, "started")
            span.end()

    # -- node attempts (in workers) ---------------------------------------------------------

    @staticmethod
    def _attributes(job: Job) -> dict[str, Any]:
        return {
            RUN_ID: job.run_id,
            BLUEPRINT: job.headers.get(BLUEPRINT_HEADER, ""),
            NODE: job.node_id,
            INSTANCE: job.instance,
            ATTEMPT: job.attempt,
        }

    def _parent(self, job: Job) -> Context:
        """The run's trace context from the job's headers, parsed once per run here (every
        job of a run carries the same headers)."""
        key = tuple(sorted(job.headers.items()))
        with self._lock:
            found = self._parents.get(key)
        if found is None:
            found = propagate.extract(dict(job.headers))
            with self._lock:
                self._parents[key] = found
                while len(self._parents) > PARENTS_LIMIT:
                    self._parents.popitem(last=False)
        return found

    def _start(self, job: Job) -> Span:
        parent = self._parent(job)
        return self._tracer().start_span(
            f"node {job.node_id}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=self._attributes(job),
        )

    @staticmethod
    def _identity(job: Job) -> tuple[str, str, str, int]:
        return (job.run_id, job.node_id, job.instance, job.attempt)

    @hookimpl
    def flowcraft_node_started(self, job: Job) -> None:
        if not self._tracing():
            return
        span = self._start(job)
        with self._lock:
            self._keep(self._open, self._identity(job), span)
            self._keep(self._seen, job.run_id, job)

    def _end(self, job: Job, outcome: str, error: dict[str, Any] | None = None) -> None:
        if not self._tracing():
            return
        with self._lock:
            span = self._open.pop(self._identity(job), None)
            self._keep(self._seen, job.run_id, job)
        if span is None:  # failed without executing (a missing implementation, say)
            span = self._start(job)
        span.set_attribute(OUTCOME, outcome)
        if error is not None:
            _record(span, error)
        span.end()

    @hookimpl
    def flowcraft_node_finished(self, job: Job, output: Any, action: str | None) -> None:
        self._end(job, "completed")

    @hookimpl
    def flowcraft_node_retried(self, job: Job, error: dict[str, Any], delay: float) -> None:
        self._end(job, "retried", error)

    @hookimpl
    def flowcraft_node_failed(self, job: Job, error: dict[str, Any]) -> None:
        self._end(job, "failed", error)

    # -- a run ends -------------------------------------------------------------------------

    @hookimpl
    def flowcraft_run_finished(
        self, run_id: str, status: str, error: dict[str, Any] | None
    ) -> None:
        with self._lock:
            job = self._seen.pop(run_id, None)
        if job is None:
            return  # this process ran no job of the run (a cancel from a client)
        blueprint = job.headers.get(BLUEPRINT_HEADER, "")
        span = self._tracer().start_span(
            f"run {blueprint} finished",
            context=self._parent(job),
            attributes={RUN_ID: run_id, BLUEPRINT: blueprint, OUTCOME: status},
        )
        if error is not None:
            _record(span, error)
        span.end()


def _record(span: Span, error: dict[str, Any]) -> None:
    message = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    span.set_status(Status(StatusCode.ERROR, message))
    attributes = {
        "exception.type": str(error.get("type", "")),
        "exception.message": str(error.get("message", "")),
    }
    if error.get("traceback"):
        attributes["exception.stacktrace"] = str(error["traceback"])
    span.add_event("exception", attributes)


plugin = TracingPlugin()
"""The instance registered through the ``flowcraft.plugins`` entry point ``otel``."""
