"""The lease keeper renews a running node's lease in time whatever its TTL, so no duplicate
delivery starts the node while it runs."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from flowcraft_core.engine import EngineSettings
from flowcraft_core.node import NodeContext
from flowcraft_core.protocols import Job

from .helpers import bp, harness


@pytest.mark.parametrize("lease_ttl", [0.3, 1.0])
async def test_a_running_nodes_lease_outlives_its_ttl(lease_ttl: float) -> None:
    ran: Counter[str] = Counter()
    running = asyncio.Event()

    async def slow(ctx: NodeContext) -> Any:
        ran[ctx.node_id] += 1
        running.set()
        await asyncio.sleep(3 * lease_ttl)
        return 1

    flow = bp([{"id": "n", "uses": "slow"}], [])
    settings = EngineSettings(lease_ttl=lease_ttl)
    async with harness({"slow": slow}, settings=settings) as h:
        run_id = await h.client.start(flow)
        await asyncio.wait_for(running.wait(), 5)
        await asyncio.sleep(2 * lease_ttl)  # past the TTL, with the node still running
        duplicate = await h.worker.engine._load(Job(run_id, "n", h.client.compile(flow).digest))
        assert duplicate is not None
        assert not duplicate.held, f"a {lease_ttl} s lease lapsed while its node ran"
        result = await h.client.result(run_id, timeout=10)
    assert result.status == "completed", result.error
    assert ran == Counter({"n": 1})
