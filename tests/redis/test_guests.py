"""Plugins are guests on Redis too: a lifecycle hook that raises, in an in-process worker and in
real ``flowcraft worker`` processes, neither fails nor repeats a job; it is logged naming the
plugin."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
from guest_plugin import COMPLETES, COMPLETES_OUTPUTS, FAILS, Boom, registry
from procs import Procs

from flowcraft_core import Client, Registry, Worker, open_backends
from flowcraft_core.hookspecs import LIFECYCLE
from flowcraft_core.plugins import new_manager

WORKER_SIDE = LIFECYCLE - {"flowcraft_run_started"}  # the client announces a start


async def run_both(client: Client) -> None:
    done = await client.result(await client.start(COMPLETES, 1), timeout=20)
    assert done.status == "completed", done.error
    assert done.outputs == COMPLETES_OUTPUTS
    failed = await client.result(await client.start(FAILS, 1), timeout=20)
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error["node"], failed.error["type"]) == ("x", "KeyError")
    assert failed.outputs == {"a": 2}


@pytest.mark.parametrize("hook", sorted(LIFECYCLE))
async def test_a_raising_plugin_cannot_hurt_a_run_on_redis(
    hook: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="flowcraft_core.plugins")
    boom = Boom(hook)
    pm = new_manager(load_entry_points=True)
    pm.register(boom, name="boom")
    backends = open_backends(redis_url, pm=pm)
    client = Client(backends, pm=pm)
    try:
        async with Worker(Registry.of(registry), backends, pm=pm):
            await run_both(client)
    finally:
        await backends.close()
    # As often as a well-behaved plugin would be called: the raise caused no repeat.
    expected = {
        "flowcraft_run_started": 2,
        "flowcraft_run_finished": 2,
        "flowcraft_node_started": 6,  # a, f twice, b; a, x
        "flowcraft_node_finished": 4,
        "flowcraft_node_failed": 1,
        "flowcraft_node_retried": 1,
        "flowcraft_expression_failed": 1,
        "flowcraft_node_skipped": 1,
    }
    if hook in expected:
        assert boom.calls[hook] == expected[hook]
    logged = [
        r
        for r in caplog.records
        if r.name == "flowcraft_core.plugins" and f"'boom' raised in {hook}" in r.getMessage()
    ]
    assert len(logged) == boom.calls[hook] > 0


async def test_worker_processes_outlive_a_plugin_that_raises_everywhere(
    tmp_path: Path, redis_url: str
) -> None:
    pm = new_manager(load_entry_points=True)
    pm.register(Boom(*LIFECYCLE), name="boom")  # the client's hooks raise too
    backends = open_backends(redis_url, pm=pm)
    client = Client(backends, pm=pm)
    with Procs(tmp_path) as procs:
        worker = procs.worker(redis_url, "guest_worker:registry", concurrency=2)
        try:
            await run_both(client)
        finally:
            await backends.close()
        # A run's result is visible once finalize commits, before the worker's hooks that follow
        # it have run: a graceful stop drains the job, so every hook has logged by exit.
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr()
        stderr = worker.stderr()
    for hook in WORKER_SIDE:
        assert f"flowcraft plugin 'boom' raised in {hook}" in stderr, stderr
    assert f"RuntimeError: boom in {sorted(WORKER_SIDE)[0]}" in stderr
