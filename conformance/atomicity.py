"""Contract: coordination operations are atomic under concurrency.

Many asyncio tasks race on one key (through two clients when the driver is reachable by URL)
and must get exactly the answers of a serial execution:

* ``incr``: the results are exactly 1..N, the final value is N;
* ``set_if_absent``: exactly one winner, whose value is stored;
* ``add_member`` of overlapping members: each member is reported ``added`` exactly once, the
  sizes reported by those adds are exactly 1..M, the final count is M;
* ``batch([add_member, count])`` and ``batch([incr, get])``: nothing runs between the two.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from flowcraft_core.protocols import CoordinationStore, Op

from .capabilities import requires
from .harness import Harness

RACERS = 60


def clients(harness: Harness, count: int = 2) -> tuple[list[CoordinationStore], str]:
    """``count`` clients of one namespace when the driver is reachable by URL (they share it),
    else one client; and a fresh key prefix."""
    namespace = harness.new_id("race")
    opened = count if harness.target.url is not None else 1
    stores = []
    for _ in range(opened):
        store = harness.open(namespace, components=["coordination"]).coordination
        assert store is not None
        stores.append(store)
    return stores, namespace + ":"


async def _gather(n: int, stores: list[CoordinationStore], fn: Any) -> list[Any]:
    return list(await asyncio.gather(*(fn(stores[i % len(stores)], i) for i in range(n))))


@requires("coordination")
class AtomicityContract:
    """The atomicity contract (see the module docstring)."""

    contract = "coordination atomicity"

    def test_incr_race(self, conformance: Harness) -> None:
        stores, k = clients(conformance)

        async def one(store: CoordinationStore, i: int) -> int:
            return await store.incr(k + "n")

        results = conformance.run(_gather(RACERS, stores, one))
        final = conformance.run(stores[0].get(k + "n"))
        assert sorted(results) == list(range(1, RACERS + 1)), (
            f"{RACERS} racing incr returned {sorted(results)}, not 1..{RACERS}: lost updates"
        )
        assert final == str(RACERS), f"after {RACERS} incr the counter holds {final!r}"

    def test_incr_race_with_amounts(self, conformance: Harness) -> None:
        stores, k = clients(conformance)

        async def one(store: CoordinationStore, i: int) -> int:
            return await store.incr(k + "n", i - 10)

        conformance.run(_gather(RACERS, stores, one))
        final = conformance.run(stores[0].get(k + "n"))
        expected = sum(i - 10 for i in range(RACERS))
        assert final == str(expected), f"racing incr by amounts gave {final!r}, not {expected}"

    def test_set_if_absent_race(self, conformance: Harness) -> None:
        stores, k = clients(conformance)

        async def one(store: CoordinationStore, i: int) -> bool:
            return await store.set_if_absent(k + "lock", f"owner-{i}", ttl=30.0)

        won = conformance.run(_gather(RACERS, stores, one))
        winners = [i for i, w in enumerate(won) if w]
        assert len(winners) == 1, f"{len(winners)} of {RACERS} set_if_absent calls won"
        held = conformance.run(stores[0].get(k + "lock"))
        assert held == f"owner-{winners[0]}", f"the lock holds {held!r}, not the winner's value"

    def test_add_member_race(self, conformance: Harness) -> None:
        stores, k = clients(conformance)
        distinct = 20

        async def one(store: CoordinationStore, i: int) -> tuple[bool, int]:
            return await store.add_member(k + "s", f"m{i % distinct}")

        results = conformance.run(_gather(RACERS, stores, one))
        added = Counter(f"m{i % distinct}" for i, (a, _) in enumerate(results) if a)
        twice = sorted(m for m, n in added.items() if n > 1)
        assert not twice, f"members reported added more than once: {twice}"
        assert len(added) == distinct, f"only {len(added)} of {distinct} members were 'added'"
        sizes = sorted(size for a, size in results if a)
        assert sizes == list(range(1, distinct + 1)), f"sizes reported by new adds: {sizes}"
        count = conformance.run(stores[0].batch([Op.count(k + "s")]))[0]
        assert count == distinct, f"count is {count} after adding {distinct} distinct members"

    def test_batch_is_atomic(self, conformance: Harness) -> None:
        stores, k = clients(conformance)
        distinct = 15

        async def one(store: CoordinationStore, i: int) -> list[Any]:
            return await store.batch(
                [Op.add_member(k + "s", f"m{i % distinct}"), Op.count(k + "s")]
            )

        results = conformance.run(_gather(RACERS, stores, one))
        torn = [(tuple(add), count) for add, count in results if add[1] != count]
        assert not torn, f"another client ran between a batch's add_member and count: {torn[:3]}"
        sizes = sorted(add[1] for add, _ in results if add[0])
        assert sizes == list(range(1, distinct + 1)), f"sizes reported by new adds: {sizes}"

    def test_batch_incr_then_get_is_atomic(self, conformance: Harness) -> None:
        stores, k = clients(conformance)

        async def one(store: CoordinationStore, i: int) -> list[Any]:
            return await store.batch([Op.incr(k + "n"), Op.get(k + "n")])

        results = conformance.run(_gather(RACERS, stores, one))
        torn = [r for r in results if str(r[0]) != r[1]]
        assert not torn, f"another client ran between a batch's incr and get: {torn[:3]}"
        assert sorted(r[0] for r in results) == list(range(1, RACERS + 1))
