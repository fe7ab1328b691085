"""The memory driver benchmark: client and one worker in this process."""

from __future__ import annotations

from typing import Any

from benchmarks.counting import Counting
from benchmarks.measure import peak_rss_mb, run_many
from benchmarks.shapes import SHAPES, registry
from flowcraft_core.client import Client
from flowcraft_core.drivers import Backends
from flowcraft_core.worker import Worker
from flowcraft_memory import MemoryContextStore, MemoryCoordinationStore, MemoryQueue


async def bench(shape: str, size: int, runs: int, concurrency: int = 64) -> dict[str, Any]:
    blueprint = SHAPES[shape](size)
    queue = MemoryQueue()
    context = Counting(MemoryContextStore())
    coordination = Counting(MemoryCoordinationStore())
    backends = Backends(queue, context, coordination, {})
    client = Client(backends)
    worker = Worker(registry, backends, concurrency=concurrency)
    worker.engine.remember(client.compile(blueprint))
    async with worker:
        # Warm up, then count only the measured runs.
        await run_many(client, blueprint, 2, 60)
        enqueued, calls = queue.enqueued, context.calls + coordination.calls
        m = await run_many(client, blueprint, runs, 600)
        nodes = m.nodes
        m.extra.update(
            messages_per_node=round((queue.enqueued - enqueued) / nodes, 3),
            # The client's own calls (start, result) are included: they are per run.
            round_trips_per_node=round((context.calls + coordination.calls - calls) / nodes, 3),
            peak_rss_mb=peak_rss_mb(),
        )
    return {"driver": "memory", "shape": shape, "size": size, "runs": runs, **m.summary()}
