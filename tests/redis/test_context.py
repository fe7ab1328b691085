"""RedisContextStore against the ContextStore contract, on a real Redis."""

from __future__ import annotations

import asyncio
import math

import pytest
import redis

from flowcraft_core.protocols import MISSING, ContextStore
from flowcraft_redis import RedisContextStore


async def test_is_a_context_store(context: RedisContextStore) -> None:
    assert isinstance(context, ContextStore)


async def test_values_round_trip_and_none_is_not_missing(context: RedisContextStore) -> None:
    values = {"n": None, "i": 3, "f": 1.5, "s": "é", "l": [1, {"a": None}], "d": {"x": [True]}}
    for key, value in values.items():
        await context.set("r1", key, value)
    for key, value in values.items():
        assert await context.get("r1", key) == value
        assert await context.has("r1", key)
    assert await context.get("r1", "absent") is MISSING
    assert not await context.has("r1", "absent")
    assert await context.get_all("r1") == values


async def test_runs_are_isolated(context: RedisContextStore) -> None:
    await context.set("a", "k", 1)
    assert await context.get("b", "k") is MISSING
    assert await context.get_all("b") == {}


async def test_get_many_returns_only_present_keys(context: RedisContextStore) -> None:
    await context.patch("r", {"a": 1, "b": None})
    assert await context.get_many("r", ["a", "b", "c", "a"]) == {"a": 1, "b": None}
    assert await context.get_many("r", []) == {}


async def test_delete(context: RedisContextStore) -> None:
    await context.set("r", "k", 1)
    await context.delete("r", "k")
    await context.delete("r", "never")
    assert await context.get("r", "k") is MISSING


async def test_patch_writes_and_deletes_atomically(
    context: RedisContextStore, raw: redis.Redis
) -> None:
    await context.patch("r", {"a": 1, "b": 2})
    await context.patch("r", {"c": 3, "a": 10}, delete=["b", "zz"])
    assert await context.get_all("r") == {"a": 10, "c": 3}
    await context.patch("r", {}, delete=[])  # nothing to do, nothing sent
    # A key both written and deleted ends up deleted (writes go first).
    await context.patch("r", {"x": 1}, delete=["x"])
    assert not await context.has("r", "x")


async def test_patch_is_seen_whole_or_not_at_all(redis_url: str) -> None:
    writer, reader = RedisContextStore(redis_url), RedisContextStore(redis_url)
    try:
        keys = [f"k{i}" for i in range(50)]
        stop = asyncio.Event()
        torn: list[dict[str, object]] = []

        async def read() -> None:
            while not stop.is_set():
                seen = await reader.get_many("r", keys)
                if len(set(seen.values())) > 1:
                    torn.append(seen)

        readers = [asyncio.create_task(read()) for _ in range(3)]
        for n in range(40):
            await writer.patch("r", dict.fromkeys(keys, n))
        stop.set()
        await asyncio.gather(*readers)
        assert torn == []
    finally:
        await writer.close()
        await reader.close()


@pytest.mark.parametrize("bad", [object(), {1, 2}, math.nan, float("inf")])
async def test_unserialisable_values_write_nothing(context: RedisContextStore, bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        await context.set("r", "k", bad)
    with pytest.raises((TypeError, ValueError)):
        await context.patch("r", {"ok": 1, "bad": bad})
    with pytest.raises((TypeError, ValueError)):
        await context.commit("r", "g", {"ok": 1, "bad": bad})
    assert await context.get_all("r") == {}


async def test_commit_is_first_wins(context: RedisContextStore) -> None:
    assert await context.commit("r", "done", {"done": True, "out": 1})
    assert not await context.commit("r", "done", {"done": True, "out": 2, "extra": 3})
    assert await context.get_all("r") == {"done": True, "out": 1}


async def test_commit_writes_the_guard_even_if_not_given(context: RedisContextStore) -> None:
    assert await context.commit("r", "g", {"out": 1})
    assert await context.get_many("r", ["g", "out"]) == {"g": None, "out": 1}
    assert not await context.commit("r", "g", {"out": 2})


async def test_concurrent_commits_have_one_winner(redis_url: str) -> None:
    stores = [RedisContextStore(redis_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(stores[i % 4].commit("r", "g", {"g": i, "who": i}) for i in range(40))
        )
        assert sum(results) == 1
        winner = results.index(True)
        assert await stores[0].get_many("r", ["g", "who"]) == {"g": winner, "who": winner}
    finally:
        for store in stores:
            await store.close()


async def test_commit_with_many_fields(context: RedisContextStore) -> None:
    fields = {f"k{i}": i for i in range(5000)}
    assert await context.commit("r", "k0", fields)
    assert len(await context.get_all("r")) == 5000


async def test_expire_drops_the_whole_run(context: RedisContextStore) -> None:
    await context.patch("r", {"a": 1, "b": 2})
    await context.patch("other", {"a": 1})
    await context.expire("r", 0.2)
    assert await context.get("r", "a") == 1
    await asyncio.sleep(0.35)
    assert await context.get_all("r") == {}
    assert await context.get("other", "a") == 1


async def test_keys_live_under_the_prefix(context: RedisContextStore, raw: redis.Redis) -> None:
    await context.set("run-1", "k", {"v": 1})
    name = f"{context.settings.prefix}:ctx:run-1"
    assert raw.hgetall(name) == {"k": '{"v":1}'}


async def test_close_is_idempotent_and_a_closed_store_reconnects(redis_url: str) -> None:
    store = RedisContextStore(redis_url)
    await store.set("r", "k", 1)
    await store.close()
    await store.close()
    assert await store.get("r", "k") == 1
    await store.connections.close()


def test_one_store_serves_several_event_loops(redis_url: str) -> None:
    # redis.asyncio connections belong to one loop: the store keeps one pool per loop.
    store = RedisContextStore(redis_url)

    async def use(n: int) -> object:
        await store.set("r", "k", n)
        return await store.get("r", "k")

    assert asyncio.run(use(1)) == 1
    assert asyncio.run(use(2)) == 2

    async def close() -> None:
        await store.close()

    asyncio.run(close())
