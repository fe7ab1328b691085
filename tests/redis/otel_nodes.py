"""``flowcraft worker --registry otel_nodes:registry``: a worker process that traces into the
OpenTelemetry SDK's in-memory exporter and writes what it exported to
``$FLOWCRAFT_TEST_SPANS/<pid>.json`` when it exits (a graceful stop runs ``atexit``).

``gate`` nodes hold their worker until ``$FLOWCRAFT_TEST_GATE_WORKERS`` distinct worker
processes are inside one (a set at ``$FLOWCRAFT_TEST_GATE_KEY`` on ``$FLOWCRAFT_TEST_GATE_URL``):
with one job at a time per worker, a fan-out of gates is therefore spread over every worker."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowcraft_core import NodeContext

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)


def _dump() -> None:
    where = os.environ.get("FLOWCRAFT_TEST_SPANS")
    if not where:
        return
    spans = [
        {
            "name": s.name,
            "trace_id": s.context.trace_id,
            "span_id": s.context.span_id,
            "parent": s.parent.span_id if s.parent else None,
            "attributes": dict(s.attributes or {}),
            "pid": os.getpid(),
        }
        for s in EXPORTER.get_finished_spans()
    ]
    Path(where, f"{os.getpid()}.json").write_text(json.dumps(spans))


atexit.register(_dump)


async def gate(ctx: NodeContext) -> Any:
    client = aioredis.Redis.from_url(os.environ["FLOWCRAFT_TEST_GATE_URL"])
    key = os.environ["FLOWCRAFT_TEST_GATE_KEY"]
    want = int(os.environ.get("FLOWCRAFT_TEST_GATE_WORKERS", "2"))
    try:
        await client.sadd(key, os.getpid())
        deadline = time.monotonic() + 60
        while await client.scard(key) < want and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    return {"node": ctx.node_id, "pid": os.getpid()}


async def plain(ctx: NodeContext) -> Any:
    return ctx.node_id


registry = {"gate": gate, "plain": plain}
