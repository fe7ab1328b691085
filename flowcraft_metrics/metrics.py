"""The metrics plugin: lifecycle hooks → ``prometheus_client`` counters and histograms.

Every metric a worker exports (``node`` is the node id; run ids are never labels, so the
number of series is bounded by the blueprints' nodes):

* ``flowcraft_nodes_executed_total{node}`` — node attempts whose code started;
* ``flowcraft_nodes_completed_total{node}`` — results this worker committed;
* ``flowcraft_nodes_failed_total{node}`` — nodes that failed their run (last attempt, fallback);
* ``flowcraft_nodes_retried_total{node}`` — failed attempts scheduled again;
* ``flowcraft_nodes_skipped_total{node}`` — nodes none of whose incoming edges was taken;
* ``flowcraft_node_duration_seconds{node, outcome}`` — from the start of an attempt's code to
  its commit (``completed``), its retry (``retried``) or its failure (``failed``);
* ``flowcraft_queue_lag_seconds`` — from when a job was due (enqueued, plus its delay) to the
  start of its code, for jobs that came through the queue (wall clocks of two machines: a
  skewed clock shows here; a negative lag counts as 0);
* ``flowcraft_runs_started_total{blueprint}`` — counted by the process that starts runs (a
  client: register the plugin there to see it);
* ``flowcraft_runs_finished_total{status}`` — by the process that wrote the final status (the
  worker of the last job, or a client's cancel).

With several worker processes (``--processes N``) the metrics are prometheus_client's
multiprocess mode: each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
and the parent serves their sum on one port (:func:`serve_multiprocess`): one scrape target
per machine, whatever N.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from flowcraft_core.hookspecs import hookimpl
from flowcraft_core.plugins import default_manager
from flowcraft_core.protocols import Job

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
OPEN_LIMIT = 10_000
"""Attempts under way remembered at most: one whose end never comes here (its commit lost to
a duplicate delivery) is forgotten when the limit pushes it out."""


class MetricsPlugin:
    """The lifecycle plugin, its metrics registered on ``registry`` (prometheus_client's
    default unless given). One per registry: :func:`enable` makes the process's."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        node = ("node",)
        self.executed = counter(
            "flowcraft_nodes_executed", "Node attempts whose code started.", node
        )
        self.completed = counter(
            "flowcraft_nodes_completed", "Node results committed by this worker.", node
        )
        self.failed = counter(
            "flowcraft_nodes_failed", "Nodes that failed their run after their last attempt.", node
        )
        self.retried = counter(
            "flowcraft_nodes_retried", "Failed node attempts scheduled again.", node
        )
        self.skipped = counter(
            "flowcraft_nodes_skipped", "Nodes skipped: none of their incoming edges taken.", node
        )
        self.duration = Histogram(
            "flowcraft_node_duration_seconds",
            "Seconds from the start of a node attempt's code to its outcome.",
            ("node", "outcome"),
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.lag = Histogram(
            "flowcraft_queue_lag_seconds",
            "Seconds from when a job was due (enqueued plus its delay) to the start of its code.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.runs_started = counter(
            "flowcraft_runs_started", "Runs started (by this process's client).", ("blueprint",)
        )
        self.runs_finished = counter(
            "flowcraft_runs_finished", "Runs whose final status this process wrote.", ("status",)
        )
        self._began: collections.OrderedDict[tuple[str, str, str, int], float] = (
            collections.OrderedDict()
        )
        self._lock = threading.Lock()

    @staticmethod
    def _identity(job: Job) -> tuple[str, str, str, int]:
        return (job.run_id, job.node_id, job.instance, job.attempt)

    @hookimpl
    def flowcraft_run_started(self, run_id: str, flow_id: str, input: Any) -> None:
        self.runs_started.labels(flow_id).inc()

    @hookimpl
    def flowcraft_run_finished(
        self, run_id: str, status: str, error: dict[str, Any] | None
    ) -> None:
        self.runs_finished.labels(status).inc()

    @hookimpl
    def flowcraft_node_started(self, job: Job) -> None:
        now = time.time()
        self.executed.labels(job.node_id).inc()
        if job.due is not None:
            self.lag.observe(max(0.0, now - job.due))
        with self._lock:
            self._began[self._identity(job)] = time.monotonic()
            while len(self._began) > OPEN_LIMIT:
                self._began.popitem(last=False)

    def _ended(self, job: Job, outcome: str) -> None:
        with self._lock:
            began = self._began.pop(self._identity(job), None)
        if began is not None:
            self.duration.labels(job.node_id, outcome).observe(time.monotonic() - began)

    @hookimpl
    def flowcraft_node_finished(self, job: Job, output: Any, action: str | None) -> None:
        self.completed.labels(job.node_id).inc()
        self._ended(job, "completed")

    @hookimpl
    def flowcraft_node_retried(self, job: Job, error: dict[str, Any], delay: float) -> None:
        self.retried.labels(job.node_id).inc()
        self._ended(job, "retried")

    @hookimpl
    def flowcraft_node_failed(self, job: Job, error: dict[str, Any]) -> None:
        self.failed.labels(job.node_id).inc()
        self._ended(job, "failed")

    @hookimpl
    def flowcraft_node_skipped(self, job: Job) -> None:
        self.skipped.labels(job.node_id).inc()


_enabled: MetricsPlugin | None = None
_enabling = threading.Lock()


def enable() -> MetricsPlugin:
    """Register the plugin (on the default registry) with the process-wide plugin manager,
    once per process; returns it."""
    global _enabled
    with _enabling:
        if _enabled is None:
            _enabled = MetricsPlugin()
            default_manager().register(_enabled, name="metrics")
        return _enabled


def serve(port: int, host: str = "127.0.0.1") -> MetricsPlugin:
    """:func:`enable`, and serve the process's metrics at ``http://host:port/metrics`` (a
    daemon thread). A port in use is an :class:`OSError` naming it."""
    plugin = enable()
    _listen(port, host, REGISTRY)
    return plugin


def serve_multiprocess(port: int, host: str = "127.0.0.1") -> None:
    """Serve, from this (parent) process, the sum of the metrics that the processes writing
    to ``PROMETHEUS_MULTIPROC_DIR`` recorded (they call :func:`enable`)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    _listen(port, host, registry)


def _listen(port: int, host: str, registry: CollectorRegistry) -> None:
    from prometheus_client import start_http_server

    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OSError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
