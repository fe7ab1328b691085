"""The asyncio connection pool of the driver (``connection._Pool``), on a real Redis: it never
opens more than ``max_connections``, a caller that finds them all busy waits its turn, and a
waiter that times out or is cancelled leaves the pool as usable as it found it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from flowcraft_redis import parse_url
from flowcraft_redis.connection import Script, _Pool, async_client


def _client(redis_url: str, *, max_connections: int, timeout: float = 5.0) -> redis.asyncio.Redis:
    sep = "&" if "?" in redis_url else "?"
    client = async_client(parse_url(f"{redis_url}{sep}max_connections={max_connections}"))
    pool = client.connection_pool
    assert isinstance(pool, _Pool)
    pool.timeout = timeout
    return client


def _opened(client: redis.asyncio.Redis) -> int:
    pool = client.connection_pool
    assert isinstance(pool, _Pool)
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_the_bound_holds_and_every_caller_is_served(redis_url: str) -> None:
    client = _client(redis_url, max_connections=3)
    try:
        # 30 commands that each hold a connection for 50 ms: at most 3 at once, all answered.
        replies = await asyncio.gather(
            *(client.blpop(["nothing"], timeout=0.05) for _ in range(30))
        )
        assert replies == [None] * 30
        assert _opened(client) == 3
        pool = client.connection_pool
        assert isinstance(pool, _Pool) and not pool._waiters
    finally:
        await client.aclose()


async def test_a_waiter_times_out_then_the_pool_still_serves(redis_url: str) -> None:
    client = _client(redis_url, max_connections=1, timeout=0.1)
    try:
        busy = asyncio.ensure_future(client.blpop(["nothing"], timeout=1))
        await asyncio.sleep(0.05)
        with pytest.raises(redis.ConnectionError, match="No connection available"):
            await client.ping()
        assert await busy is None
        assert await client.ping() is True
    finally:
        await client.aclose()


async def test_cancelled_waiters_pass_their_turn_on(redis_url: str) -> None:
    client = _client(redis_url, max_connections=1)
    try:
        busy = asyncio.ensure_future(client.blpop(["nothing"], timeout=0.2))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(client.ping()) for _ in range(5)]
        await asyncio.sleep(0.01)
        for task in waiting[:4]:
            task.cancel()
        # The last waiter is served when the busy connection comes back, though four waiters
        # ahead of it were cancelled; and a caller after them all does not wait for nothing.
        assert await asyncio.wait_for(waiting[4], 2) is True
        assert await busy is None
        assert await asyncio.wait_for(client.ping(), 1) is True
        assert _opened(client) == 1
    finally:
        await client.aclose()


async def test_a_woken_waiter_cancelled_before_it_runs_hands_the_slot_on(redis_url: str) -> None:
    client = _client(redis_url, max_connections=1)
    pool = client.connection_pool
    assert isinstance(pool, _Pool)
    try:
        held = await pool.get_connection()
        first = asyncio.ensure_future(pool.get_connection())
        second = asyncio.ensure_future(pool.get_connection())
        await asyncio.sleep(0.01)
        await pool.release(held)  # wakes `first` ...
        first.cancel()  # ... which is cancelled before it takes the slot
        connection = await asyncio.wait_for(second, 1)
        assert first.cancelled()
        await pool.release(connection)
        assert _opened(client) == 1
    finally:
        await client.aclose()


async def test_a_script_is_loaded_on_first_use_and_errors_leave_the_connection_clean(
    redis_url: str,
) -> None:
    client = _client(redis_url, max_connections=1)
    try:
        # A text no server has seen, so the first EVALSHA is refused (NOSCRIPT) and loads it.
        script = Script(client, f"-- {uuid.uuid4()}\nreturn {{ARGV[1], #ARGV}}")
        assert await script(args=["a", 2, 3.5]) == ["a", 3]
        assert await script(args=["b"]) == ["b", 1]
        failing = Script(client, "return redis.error_reply('nope')")
        with pytest.raises(redis.ResponseError, match="nope"):
            await failing()
        # The one connection read the error reply whole: the next call gets its own reply.
        assert await script(args=["c"]) == ["c", 1]
        assert _opened(client) == 1
    finally:
        await client.aclose()


async def test_a_script_cancelled_in_flight_leaves_no_reply_behind(redis_url: str) -> None:
    client = _client(redis_url, max_connections=1)
    try:
        # Busy for some tens of milliseconds inside Redis, so the cancellation lands mid-call.
        slow = Script(client, "local i = 0 while i < 5e6 do i = i + 1 end return 'slow'")
        fast = Script(client, "return ARGV[1]")
        task = asyncio.ensure_future(slow())
        await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled call's reply ('slow') is never read as this one's.
        assert await fast(args=["fast"]) == "fast"
    finally:
        await client.aclose()
