"""Celery on the same Redis, for `make bench-peers` (run with .bench/venv's Python).

``python -m benchmarks.peers.celery_app client SHAPE SIZE RUNS`` starts R workflows at once
(chain-N: a chain of N tasks; fanout-N: a task, then a chord of N tasks and a join task, N + 2
tasks as our fanout-N) and prints one JSON line. Workers are ``celery -A
benchmarks.peers.celery_app worker --pool threads``. The broker and result backend come from
``BENCH_CELERY_BROKER`` and ``BENCH_CELERY_BACKEND``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from celery import Celery, chain, chord

app = Celery(
    "flowcraft-bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/14"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/14"),
)
app.conf.update(
    result_expires=600, worker_hijack_root_logger=False, broker_connection_retry_on_startup=True
)


# Named explicitly: the client runs this module as __main__, the workers import it.
@app.task(name="bench.noop")
def noop(*args: Any) -> None:
    return None


def workflow(shape: str, size: int) -> Any:
    if shape == "chain":
        return chain(*(noop.si() for _ in range(size)))
    return chain(noop.si(), chord([noop.si() for _ in range(size)], noop.si()))


def client(shape: str, size: int, runs: int) -> dict[str, Any]:
    nodes = size if shape == "chain" else size + 2
    for res in [workflow(shape, size).apply_async() for _ in range(min(runs, 4))]:  # warm-up
        res.get(timeout=300)
    started = time.perf_counter()
    pending = [(time.perf_counter(), workflow(shape, size).apply_async()) for _ in range(runs)]
    latencies = []
    for t0, res in pending:
        res.get(timeout=600)
        latencies.append((time.perf_counter() - t0) * 1000)
    seconds = time.perf_counter() - started
    lat = sorted(latencies)
    return {
        "nodes": nodes * runs,
        "seconds": round(seconds, 4),
        "nodes_per_s": round(nodes * runs / seconds, 1),
        "p50_ms": round(lat[len(lat) // 2], 2),
    }


if __name__ == "__main__" and sys.argv[1:2] == ["client"]:
    print(json.dumps(client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))), flush=True)
    os._exit(0)  # skip the result backend's teardown at exit, which only logs noise
