"""RedisCoordinationStore against the CoordinationStore contract, on a real Redis."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis

from flowcraft_core.protocols import CoordinationStore, Op
from flowcraft_memory import MemoryCoordinationStore
from flowcraft_redis import RedisCoordinationStore


async def test_is_a_coordination_store(coordination: RedisCoordinationStore) -> None:
    assert isinstance(coordination, CoordinationStore)


async def test_get_set_delete(coordination: RedisCoordinationStore) -> None:
    assert await coordination.get("k") is None
    await coordination.set("k", "v")
    assert await coordination.get("k") == "v"
    await coordination.set("k", "w")
    assert await coordination.get("k") == "w"
    assert await coordination.delete("k")
    assert not await coordination.delete("k")
    assert await coordination.get("k") is None


async def test_set_if_absent(coordination: RedisCoordinationStore) -> None:
    assert await coordination.set_if_absent("lock", "a")
    assert not await coordination.set_if_absent("lock", "b")
    assert await coordination.get("lock") == "a"


async def test_incr(coordination: RedisCoordinationStore) -> None:
    assert await coordination.incr("n") == 1
    assert await coordination.incr("n", 5) == 6
    assert await coordination.incr("n", -10) == -4
    assert await coordination.get("n") == "-4"


async def test_members(coordination: RedisCoordinationStore) -> None:
    assert await coordination.members("s") == set()
    assert await coordination.add_member("s", "a") == (True, 1)
    assert await coordination.add_member("s", "b") == (True, 2)
    assert await coordination.add_member("s", "a") == (False, 2)
    assert await coordination.members("s") == {"a", "b"}
    assert await coordination.remove_member("s", "a")
    assert not await coordination.remove_member("s", "a")
    assert await coordination.members("s") == {"b"}


async def test_reads_of_the_other_type_answer_as_absent(
    coordination: RedisCoordinationStore,
) -> None:
    # As in the reference model: a string key has no members, a set key has no string value.
    await coordination.set("str", "x")
    await coordination.add_member("set", "m")
    assert await coordination.batch(
        [
            Op.get("set"),
            Op.count("str"),
            Op.members("str"),
            Op.remove_member("str", "x"),
        ]
    ) == [None, 0, set(), False]
    with pytest.raises(redis.ResponseError):
        await coordination.add_member("str", "m")


async def test_batch_results_in_order(coordination: RedisCoordinationStore) -> None:
    results = await coordination.batch(
        [
            Op.set("a", "1"),
            Op.get("a"),
            Op.set_if_absent("a", "2"),
            Op.set_if_absent("b", "2"),
            Op.incr("c", 3),
            Op.add_member("s", "x"),
            Op.add_member("s", "x"),
            Op.count("s"),
            Op.members("s"),
            Op.remove_member("s", "x"),
            Op.count("s"),
            Op.delete("a"),
            Op.get("a"),
            Op.extend("b", 10),
            Op.extend("nothing", 10),
        ]
    )
    assert results == [
        None,
        "1",
        False,
        True,
        3,
        (True, 1),
        (False, 1),
        1,
        {"x"},
        True,
        0,
        True,
        None,
        True,
        False,
    ]
    assert await coordination.batch([]) == []


async def test_batch_matches_the_reference_model(coordination: RedisCoordinationStore) -> None:
    ops = [
        Op.incr("n", 2, ttl=60),
        Op.add_member("s", "a", ttl=60),
        Op.set_if_absent("m", "v"),
        Op.get("m"),
        Op.add_member("s", "b"),
        Op.members("s"),
        Op.incr("n"),
        Op.delete("s"),
        Op.count("s"),
    ]
    reference = MemoryCoordinationStore()
    assert await coordination.batch(ops) == await reference.batch(ops)


async def test_batch_rejects_malformed_ops_before_sending(
    coordination: RedisCoordinationStore,
) -> None:
    with pytest.raises(ValueError, match="needs a value"):
        await coordination.batch([Op.incr("n"), Op("set", "k")])
    with pytest.raises(ValueError, match="unknown"):
        await coordination.batch([Op("frobnicate", "k")])  # type: ignore[arg-type]
    assert await coordination.get("n") is None  # nothing of the batch ran


#: Connections per client in the races below. Four clients of at most 8 connections still keep
#: 32 commands in flight from different connections at once, interleaved by the server as any
#: load would be; without the cap each of the 300 racers got a connection of its own (401 open
#: at the peak), which on a shared test server starves every other test for nothing.
RACE_POOL = 8


def race_clients(redis_url: str, count: int = 4) -> list[RedisCoordinationStore]:
    """``count`` clients of one prefix, each with a pool of its own capped at RACE_POOL."""
    return [
        RedisCoordinationStore(f"{redis_url}&max_connections={RACE_POOL}") for _ in range(count)
    ]


async def test_batch_is_atomic_under_concurrency(redis_url: str) -> None:
    stores = race_clients(redis_url)
    try:
        # Each batch increments two counters; an observer batch must always see them equal.
        async def bump(i: int) -> None:
            await stores[i % 4].batch([Op.incr("a"), Op.incr("b")])

        async def observe(i: int) -> tuple[str | None, str | None]:
            a, b = await stores[i % 4].batch([Op.get("a"), Op.get("b")])
            return a, b

        tasks = [bump(i) for i in range(200)] + [observe(i) for i in range(100)]
        results = await asyncio.gather(*tasks)
        for seen in results[200:]:
            assert seen is not None
            a, b = seen
            assert a == b
        assert await stores[0].batch([Op.get("a"), Op.get("b")]) == ["200", "200"]
    finally:
        for store in stores:
            await store.close()


async def test_racing_increments_and_arrivals_count_exactly(redis_url: str) -> None:
    stores = race_clients(redis_url)
    try:
        incrs = [stores[i % 4].incr("n", ttl=60) for i in range(300)]
        # 100 distinct members, each added three times by different stores: counted once.
        adds = [stores[i % 4].add_member("join", f"edge{i % 100}", ttl=60) for i in range(300)]
        counts, arrivals = await asyncio.gather(asyncio.gather(*incrs), asyncio.gather(*adds))
        assert sorted(counts) == list(range(1, 301))
        assert sum(1 for added, _ in arrivals if added) == 100
        sizes = sorted(size for added, size in arrivals if added)
        assert sizes == list(range(1, 101))  # each new member saw a distinct size
        assert len(await stores[0].members("join")) == 100
    finally:
        for store in stores:
            await store.close()


# -- TTLs ------------------------------------------------------------------------------------


async def test_ttl_expiry(coordination: RedisCoordinationStore) -> None:
    await coordination.set("k", "v", ttl=0.2)
    assert await coordination.set_if_absent("lock", "v", ttl=0.2)
    await coordination.add_member("s", "a", ttl=0.2)
    await coordination.incr("n", ttl=0.2)
    await asyncio.sleep(0.35)
    assert await coordination.get("k") is None
    assert await coordination.set_if_absent("lock", "again")
    assert await coordination.members("s") == set()
    assert await coordination.incr("n") == 1


async def test_ttl_is_set_when_created_only(
    coordination: RedisCoordinationStore, raw: redis.Redis
) -> None:
    prefix = coordination.settings.prefix
    await coordination.incr("n", ttl=0.3)
    await asyncio.sleep(0.2)
    await coordination.incr("n", ttl=0.3)  # does not renew
    await coordination.add_member("s", "a")  # created without TTL
    await coordination.add_member("s", "b", ttl=0.1)  # not a creation: no TTL added
    await asyncio.sleep(0.2)
    assert await coordination.get("n") is None
    assert raw.pttl(f"{prefix}:co:s") == -1
    assert await coordination.members("s") == {"a", "b"}


async def test_set_without_ttl_clears_an_old_ttl(coordination: RedisCoordinationStore) -> None:
    await coordination.set("k", "v", ttl=0.2)
    await coordination.set("k", "w")
    await asyncio.sleep(0.3)
    assert await coordination.get("k") == "w"


async def test_extend_renews_existing_keys_only(coordination: RedisCoordinationStore) -> None:
    await coordination.set("lease", "me", ttl=0.25)
    await asyncio.sleep(0.15)
    assert await coordination.extend("lease", 0.3)
    await asyncio.sleep(0.2)
    assert await coordination.get("lease") == "me"  # would have expired without extend
    await asyncio.sleep(0.2)
    assert await coordination.get("lease") is None
    assert not await coordination.extend("lease", 10)
    assert await coordination.get("lease") is None


# -- signals ---------------------------------------------------------------------------------


async def test_wait_times_out_without_signal(coordination: RedisCoordinationStore) -> None:
    started = time.monotonic()
    assert await coordination.wait_any(["a"], 0.2) is None
    assert await coordination.wait_any(["a", "b"], 0.2) is None
    assert await coordination.wait_any(["a", "b"], 0) is None
    assert 0.35 < time.monotonic() - started < 1.5


async def test_signal_latches(coordination: RedisCoordinationStore) -> None:
    await coordination.signal("done")
    for _ in range(3):  # every later wait returns at once, and keeps the latch
        assert await coordination.wait_any(["done"], 5) == "done"
        assert await coordination.wait_any(["other", "done"], 5) == "done"
        assert await coordination.wait_any(["done"], 0) == "done"
    await coordination.signal("done")  # signalling again is harmless


async def test_wait_wakes_on_a_signal_from_another_client(redis_url: str) -> None:
    waiters_store = RedisCoordinationStore(redis_url)
    signaller = RedisCoordinationStore(redis_url)
    try:
        woken: list[tuple[str | None, float]] = []

        async def wait(keys: list[str]) -> None:
            result = await waiters_store.wait_any(keys, 10)
            woken.append((result, time.monotonic()))

        waiters = [
            asyncio.create_task(wait(["done"])),
            asyncio.create_task(wait(["done"])),
            asyncio.create_task(wait(["idle", "done"])),
            asyncio.create_task(wait(["done", "idle", "x"])),
        ]
        await asyncio.sleep(0.3)
        assert woken == []  # all blocked
        signalled_at = time.monotonic()
        await signaller.signal("done", ttl=30)
        await asyncio.wait_for(asyncio.gather(*waiters), 2)
        assert [key for key, _ in woken] == ["done"] * 4
        assert max(at for _, at in woken) - signalled_at < 0.3
        # The latch survived every waiter, TTL included: a late one returns at once.
        assert await waiters_store.wait_any(["done"], 0) == "done"
        assert await waiters_store.wait_any(["done"], 1) == "done"
        pttl = await waiters_store.connections.client.pttl(waiters_store.signal_key("done"))
        assert 0 < pttl <= 30_000
    finally:
        await waiters_store.close()
        await signaller.close()


async def test_wait_any_returns_the_signalled_key(redis_url: str) -> None:
    store = RedisCoordinationStore(redis_url)
    try:
        task = asyncio.create_task(store.wait_any(["a", "b", "c"], 10))
        await asyncio.sleep(0.1)
        await store.signal("b")
        assert await asyncio.wait_for(task, 2) == "b"
    finally:
        await store.close()


async def test_signal_expires_with_its_ttl(coordination: RedisCoordinationStore) -> None:
    await coordination.signal("s", ttl=0.2)
    assert await coordination.wait_any(["s"], 0) == "s"
    await asyncio.sleep(0.3)
    assert await coordination.wait_any(["s"], 0.05) is None


async def test_cancelled_wait_leaves_the_store_usable(
    coordination: RedisCoordinationStore,
) -> None:
    task = asyncio.create_task(coordination.wait_any(["a", "b"], None))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await coordination.signal("a")
    assert await coordination.wait_any(["a", "b"], 1) == "a"
    assert await coordination.wait_any(["a"], 1) == "a"


async def test_a_wait_cancelled_at_any_moment_ends_cancelled(redis_url: str) -> None:
    # Cancelled a few milliseconds in, a wait is often just sending its commands. redis-py
    # sends under asyncio.wait_for, which on Python 3.11 dropped a cancellation arriving as
    # a send completed: the wait then blocked forever on a BLMOVE that nobody would signal.
    store = RedisCoordinationStore(redis_url)
    rng = random.Random(7)
    try:
        for _ in range(200):
            delay = rng.random() * 0.005
            task = asyncio.create_task(store.wait_any(["a", "b"], None))
            await asyncio.sleep(delay)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            if not done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert done, f"a wait cancelled {delay * 1000:.2f} ms in went on waiting"
            assert task.cancelled()
        await store.signal("a")
        assert await store.wait_any(["a", "b"], 1) == "a"
    finally:
        await store.close()


async def test_a_memory_wait_cancelled_as_it_is_signalled_ends_cancelled() -> None:
    # The signal and the cancellation land in the same turn of the loop; asyncio.wait_for on
    # Python 3.11 returned the signal and dropped the cancellation, so the waiter went on.
    store = MemoryCoordinationStore()
    task = asyncio.create_task(store.wait_any(["a"], 5))
    await asyncio.sleep(0)
    await store.signal("a")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.wait_any(["a"], 1) == "a"
