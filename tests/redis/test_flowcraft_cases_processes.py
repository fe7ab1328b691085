"""Flowcraft's own test cases (``flowcraft_conformance.scenarios.FLOWCRAFT_SCENARIOS``, each
naming the Flowcraft test it comes from) run by real ``flowcraft worker`` processes on a real
Redis, with Flowcraft's expected outputs. The in-process conformance suite runs the same cases
under duplicated and crashed deliveries on memory and Redis; this proves the same results when
the node code lives in other processes (the class node and the fallback included)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from flowcraft_conformance.scenarios import FLOWCRAFT_SCENARIOS, resume_scenario
from procs import Procs

from flowcraft_core import Client, open_backends

REGISTRY = "flowcraft_conformance.scenarios:REGISTRY"


async def test_flowcraft_cases_on_worker_processes(
    tmp_path: Path, make_url: Callable[..., str]
) -> None:
    url = make_url()
    with Procs(tmp_path) as procs:
        procs.worker(url, REGISTRY, concurrency=4, ready=False)
        procs.worker(url, REGISTRY, concurrency=4, ready=False)
        for proc in procs.procs:
            proc.wait_ready()
        backends = open_backends(url)
        client = Client(backends)
        try:
            runs = [
                await client.start(s.flow, s.input, context=s.context) for s in FLOWCRAFT_SCENARIOS
            ]
            results = await asyncio.gather(*(client.result(r, 60) for r in runs))
            for i, scenario in enumerate(FLOWCRAFT_SCENARIOS):  # the waits: resume them
                results[i] = await resume_scenario(client, scenario, runs[i], results[i], 60)
            for scenario, result in zip(FLOWCRAFT_SCENARIOS, results, strict=True):
                assert result.status == scenario.status, (scenario.name, result, procs.stderr())
                assert result.outputs == scenario.outputs, (scenario.name, result.outputs)
                if scenario.final_context is not None:
                    assert result.context == scenario.final_context, (scenario.name, result)
        finally:
            await client.close()
            await backends.close()
