"""The tracing plugin in one process, on the memory driver, into the SDK's in-memory exporter:
a span per node attempt with its attributes and outcome, all in the run's trace, under the span
current where the run was started; errors as span status; off when nothing traces."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowcraft_core import Blueprint, Client, NodeContext, Registry, Worker, open_backends
from flowcraft_core.drivers import Backends
from flowcraft_core.engine import keys
from flowcraft_core.plugins import new_manager
from flowcraft_otel import TracingPlugin
from flowcraft_otel.tracing import (
    ATTEMPT,
    BLUEPRINT,
    INSTANCE,
    NODE,
    OUTCOME,
    RUN_ID,
    configure_from_env,
)


def bp(nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None) -> Blueprint:
    return Blueprint.from_dict(
        {"id": f"bp-{uuid.uuid4().hex[:8]}", "nodes": nodes, "edges": edges or []}
    )


@dataclass
class Harness:
    client: Client
    backends: Backends


@asynccontextmanager
async def harness(registry: dict[str, Any], *, pm: Any) -> AsyncIterator[Harness]:
    """A worker and a client on one fresh in-memory backend, the worker running."""
    backends = open_backends(f"memory://{uuid.uuid4().hex}", pm=pm)
    async with Worker(Registry.of(registry), backends, pm=pm):
        yield Harness(Client(backends, pm=pm), backends)


def traced() -> tuple[Any, InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pm = new_manager()
    pm.unregister(name="otel")  # the entry point's instance traces into the global provider
    pm.register(TracingPlugin(provider), name="otel-test")
    return pm, exporter, provider


async def step(ctx: NodeContext) -> str:
    if ctx.node_id == "flaky" and ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    if ctx.node_id == "broken":
        raise ValueError("always fails")
    return ctx.node_id


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_a_run_is_one_trace_with_a_span_per_node_attempt() -> None:
    pm, exporter, provider = traced()
    blueprint = bp(
        [
            {"id": "a", "uses": "step"},
            {"id": "flaky", "uses": "step", "config": {"maxRetries": 2}},
            {"id": "c", "uses": "step"},
        ],
        [{"source": "a", "target": "flaky"}, {"source": "flaky", "target": "c"}],
    )
    tracer = provider.get_tracer("test")
    async with harness({"step": step}, pm=pm) as h:
        with tracer.start_as_current_span("request") as request:
            run_id = await h.client.start(blueprint)
        assert (await h.client.result(run_id, 10)).status == "completed"
        meta = await h.backends.context.get(run_id, keys.RUN)
    assert "traceparent" in keys.run_headers(meta)
    spans = exporter.get_finished_spans()
    trace_id = request.get_span_context().trace_id
    assert {s.context.trace_id for s in spans} == {trace_id}
    (run,) = by_name(spans, f"run {blueprint.id}")
    assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id
    assert run.attributes is not None and run.attributes[RUN_ID] == run_id
    nodes = [s for s in spans if s.name.startswith("node ")]
    assert sorted((s.attributes[NODE], s.attributes[ATTEMPT]) for s in nodes) == [  # type: ignore[index]
        ("a", 1),
        ("c", 1),
        ("flaky", 1),
        ("flaky", 2),
    ]
    for span in nodes:
        attrs = span.attributes
        assert attrs is not None
        assert span.parent is not None and span.parent.span_id == run.context.span_id
        assert attrs[RUN_ID] == run_id and attrs[BLUEPRINT] == blueprint.id
        assert attrs[INSTANCE] == "0"
        retried = attrs[NODE] == "flaky" and attrs[ATTEMPT] == 1
        assert attrs[OUTCOME] == ("retried" if retried else "completed")
        assert span.status.status_code == (StatusCode.ERROR if retried else StatusCode.UNSET)
    (finished,) = by_name(spans, f"run {blueprint.id} finished")
    assert finished.attributes is not None and finished.attributes[OUTCOME] == "completed"


async def test_a_failed_node_is_an_error_span_with_its_exception() -> None:
    pm, exporter, _ = traced()
    blueprint = bp([{"id": "broken", "uses": "step"}])
    async with harness({"step": step}, pm=pm) as h:
        run_id = await h.client.start(blueprint)
        assert (await h.client.result(run_id, 10)).status == "failed"
    spans = exporter.get_finished_spans()
    (node,) = by_name(spans, "node broken")
    assert node.attributes is not None and node.attributes[OUTCOME] == "failed"
    assert node.status.status_code == StatusCode.ERROR
    assert node.status.description == "ValueError: always fails"
    (event,) = [e for e in node.events if e.name == "exception"]
    assert event.attributes is not None and "always fails" in str(
        event.attributes["exception.stacktrace"]
    )
    (finished,) = by_name(spans, f"run {blueprint.id} finished")
    assert finished.attributes is not None and finished.attributes[OUTCOME] == "failed"


async def test_without_a_tracer_provider_jobs_carry_no_headers() -> None:
    """The entry point's instance on a process whose global provider is the API's no-op."""
    pm = new_manager()
    assert pm.get_plugin("otel") is not None
    async with harness({"step": step}, pm=pm) as h:
        run_id = await h.client.start(bp([{"id": "a", "uses": "step"}]))
        assert (await h.client.result(run_id, 10)).status == "completed"
        meta = await h.backends.context.get(run_id, keys.RUN)
    assert keys.RUN_HEADERS not in meta


def test_configure_from_env_does_nothing_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import flowcraft_otel.tracing as module

    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(module, "_done", False)
    assert configure_from_env() is False
    monkeypatch.setattr(module, "_done", False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert configure_from_env() is False


@pytest.mark.slow
def test_the_standard_variables_turn_tracing_on_in_a_real_process(tmp_path: Path) -> None:
    """``flowcraft run`` with only ``OTEL_TRACES_EXPORTER=console`` set: its spans, named by
    ``OTEL_SERVICE_NAME``, come out of the SDK's console exporter."""
    repo = Path(__file__).resolve().parents[2]
    script = Path(sys.executable).parent / "flowcraft"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWCRAFT_", "OTEL_"))}
    env.update(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="orders-under-test")
    done = subprocess.run(
        [
            str(script),
            "run",
            "examples/order_fulfilment.json",
            "--registry",
            "examples.orders:registry",
            "--input",
            (repo / "examples" / "order.json").read_text(),
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert '"service.name": "orders-under-test"' in out
    names = re.findall(r'"name": "([^"]+)"', out)
    assert any(n.startswith("node ") for n in names), names
    assert any(n.startswith("run ") for n in names), names
    traces = set(re.findall(r'"trace_id": "(0x[0-9a-f]+)"', out))
    assert len(traces) == 1, traces


_UNTRACED = """
import asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from flowcraft_core import Blueprint, Client, Registry, Worker, open_backends
from flowcraft_otel import tracing

made = []
start = tracing.TracingPlugin._start
tracing.TracingPlugin._start = lambda self, job: made.append(job) or start(self, job)

async def noop(ctx):
    return 1

flow = Blueprint.from_dict({"id": "two", "nodes": [{"id": "a", "uses": "noop"},
    {"id": "b", "uses": "noop"}], "edges": [{"source": "a", "target": "b"}]})

async def one():
    backends = open_backends("memory://")
    async with Worker(Registry({"noop": noop}), backends):
        client = Client(backends)
        result = await client.result(await client.start(flow, None), 10)
        assert result.status == "completed", result
    await backends.close()

asyncio.run(one())
print("untraced", len(made))
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
asyncio.run(one())
print("traced", len(made), sorted(s.name for s in exporter.get_finished_spans()))
"""


@pytest.mark.slow
def test_without_a_tracer_provider_no_span_is_made_and_one_set_later_is_used() -> None:
    """No provider (none in code, no ``OTEL_*`` variables): the plugin, registered by its
    entry point, makes no span per node; a provider set afterwards gets every node's span."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOWCRAFT_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", _UNTRACED],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "untraced 0" in lines, done.stdout
    traced = next(line for line in lines if line.startswith("traced"))
    assert traced.startswith("traced 2 "), traced
    assert "'node a'" in traced and "'node b'" in traced, traced
