"""Shared helpers of the core tests: blueprints from dicts, an in-process worker + client on a
fresh in-memory backend, and recording lifecycle plugins."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pluggy

from flowcraft_core import Blueprint, Client, EngineSettings, Registry, Worker, open_backends
from flowcraft_core.drivers import Backends
from flowcraft_core.engine import Checkpoint
from flowcraft_core.hookspecs import hookimpl
from flowcraft_core.protocols import Job


def unique_url() -> str:
    return f"memory://{uuid.uuid4().hex}"


def bp(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]] | None = None, name: str = ""
) -> Blueprint:
    """A blueprint from its JSON form, with a unique id unless one is given."""
    return Blueprint.from_dict(
        {"id": name or f"bp-{uuid.uuid4().hex[:8]}", "nodes": nodes, "edges": edges or []}
    )


@dataclass
class Harness:
    client: Client
    worker: Worker
    backends: Backends

    async def run(self, blueprint: Blueprint, input: Any = None, timeout: float = 10.0) -> Any:
        run_id = await self.client.start(blueprint, input)
        return await self.client.result(run_id, timeout)


@asynccontextmanager
async def harness(
    registry: Registry | Mapping[str, Any],
    *,
    settings: EngineSettings | None = None,
    pm: pluggy.PluginManager | None = None,
    concurrency: int = 8,
    checkpoint: Checkpoint | None = None,
    backends: Backends | None = None,
    blueprints: list[Blueprint] | None = None,
    worker_blueprints: list[Blueprint] | None = None,
) -> AsyncIterator[Harness]:
    """A worker and a client on one fresh in-memory backend, the worker running; the client's
    catalog is ``blueprints``, the worker's ``worker_blueprints``."""
    backends = backends or open_backends(unique_url(), pm=pm)
    client = Client(backends, settings=settings, pm=pm, blueprints=blueprints or ())
    worker = Worker(
        Registry.of(registry),
        backends,
        concurrency=concurrency,
        settings=settings,
        pm=pm,
        checkpoint=checkpoint,
        blueprints=worker_blueprints or (),
    )
    async with worker:
        yield Harness(client, worker, backends)


@dataclass
class Recorder:
    """A lifecycle plugin that records every hook call."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    def count(self, hook: str) -> int:
        return sum(1 for name, _ in self.events if name == hook)

    def nodes(self, hook: str) -> Counter[str]:
        return Counter(job.node_id for name, job in self.events if name == hook)

    def of(self, hook: str) -> list[Any]:
        return [payload for name, payload in self.events if name == hook]

    @hookimpl
    def flowcraft_run_started(self, run_id: str, flow_id: str, input: Any) -> None:
        self.events.append(("run_started", (run_id, flow_id, input)))

    @hookimpl
    def flowcraft_run_finished(self, run_id: str, status: str, error: Any) -> None:
        self.events.append(("run_finished", (run_id, status, error)))

    @hookimpl
    def flowcraft_node_started(self, job: Job) -> None:
        self.events.append(("node_started", job))

    @hookimpl
    def flowcraft_node_finished(self, job: Job, output: Any, action: str | None) -> None:
        self.events.append(("node_finished", job))

    @hookimpl
    def flowcraft_node_skipped(self, job: Job) -> None:
        self.events.append(("node_skipped", job))

    @hookimpl
    def flowcraft_node_failed(self, job: Job, error: dict[str, Any]) -> None:
        self.events.append(("node_failed", job))
        self.events.append(("node_failed_error", error))

    @hookimpl
    def flowcraft_node_retried(self, job: Job, error: dict[str, Any], delay: float) -> None:
        self.events.append(("node_retried", job))
        self.events.append(("node_retried_delay", delay))

    @hookimpl
    def flowcraft_expression_failed(self, job: Job, where: str, error: str) -> None:
        self.events.append(("expression_failed", {"job": job, "where": where, "error": error}))

    @hookimpl
    def flowcraft_job_enqueued(self, job: Job, delay: float) -> None:
        self.events.append(("job_enqueued", job))
