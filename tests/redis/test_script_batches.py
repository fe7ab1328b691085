"""Script calls made in one turn of the event loop share one write on one connection
(``connection._Batches``), on a real Redis: each caller still gets exactly its own reply, an
error fails only its own call, and a cancelled caller or a connection lost mid-batch never hands
a reply to the wrong caller or leaves one unread for the next."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from flowcraft_redis import parse_url
from flowcraft_redis.connection import Script, _Pool, async_client

#: Busy inside Redis for some tens of milliseconds, so a fault lands while the batch is in flight.
SLOW = "local i = 0 while i < 5e6 do i = i + 1 end return 'slow'"


def _client(redis_url: str, *, max_connections: int = 100) -> redis.asyncio.Redis:
    sep = "&" if "?" in redis_url else "?"
    return async_client(parse_url(f"{redis_url}{sep}max_connections={max_connections}"))


def _pool(client: redis.asyncio.Redis) -> _Pool:
    pool = client.connection_pool
    assert isinstance(pool, _Pool)
    return pool


def _opened(client: redis.asyncio.Redis) -> int:
    pool = _pool(client)
    return len(pool._available_connections) + len(pool._in_use_connections)


def _fresh(body: str) -> str:
    """``body`` as a script text no server has seen, so its first EVALSHA is refused."""
    return f"-- {uuid.uuid4()}\n{body}"


async def test_one_turns_calls_share_a_connection_and_each_gets_its_own_reply(
    redis_url: str,
) -> None:
    client = _client(redis_url)
    try:
        echo = Script(client, _fresh("return {ARGV[1], #ARGV}"))
        other = Script(client, _fresh("return 'other:' .. ARGV[1]"))
        failing = Script(client, "return redis.error_reply('nope')")
        calls = [echo(args=[str(i)]) if i % 3 else other(args=[str(i)]) for i in range(30)]
        calls.insert(7, failing())
        calls.insert(15, echo(args=[None]))  # refused before sending: no reply to wait for
        replies = await asyncio.gather(*calls, return_exceptions=True)
        assert isinstance(replies[7], redis.ResponseError) and "nope" in str(replies[7])
        assert isinstance(replies[15], redis.DataError)
        del replies[15], replies[7]
        # Two scripts new to the server (NOSCRIPT): both loaded and their calls sent again.
        assert replies == [[str(i), 1] if i % 3 else f"other:{i}" for i in range(30)]
        # Thirty-two concurrent calls, one connection: they went out together.
        assert _opened(client) == 1
        assert await echo(args=["after"]) == ["after", 1]
    finally:
        await client.aclose()


async def test_a_caller_cancelled_mid_batch_leaves_the_others_their_replies(
    redis_url: str,
) -> None:
    client = _client(redis_url, max_connections=1)
    try:
        slow, echo = Script(client, SLOW), Script(client, "return ARGV[1]")
        first = asyncio.ensure_future(slow())
        behind = [asyncio.ensure_future(echo(args=[f"e{i}"])) for i in range(3)]
        await asyncio.sleep(0.005)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await asyncio.gather(*behind) == ["e0", "e1", "e2"]
        # The cancelled call's reply ('slow') was read by its batch, not left for this one.
        assert await echo(args=["next"]) == "next"
        assert _opened(client) == 1
    finally:
        await client.aclose()


async def test_a_connection_lost_mid_batch_fails_every_unanswered_call(redis_url: str) -> None:
    client = _client(redis_url)
    try:
        slow, echo = Script(client, SLOW), Script(client, "return ARGV[1]")
        batch = [asyncio.ensure_future(slow())]
        batch += [asyncio.ensure_future(echo(args=[f"e{i}"])) for i in range(3)]
        await asyncio.sleep(0.005)
        (conn,) = _pool(client)._in_use_connections
        writer = conn._writer
        assert writer is not None
        writer.transport.abort()  # the network cut while Redis runs the slow script
        outcomes = await asyncio.wait_for(asyncio.gather(*batch, return_exceptions=True), 5)
        # No call of the batch got a reply at all, let alone another's: each may or may not
        # have run, which the engine's redelivery covers, as for a lone call.
        assert all(isinstance(o, redis.ConnectionError) for o in outcomes), outcomes
        assert await echo(args=["after"]) == "after"
    finally:
        await client.aclose()


async def test_calls_of_later_turns_go_out_while_a_batch_is_in_flight(redis_url: str) -> None:
    client = _client(redis_url)
    try:
        slow, echo = Script(client, SLOW), Script(client, "return ARGV[1]")
        busy = asyncio.ensure_future(slow())
        await asyncio.sleep(0.005)
        # Not queued behind the slow batch: a new batch on a second connection. Redis runs one
        # script at a time, so it waits for the slow one there, not in this process.
        assert await asyncio.wait_for(echo(args=["later"]), 5) == "later"
        assert await busy == "slow"
        assert _opened(client) == 2
    finally:
        await client.aclose()
