"""The Redis driver's plugin hooks, its connections and its start-up check."""

from __future__ import annotations

import socket
import time

import pytest

from flowcraft_core.drivers import installed_drivers, open_backends
from flowcraft_core.errors import DriverError
from flowcraft_core.protocols import Job, Op
from flowcraft_redis import (
    RedisContextStore,
    RedisCoordinationStore,
    RedisQueue,
    check_connection,
    driver,
    parse_url,
)
from flowcraft_redis.connection import async_client, blocking_client, sync_client


def test_driver_info() -> None:
    info = driver.flowcraft_driver_info()
    assert info.name == "redis"
    assert info.schemes == ("redis", "rediss")
    caps = info.capabilities
    assert caps["delays"] is True
    assert caps["ttl"] is True
    assert caps["multi_process"] is True
    assert 0 < caps["redelivery_after_crash_s"] < 10


def test_entry_point_is_installed() -> None:
    assert "redis" in [info.name for info in installed_drivers()]


def test_other_schemes_are_not_ours() -> None:
    for url in ("memory://", "sqlite:///x.db", "postgresql://h/db"):
        assert driver.flowcraft_make_queue(url) is None
        assert driver.flowcraft_make_context(url) is None
        assert driver.flowcraft_make_coordination(url) is None


def test_bad_url_is_a_driver_error() -> None:
    with pytest.raises(DriverError, match="invalid Redis URL"):
        driver.flowcraft_make_context("redis://localhost?heartbeat=never")


async def test_backends_from_one_url(redis_url: str) -> None:
    backends = open_backends(redis_url)
    try:
        assert isinstance(backends.queue, RedisQueue)
        assert isinstance(backends.context, RedisContextStore)
        assert isinstance(backends.coordination, RedisCoordinationStore)
        # The two stores of one URL share one pool.
        assert backends.context.connections is backends.coordination.connections
        await backends.context.set("r", "k", {"v": 1})
        assert await backends.coordination.batch([Op.incr("n")]) == [1]
        assert await backends.context.get("r", "k") == {"v": 1}
        await backends.queue.enqueue(Job("r", "n", "f"))
        assert await backends.queue.size() == 1
        await backends.queue.purge()
    finally:
        await backends.close()


def test_clients_never_retry_a_command() -> None:
    # redis-py 8 would retry a timed-out INCR or commit script up to 10 times.
    settings = parse_url("redis://localhost/0")
    for client in (async_client(settings), blocking_client(settings), sync_client(settings)):
        retry = client.connection_pool.connection_kwargs["retry"]
        assert retry.get_retries() == 0
    assert blocking_client(settings).connection_pool.connection_kwargs["socket_timeout"] is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_unreachable_redis_is_one_clear_line() -> None:
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/3"
    started = time.monotonic()
    with pytest.raises(DriverError) as info:
        await check_connection(url)
    message = str(info.value)
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:")
    assert "hunter2" not in message
    assert "\n" not in message
    assert time.monotonic() - started < 5
    for store in (RedisContextStore(url), RedisCoordinationStore(url)):
        with pytest.raises(DriverError, match="cannot reach Redis"):
            await store.ping()
        await store.close()
    queue = RedisQueue(url)
    with pytest.raises(DriverError, match="cannot reach Redis"):
        await queue.ping()
    await queue.close()


async def test_reachable_redis_passes_the_check(redis_url: str) -> None:
    await check_connection(redis_url)
    store = RedisContextStore(redis_url)
    await store.ping()
    await store.close()
