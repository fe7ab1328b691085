"""Prometheus metrics for flowcraft (``pip install 'flowcraft[metrics]'``): counters and
histograms fed by the lifecycle hooks, served by ``flowcraft worker --metrics-port N`` or by
:func:`serve` in code. See :mod:`flowcraft_metrics.metrics`."""

from flowcraft_metrics.metrics import (
    DURATION_BUCKETS,
    LAG_BUCKETS,
    MetricsPlugin,
    enable,
    serve,
    serve_multiprocess,
)

__all__ = [
    "DURATION_BUCKETS",
    "LAG_BUCKETS",
    "MetricsPlugin",
    "enable",
    "serve",
    "serve_multiprocess",
]
