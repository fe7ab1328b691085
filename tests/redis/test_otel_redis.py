"""One trace per run across two real worker processes on Redis: the trace context travels in
the jobs (Dramatiq messages), and the spans both workers exported to the SDK's in-memory
exporter join the client's run span in one trace."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from procs import Procs

from flowcraft_core import Blueprint, Client
from flowcraft_core.plugins import new_manager
from flowcraft_otel import TracingPlugin

pytestmark = pytest.mark.slow

GATES = 4


async def test_a_run_across_two_workers_is_one_trace(tmp_path: Path, redis_url: str) -> None:
    gate_key = f"test-otel-gate-{uuid.uuid4().hex}"
    env = {
        "FLOWCRAFT_TEST_SPANS": str(tmp_path),
        "FLOWCRAFT_TEST_GATE_URL": redis_url.split("?")[0],
        "FLOWCRAFT_TEST_GATE_KEY": gate_key,
        "FLOWCRAFT_TEST_GATE_WORKERS": "2",
    }
    nodes = [{"id": "start", "uses": "plain"}, {"id": "join", "uses": "plain"}]
    edges = []
    for i in range(GATES):
        nodes.append({"id": f"g{i}", "uses": "gate"})
        edges += [{"source": "start", "target": f"g{i}"}, {"source": f"g{i}", "target": "join"}]
    blueprint = Blueprint.from_dict({"id": "traced-fan-out", "nodes": nodes, "edges": edges})

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pm = new_manager()
    pm.unregister(name="otel")
    pm.register(TracingPlugin(provider), name="otel-test")
    with Procs(tmp_path) as procs:
        workers = [
            procs.worker(redis_url, "otel_nodes:registry", concurrency=1, env=env) for _ in range(2)
        ]
        client = Client(redis_url, pm=pm)
        try:
            run_id = await client.start(blueprint)
            result = await client.result(run_id, timeout=90)
        finally:
            await client.close()
        assert result.status == "completed", (result, procs.stderr())
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(60) == 0, procs.stderr()
    raw = redis.Redis.from_url(env["FLOWCRAFT_TEST_GATE_URL"])
    raw.delete(gate_key)
    raw.close()

    (run_span,) = exporter.get_finished_spans()
    trace_id = run_span.context.trace_id
    dumps = sorted(tmp_path.glob("*.json"))
    assert len(dumps) == 2, procs.stderr()
    spans = [span for dump in dumps for span in json.loads(dump.read_text())]
    node_spans = [s for s in spans if s["name"].startswith("node ")]
    assert sorted(s["attributes"]["flowcraft.node"] for s in node_spans) == sorted(
        ["start", "join", *(f"g{i}" for i in range(GATES))]
    )
    # Both workers ran gates (the gate needs two processes in it at once) ...
    assert len({s["pid"] for s in node_spans if s["name"].startswith("node g")}) == 2
    # ... and every span either exported is in the client's trace, under its run span.
    assert {s["trace_id"] for s in spans} == {trace_id}
    for span in node_spans:
        assert span["parent"] == run_span.context.span_id
        attrs = span["attributes"]
        assert attrs["flowcraft.run_id"] == run_id
        assert attrs["flowcraft.blueprint"] == "traced-fan-out"
        assert attrs["flowcraft.outcome"] == "completed"
        assert attrs["flowcraft.attempt"] == 1 and attrs["flowcraft.instance"] == "0"
    finished = [s for s in spans if s["name"] == "run traced-fan-out finished"]
    assert len(finished) == 1 and finished[0]["attributes"]["flowcraft.outcome"] == "completed"
