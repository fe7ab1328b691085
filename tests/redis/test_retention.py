"""A finished run leaves nothing behind in Redis once its retention has passed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from flowcraft_conformance.scenarios import SCENARIOS_BY_NAME, registry

from flowcraft_core import Client, EngineSettings, Worker, open_backends


@pytest.mark.parametrize("name", ["fanout_fanin", "failure", "retry"])
async def test_every_key_of_a_finished_run_expires(make_url: Callable[..., str], name: str) -> None:
    url = make_url()
    settings = EngineSettings(retention=1.0)
    backends = open_backends(url)
    client = Client(backends, settings=settings)
    scenario = SCENARIOS_BY_NAME[name]
    try:
        async with Worker(registry(), backends, settings=settings):
            run_id = await client.start(scenario.flow, scenario.input)
            result = await client.result(run_id, 20)
        assert result.status == scenario.status
        raw = redis.Redis.from_url(url.split("?")[0])
        keys = [k for k in raw.scan_iter(count=1000) if run_id.encode() in k]
        assert keys, "the run wrote keys of its own"
        assert all(raw.pttl(k) > 0 for k in keys), [k for k in keys if raw.pttl(k) <= 0]
        await asyncio.sleep(1.3)
        left = [k for k in raw.scan_iter(count=1000) if run_id.encode() in k]
        raw.close()
        assert left == [], left
    finally:
        await backends.close()


async def test_a_cancelled_run_expires_like_a_finished_one(make_url: Callable[..., str]) -> None:
    url = make_url()
    settings = EngineSettings(retention=1.0)
    backends = open_backends(url)
    client = Client(backends, settings=settings)
    scenario = SCENARIOS_BY_NAME["sleep"]  # its sleep node leaves a key of its own
    try:
        async with Worker(registry(), backends, settings=settings):
            run_id = await client.start(scenario.flow, scenario.input)
            await asyncio.sleep(0.1)  # inside the 200 ms nap
            assert await client.cancel(run_id)
            result = await client.result(run_id, 5)
        assert result.status == "cancelled"
        raw = redis.Redis.from_url(url.split("?")[0])
        keys = [k for k in raw.scan_iter(count=1000) if run_id.encode() in k]
        assert any(b":sleep:" in k for k in keys), keys
        await asyncio.sleep(1.3)
        left = [k for k in raw.scan_iter(count=1000) if run_id.encode() in k]
        raw.close()
        assert left == [], left
    finally:
        await backends.close()
