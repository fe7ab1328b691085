"""Running R runs at once and summarising throughput and latency."""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks.shapes import executed
from flowcraft_core.blueprint import Blueprint
from flowcraft_core.client import Client


@dataclass
class Measurement:
    nodes: int
    seconds: float
    latencies_ms: list[float]
    cpu_seconds: float
    """This process's CPU time over the runs (on a shared machine it varies less than
    wall time; the in-process drivers run everything here)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "nodes": self.nodes,
            "seconds": round(self.seconds, 4),
            "nodes_per_s": round(self.nodes / self.seconds, 1),
            "cpu_s": round(self.cpu_seconds, 4),
            "nodes_per_cpu_s": round(self.nodes / max(self.cpu_seconds, 1e-9), 1),
            "p50_ms": round(statistics.median(lat), 2),
            "p95_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.95))], 2),
            **self.extra,
        }


async def run_many(client: Client, blueprint: Blueprint, runs: int, timeout: float) -> Measurement:
    """Start ``runs`` runs together and wait for all; every run must complete."""

    async def one() -> float:
        started = time.perf_counter()
        run_id = await client.start(blueprint, None)
        result = await client.result(run_id, timeout)
        if result.status != "completed":
            raise RuntimeError(f"benchmark run {run_id} ended {result.status}: {result.error}")
        return (time.perf_counter() - started) * 1000

    started, cpu = time.perf_counter(), time.process_time()
    latencies = await asyncio.gather(*(one() for _ in range(runs)))
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    return Measurement(executed(blueprint) * runs, seconds, list(latencies), cpu_seconds)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
