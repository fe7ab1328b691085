"""``flowcraft worker --metrics-port N`` on Redis: the endpoint of a real worker, scraped over
HTTP, counts what its runs did — executed, completed, retried, failed and skipped nodes, node
durations by outcome, queue lag, finished runs by status — and with ``--processes 2`` one
port serves the sum of both processes."""

from __future__ import annotations

import signal
import socket
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis
from procs import Procs
from prometheus_client.parser import text_string_to_metric_families

from flowcraft_core import Blueprint, Client

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "pid"))
            key = (sample.name, labels)
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# ok -> flaky (retried once) -> done, and ok -> never (condition false: skipped)
COMPLETES = Blueprint.from_dict(
    {
        "id": "metrics-completes",
        "nodes": [
            {"id": "first", "uses": "ok"},
            {"id": "flaky", "uses": "flaky", "config": {"maxRetries": 2, "retryDelay": 1}},
            {"id": "done", "uses": "ok"},
            {"id": "never", "uses": "ok"},
        ],
        "edges": [
            {"source": "first", "target": "flaky"},
            {"source": "flaky", "target": "done"},
            {"source": "first", "target": "never", "condition": "result === 'nope'"},
        ],
    }
)
FAILS = Blueprint.from_dict({"id": "metrics-fails", "nodes": [{"id": "x", "uses": "broken"}]})


async def run_both(url: str) -> None:
    client = Client(url)
    try:
        for blueprint, status in ((COMPLETES, "completed"), (FAILS, "failed")):
            run_id = await client.start(blueprint)
            assert (await client.result(run_id, timeout=60)).status == status
    finally:
        await client.close()


async def test_a_workers_metrics_endpoint_counts_its_runs(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    with Procs(tmp_path) as procs:
        worker = procs.worker(
            redis_url, "metrics_nodes:registry", extra=("--metrics-port", str(port))
        )
        await run_both(redis_url)
        samples = scrape(port)
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, procs.stderr()
    executed = "flowcraft_nodes_executed_total"
    assert value(samples, executed, node="first") == 1
    assert value(samples, executed, node="flaky") == 2
    assert value(samples, executed, node="done") == 1
    assert value(samples, executed, node="never") == 0
    assert value(samples, executed, node="x") == 1
    assert value(samples, "flowcraft_nodes_retried_total", node="flaky") == 1
    assert value(samples, "flowcraft_nodes_completed_total", node="flaky") == 1
    assert value(samples, "flowcraft_nodes_skipped_total", node="never") == 1
    assert value(samples, "flowcraft_nodes_failed_total", node="x") == 1
    assert value(samples, "flowcraft_runs_finished_total", status="completed") == 1
    assert value(samples, "flowcraft_runs_finished_total", status="failed") == 1
    duration = "flowcraft_node_duration_seconds_count"
    assert value(samples, duration, node="flaky", outcome="retried") == 1
    assert value(samples, duration, node="flaky", outcome="completed") == 1
    assert value(samples, duration, node="x", outcome="failed") == 1
    assert (
        value(samples, "flowcraft_node_duration_seconds_sum", node="first", outcome="completed")
        >= 0.01
    )
    # Through the queue: both start jobs and the retry (the successors ran inline).
    assert value(samples, "flowcraft_queue_lag_seconds_count") >= 3


async def test_processes_share_one_metrics_port(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    gate_key = f"test-metrics-gate-{uuid.uuid4().hex}"
    base = redis_url.split("?")[0]
    env = {"FLOWCRAFT_TEST_GATE_URL": base, "FLOWCRAFT_TEST_GATE_KEY": gate_key}
    gates = Blueprint.from_dict(
        {
            "id": "metrics-gates",
            # Three: a process holds at most two (one running, one prefetched by Dramatiq at
            # concurrency 1), so the other process gets one, and both must be in a gate at once.
            "nodes": [{"id": f"g{i}", "uses": "gate"} for i in range(3)],
        }
    )
    with Procs(tmp_path) as procs:
        worker = procs.worker(
            redis_url,
            "metrics_nodes:registry",
            concurrency=1,
            env=env,
            extra=("--processes", "2", "--metrics-port", str(port)),
        )
        client = Client(redis_url)
        try:
            run_id = await client.start(gates)
            assert (await client.result(run_id, timeout=60)).status == "completed"
        finally:
            await client.close()
        samples = scrape(port)
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, procs.stderr()
    raw = redis.Redis.from_url(base)
    pids = raw.smembers(gate_key)
    raw.delete(gate_key)
    raw.close()
    assert len(pids) == 2  # each process ran a gate ...
    executed = "flowcraft_nodes_executed_total"
    # ... and the one port counts both.
    assert [value(samples, executed, node=f"g{i}") for i in range(3)] == [1, 1, 1]
    assert value(samples, "flowcraft_runs_finished_total", status="completed") == 1
    assert (
        value(samples, "flowcraft_node_duration_seconds_count", node="g0", outcome="completed") == 1
    )
