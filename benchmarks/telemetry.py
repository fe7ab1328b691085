"""What telemetry costs per node, on the memory driver (client and worker in this process, so
nothing but the plugins differs): a chain with no telemetry plugin, with the OpenTelemetry
plugin tracing into the SDK (in-memory exporter, a span per node attempt), and with the
Prometheus plugin — interleaved rounds in one run, reported as ratios to "none". CPU time per
node (this process's, so a loaded machine's other work counts little) beside nodes/s.

    python -m benchmarks.telemetry [--size 20] [--runs 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import pluggy
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from benchmarks.measure import run_many
from benchmarks.shapes import chain, registry
from flowcraft_core.client import Client
from flowcraft_core.drivers import Backends
from flowcraft_core.plugins import new_manager
from flowcraft_core.worker import Worker
from flowcraft_memory import MemoryContextStore, MemoryCoordinationStore, MemoryQueue
from flowcraft_metrics import MetricsPlugin
from flowcraft_otel import TracingPlugin


def manager(kind: str) -> pluggy.PluginManager:
    pm = new_manager()
    pm.unregister(name="otel")  # the installed entry point's instance: replaced per kind
    if kind == "otel":
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        pm.register(TracingPlugin(provider), name="otel-bench")
    elif kind == "metrics":
        pm.register(MetricsPlugin(CollectorRegistry()), name="metrics-bench")
    return pm


async def once(kind: str, size: int, runs: int) -> tuple[float, float]:
    """(nodes/s, CPU µs per node) of ``runs`` runs of a ``size`` chain with ``kind``."""
    pm = manager(kind)
    backends = Backends(MemoryQueue(), MemoryContextStore(), MemoryCoordinationStore(), {})
    blueprint = chain(size)
    client = Client(backends, pm=pm)
    async with Worker(registry, backends, concurrency=64, pm=pm):
        await run_many(client, blueprint, 5, 60)
        cpu = time.process_time()
        m = await run_many(client, blueprint, runs, 600)
        cpu = time.process_time() - cpu
    return m.nodes / m.seconds, cpu / m.nodes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    kinds = ("none", "otel", "metrics")
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind in kinds:  # interleaved: every round measures each kind once
            rate, cpu = asyncio.run(once(kind, args.size, args.runs))
            rates[kind].append(rate)
            cpus[kind].append(cpu)
    base = statistics.median(rates["none"])
    base_cpu = statistics.median(cpus["none"])
    report: dict[str, Any] = {
        kind: {
            "nodes_per_s": round(statistics.median(rates[kind]), 1),
            "throughput_ratio": round(statistics.median(rates[kind]) / base, 3),
            "cpu_us_per_node": round(statistics.median(cpus[kind]), 1),
            "cpu_ratio": round(statistics.median(cpus[kind]) / base_cpu, 3),
        }
        for kind in kinds
    }
    print(json.dumps({"shape": f"chain-{args.size}", "runs": args.runs, **report}, indent=2))


if __name__ == "__main__":
    main()
