"""A mixed deployment, as the README describes it: the queue on Redis, context and
coordination on PostgreSQL (whose fused run state then still applies: both stores are SQL)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
import services
from proc_nodes import registry
from procs import SLOW_FLOW, results, step_blueprint, step_outputs

from flowcraft_core import Client, Worker, open_backends
from flowcraft_core.engine.state import run_state_for
from flowcraft_core.plugins import default_manager
from flowcraft_sql.run_state import SQLRunState

REDIS = os.environ.get("FLOWCRAFT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_queue_on_redis_state_on_postgresql() -> None:
    services.require("postgresql")
    client_ = redis.Redis.from_url(REDIS.split("?")[0], socket_connect_timeout=1)
    try:
        client_.ping()
    except (redis.RedisError, OSError) as exc:
        pytest.fail(f"this test needs Redis at {REDIS} (FLOWCRAFT_TEST_REDIS_URL): {exc}")
    finally:
        client_.close()
    prefix = f"mixed-{uuid.uuid4().hex[:10]}"
    state = services.server_url("postgresql", ns=prefix.replace("-", "_"))
    backends = open_backends(state, queue=f"{REDIS}?prefix={prefix}")
    assert type(backends.queue).__module__.startswith("flowcraft_redis")
    fused = run_state_for(
        backends.context, backends.coordination, ttl=60, fused=True, hook=default_manager().hook
    )
    assert isinstance(fused, SQLRunState)
    flow = step_blueprint("mixed", SLOW_FLOW)
    client = Client(backends)
    async with Worker(registry, backends, concurrency=4):
        run_ids = [await client.start(flow, {"x": x}) for x in range(10)]
        got = await results(client, run_ids, 120)
    await backends.close()
    raw = redis.Redis.from_url(REDIS.split("?")[0])
    try:
        keys = list(raw.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            raw.delete(*keys)
    finally:
        raw.close()
    for x, result in enumerate(got):
        assert result.status == "completed", result
        assert result.outputs == step_outputs(SLOW_FLOW, x)
