"""Run a whole workflow in this process: client and worker on the same backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.catalog import as_catalog, closure
from flowcraft_core.client import Client, RunResult
from flowcraft_core.drivers import Backends, open_backends
from flowcraft_core.engine import EngineSettings
from flowcraft_core.registry import Registry
from flowcraft_core.validation import check
from flowcraft_core.worker import Worker


async def run_workflow(
    blueprint: Blueprint,
    registry: Registry | dict[str, Any],
    input: Any = None,
    *,
    context: dict[str, Any] | None = None,
    backend: str | Backends | None = "memory://",
    concurrency: int = 8,
    timeout: float | None = None,
    settings: EngineSettings | None = None,
    pm: pluggy.PluginManager | None = None,
    blueprints: Iterable[Blueprint] | Mapping[str, Blueprint] = (),
) -> RunResult:
    """Start ``blueprint`` and work on it here until it is finished or awaiting a resume.

    Returns (or raises :class:`~flowcraft_core.client.RunTimeout` after ``timeout`` seconds)
    without waiting for nodes still running: they are cancelled, uncommitted, and their jobs
    handed back to the queue (on a shared backend, another worker takes them up).
    ``blueprints`` is the catalog its subflows find their blueprints in."""
    registry = Registry.of(registry)
    check(blueprint, known_uses=registry)
    catalog = as_catalog(blueprints)
    for child in closure(blueprint, catalog).values() if catalog else ():
        check(child, known_uses=registry)
    backends = backend if isinstance(backend, Backends) else open_backends(backend, pm=pm)
    client = Client(backends, settings=settings, pm=pm, blueprints=catalog)
    worker = Worker(
        registry,
        backends,
        concurrency=concurrency,
        settings=settings,
        pm=pm,
        blueprints=catalog,
    )
    worker.engine.remember(client.compile(blueprint))
    await worker.start()
    try:
        run_id = await client.start(blueprint, input, context=context)
        return await client.result(run_id, timeout)
    finally:
        # Not a drain: once the run is finished, awaiting, or given up on, a node still
        # running (a failed run's sibling, the node that outlived the timeout) must not hold
        # the caller; the step it is in commits whole or not at all, and a redelivery redoes it.
        await worker.stop(drain=False)


def run_workflow_sync(
    blueprint: Blueprint, registry: Registry | dict[str, Any], input: Any = None, **kwargs: Any
) -> RunResult:
    """:func:`run_workflow` for synchronous code."""
    return asyncio.run(run_workflow(blueprint, registry, input, **kwargs))
