"""``flowcraft worker --registry ui_nodes:registry``: the metrics tests' nodes, plus ``hold``,
which runs until the Redis key ``$FLOWCRAFT_TEST_HOLD_KEY`` on ``$FLOWCRAFT_TEST_GATE_URL``
exists (so a browser can watch a run while it is running, then see it finish), and ``fussy``,
which fails until ``$FLOWCRAFT_TEST_FIX_KEY`` exists (so a failed run can be retried)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis.asyncio as aioredis
from metrics_nodes import registry as metrics_registry

from flowcraft_core import NodeContext


async def hold(ctx: NodeContext) -> Any:
    client = aioredis.Redis.from_url(os.environ["FLOWCRAFT_TEST_GATE_URL"])
    key = os.environ["FLOWCRAFT_TEST_HOLD_KEY"]
    try:
        deadline = time.monotonic() + 120
        while not await client.exists(key) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    return "released"


async def fussy(ctx: NodeContext) -> Any:
    """Fails until the key ``$FLOWCRAFT_TEST_FIX_KEY`` exists (a bug fixed, then retried)."""
    client = aioredis.Redis.from_url(os.environ["FLOWCRAFT_TEST_GATE_URL"])
    try:
        if not await client.exists(os.environ["FLOWCRAFT_TEST_FIX_KEY"]):
            raise RuntimeError("not fixed yet")
    finally:
        await client.aclose()
    return "fixed"


registry = {**metrics_registry, "hold": hold, "fussy": fussy}
