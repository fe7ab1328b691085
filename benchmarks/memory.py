"""The memory driver benchmark: client and one worker in this process."""

from __future__ import annotations

from typing import Any

from benchmarks.counting import Counting
from benchmarks.measure import peak_rss_mb, run_many
from benchmarks.shapes import SHAPES, catalog, registry
from flowcraft_core.client import Client
from flowcraft_core.drivers import Backends
from flowcraft_core.worker import Worker
from flowcraft_memory import MemoryContextStore, MemoryCoordinationStore, MemoryQueue


async def bench(shape: str, size: int, runs: int, concurrency: int = 64) -> dict[str, Any]:
    blueprint = SHAPES[shape](size)
    queue = MemoryQueue()
    backends = Backends(queue, MemoryContextStore(), MemoryCoordinationStore(), {})
    client = Client(backends, blueprints=catalog(shape))
    worker = Worker(registry, backends, concurrency=concurrency)
    engine = worker.engine
    engine.remember(client.compile(blueprint))
    # The engine's calls to its backends: its state steps and its direct store calls. The
    # client's (a few per run, not per node) are left out, as on Redis.
    counters = [Counting(engine.state), Counting(engine.context), Counting(engine.coordination)]
    engine.state, engine.context, engine.coordination = counters
    async with worker:
        # Warm up, then count only the measured runs.
        await run_many(client, blueprint, 2, 60)
        enqueued, calls = queue.enqueued, sum(c.calls for c in counters)
        m = await run_many(client, blueprint, runs, 600)
        nodes = m.nodes
        m.extra.update(
            messages_per_node=round((queue.enqueued - enqueued) / nodes, 3),
            round_trips_per_node=round((sum(c.calls for c in counters) - calls) / nodes, 3),
            peak_rss_mb=peak_rss_mb(),
        )
    return {"driver": "memory", "shape": shape, "size": size, "runs": runs, **m.summary()}
