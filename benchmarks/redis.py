"""The Redis benchmark: W worker processes, a client here, and bare Dramatiq in the same run.

Both measurements use the same Redis, broker settings, processes and threads per process, so
``ratio_to_bare`` (our nodes/s ÷ Dramatiq's messages/s) is comparable across machines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from benchmarks.measure import run_many
from benchmarks.redis_worker import COUNTS, count_messages
from benchmarks.shapes import SHAPES, catalog, executed
from flowcraft_core.client import Client
from flowcraft_core.drivers import open_backends

ROOT = Path(__file__).resolve().parent.parent


def default_url() -> str:
    return os.environ.get("FLOWCRAFT_TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/13"


@contextmanager
def processes(
    module: str, args: list[str], each: int | list[str]
) -> Iterator[list[subprocess.Popen[str]]]:
    """``each`` processes of ``module`` (a list: one per item, given as a last argument)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    lasts: list[list[str]] = [[a] for a in each] if isinstance(each, list) else [[]] * each
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", module, *args, *last],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for last in lasts
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"{module} did not start: {line!r}")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(60)


def bare_dramatiq(url: str, workers: int, threads: int, messages: int) -> float:
    """Messages per second of a no-op Dramatiq actor, enqueued in batches like our fan-outs."""
    from benchmarks.bare_worker import BARE_QUEUE, broker_and_actor

    broker, actor = broker_and_actor(url)
    broker.prepare()

    def send(count: int) -> None:
        # Dramatiq's own dispatch calls, pipelined in one write as our fan-outs send theirs.
        with broker.client.pipeline(transaction=False) as pipe:
            for keys, args in broker.dispatches([actor.message() for _ in range(count)], None):
                broker.scripts["dispatch"](keys=keys, args=args, client=pipe)
            pipe.execute()

    with processes("benchmarks.bare_worker", [url, str(threads)], workers):
        # Warm up (loads the dispatch script, wakes the consumers) outside the measurement.
        send(100)
        broker.join(BARE_QUEUE, interval=5)
        started = time.perf_counter()
        sent = 0
        while sent < messages:
            count = min(100, messages - sent)
            send(count)
            sent += count
        broker.join(BARE_QUEUE, interval=5)
        seconds = time.perf_counter() - started
    broker.close()
    return messages / seconds


def bench(
    shape: str, size: int, runs: int, workers: int, concurrency: int, url: str | None
) -> dict[str, Any]:
    """Our Redis driver, then bare Dramatiq on the same broker (``ratio_to_bare``)."""
    base = url or default_url()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    full = f"{base}{'&' if '?' in base else '?'}prefix={prefix}"
    row = bench_url(full, shape, size, runs, workers, concurrency)
    nodes = row["nodes"]
    bare = bare_dramatiq(full, workers, concurrency, max(2000, min(nodes, 20000)))
    sync = redis.Redis.from_url(base)
    for key in sync.scan_iter(f"{prefix}:*", count=1000):
        sync.delete(key)
    sync.close()
    row.update(
        driver="redis",
        bare_dramatiq_msgs_per_s=round(bare, 1),
        ratio_to_bare=round(row["nodes_per_s"] / bare, 3),
    )
    return row


def bench_url(
    url: str, shape: str, size: int, runs: int, workers: int, concurrency: int
) -> dict[str, Any]:
    """W worker processes on the backend ``url`` (any driver), the client in this process."""
    blueprint = SHAPES[shape](size)

    async def drive() -> tuple[Any, int]:
        backends = open_backends(url)
        count_messages(backends.queue)
        client = Client(backends, blueprints=catalog(shape))
        try:
            await run_many(client, blueprint, min(runs, 4), 120)  # warm-up
            before = COUNTS["messages"]
            measured = await run_many(client, blueprint, runs, 600)
            return measured, COUNTS["messages"] - before
        finally:
            await backends.close()

    with tempfile.TemporaryDirectory(prefix="flowcraft-bench-") as tmp:
        files = [os.path.join(tmp, f"w{i}.json") for i in range(workers)]
        with processes("benchmarks.redis_worker", [url, str(concurrency)], files):
            measured, client_messages = asyncio.run(drive())
        stats = [json.loads(Path(f).read_text()) for f in files]
    nodes = measured.nodes
    warm = executed(blueprint) * min(runs, 4)
    # Worker counts include the warm-up runs: scale per node over all nodes they handled.
    handled = nodes + warm
    round_trips = sum(s["round_trips"] for s in stats) / handled
    statements = sum(s.get("statements", 0) for s in stats) / handled
    transactions = sum(s.get("transactions", 0) for s in stats) / handled
    messages = (sum(s["messages"] for s in stats) * nodes / handled + client_messages) / nodes
    summary = measured.summary()
    return {
        "driver": url.split(":", 1)[0],
        "shape": shape,
        "size": size,
        "runs": runs,
        "workers": workers,
        "concurrency": concurrency,
        **summary,
        "peak_rss_mb": max(s["rss_mb"] for s in stats),
        # Every worker's CPU from ready to stop (warm-up runs included, as in `handled`).
        "worker_cpu_us_per_node": round(sum(s["cpu_s"] for s in stats) / handled * 1e6),
        "messages_per_node": round(messages, 3),
        # Counted at redis-py's asyncio client: other backends report none.
        "round_trips_per_node": round(round_trips, 3) if url.startswith("redis") else "n/a",
        # Counted at SQLAlchemy's engine events (SQL only): the workers' every statement and
        # transaction, queue and polls included; each is one round trip at least.
        **(
            {}
            if url.startswith("redis")
            else {
                "statements_per_node": round(statements, 2),
                "transactions_per_node": round(transactions, 2),
            }
        ),
    }
