"""Contract: the context store (:class:`flowcraft_core.protocols.ContextStore`).

Guaranteed, and checked against a dict-of-dicts model with JSON values of every shape:

* a value reads back as its JSON round trip, types included; ``None`` is a value, distinct from
  an absent key (:data:`MISSING`);
* runs are isolated from each other;
* values of realistic sizes (up to a few MiB) are kept whole, by every writing operation;
* ``get_many`` returns exactly the present keys asked for, however many (hundreds, in one
  call); ``get_all`` the whole run;
* ``patch`` applies all its writes and deletes, atomically (no reader sees half of it);
* ``commit`` is first-wins on its guard: it writes everything or nothing, exactly one of several
  racing commits with one guard wins, and a repeated commit changes nothing;
* with ``ttl``, ``expire(run, s)`` drops that run (only) ``s`` seconds later.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from flowcraft_core.protocols import MISSING, ContextStore

from .capabilities import requires
from .facade import SyncContextStore
from .harness import BoundMachine, Harness, run_machine
from .strategies import identical, round_trip, sized_values

KEYS = ("a", "b", "node:x#0", "ключ", "sp ace", "emoji-\U0001f642", "dotted.key", "{tag}")
GUARDS = ("done:a", "done:b", "done:ключ")

EXPIRE = 0.3  # seconds, for the real-time expire check

keys = st.sampled_from(KEYS)
guards = st.sampled_from(GUARDS)
runs = st.integers(0, 2)
BULK = 400  # keys of the bulk rules: reads and writes of hundreds of keys in one call
bulk_counts = st.integers(1, BULK)
json_values = sized_values  # every rule writes values of every size


class ContextMachine(BoundMachine):
    """ContextStore against ``{run: {key: json_round_trip(value)}}``."""

    def __init__(self) -> None:
        super().__init__()
        h = self.harness
        token = h.new_id("ctx")
        self.parts = h.open(components=["context"])
        assert self.parts.context is not None
        self.store = SyncContextStore(self.parts.context, h.loop)
        self.runs = [f"{token}-run", f"{token}-rün-2", f"{token}:3"]
        self.model: list[dict[str, Any]] = [{}, {}, {}]

    def teardown(self) -> None:
        self.harness.release(self.parts)

    def _check(self, what: str, got: Any, expected: Any) -> None:
        assert identical(got, expected), (
            f"{what}: store gave {_short(got)}, expected {_short(expected)}"
        )

    @rule(run=runs, key=keys, value=json_values)
    def set(self, run: int, key: str, value: Any) -> None:
        self.store.set(self.runs[run], key, value)
        self.model[run][key] = round_trip(value)

    @rule(run=runs, key=keys)
    def delete(self, run: int, key: str) -> None:
        self.store.delete(self.runs[run], key)
        self.model[run].pop(key, None)

    @rule(run=runs, key=keys)
    def get(self, run: int, key: str) -> None:
        got = self.store.get(self.runs[run], key)
        expected = self.model[run].get(key, MISSING)
        if expected is MISSING:
            assert got is MISSING, f"get({key!r}) of an absent key gave {got!r}, not MISSING"
        else:
            self._check(f"get({key!r})", got, expected)

    @rule(run=runs, key=keys)
    def has(self, run: int, key: str) -> None:
        got = self.store.has(self.runs[run], key)
        assert got == (key in self.model[run]), f"has({key!r}) gave {got!r}"

    @rule(run=runs, wanted=st.lists(keys, max_size=5))
    def get_many(self, run: int, wanted: list[str]) -> None:
        got = self.store.get_many(self.runs[run], wanted)
        expected = {k: self.model[run][k] for k in wanted if k in self.model[run]}
        self._check(f"get_many({wanted!r})", got, expected)

    @rule(
        run=runs,
        writes=st.dictionaries(keys, json_values, max_size=4),
        deletes=st.lists(keys, max_size=3),
    )
    def patch(self, run: int, writes: dict[str, Any], deletes: list[str]) -> None:
        deletes = [k for k in deletes if k not in writes]  # overlap is not specified
        self.store.patch(self.runs[run], writes, deletes)
        for key, value in writes.items():
            self.model[run][key] = round_trip(value)
        for key in deletes:
            self.model[run].pop(key, None)

    @rule(
        run=runs,
        guard=guards,
        guard_value=json_values,
        writes=st.dictionaries(keys, json_values, max_size=3),
    )
    def commit(self, run: int, guard: str, guard_value: Any, writes: dict[str, Any]) -> None:
        payload = {**writes, guard: guard_value}
        won = self.store.commit(self.runs[run], guard, payload)
        expected = guard not in self.model[run]
        assert won == expected, (
            f"commit(guard={guard!r}) returned {won!r} but the guard was "
            f"{'absent' if expected else 'present'}"
        )
        if expected:
            for key, value in payload.items():
                self.model[run][key] = round_trip(value)

    @rule(run=runs, count=bulk_counts, value=st.integers() | st.text(max_size=8))
    def patch_many(self, run: int, count: int, value: Any) -> None:
        writes = {f"bulk:{i}": [i, value] for i in range(count)}
        self.store.patch(self.runs[run], writes)
        for key, written in writes.items():
            self.model[run][key] = round_trip(written)

    @rule(run=runs, first=st.integers(0, BULK), count=bulk_counts, extra=st.lists(keys, max_size=3))
    def get_many_bulk(self, run: int, first: int, count: int, extra: list[str]) -> None:
        # Hundreds of keys in one call, present and absent ones mixed.
        wanted = [f"bulk:{i}" for i in range(first, first + count)] + extra
        got = self.store.get_many(self.runs[run], wanted)
        expected = {k: self.model[run][k] for k in wanted if k in self.model[run]}
        missing = sorted(set(expected) - set(got), key=wanted.index)[:3]
        assert not missing, (
            f"get_many of {len(wanted)} keys returned {len(got)} of the {len(expected)} "
            f"present, missing e.g. {missing}"
        )
        self._check(f"get_many({len(wanted)} keys)", got, expected)

    async def _read_every_run(self) -> list[dict[str, Any]]:
        # Reads only, so concurrently: one round trip of latency per step, not one per run.
        store = self.store.store
        return list(await asyncio.gather(*(store.get_all(run_id) for run_id in self.runs)))

    @invariant()
    def every_run_matches_the_model(self) -> None:
        got = self.harness.run(self._read_every_run())
        for run_id, stored, model in zip(self.runs, got, self.model, strict=True):
            self._check(f"get_all({run_id!r})", stored, model)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else f"{text[:200]}... ({len(text):,} characters)"


async def _patch_race(store: ContextStore, run_id: str, rounds: int, readers: int) -> list[str]:
    keys = ["x", "y", "z"]
    await store.patch(run_id, {k: 0 for k in keys})
    torn: list[str] = []
    done = asyncio.Event()

    async def write() -> None:
        for version in range(1, rounds + 1):
            await store.patch(run_id, {k: version for k in keys}, ["gone"])
            await asyncio.sleep(0)
        done.set()

    async def read() -> None:
        while not done.is_set():
            seen = await store.get_many(run_id, keys)
            if len(set(map(repr, seen.values()))) != 1 or len(seen) != len(keys):
                torn.append(repr(seen))
            await asyncio.sleep(0)

    await asyncio.gather(write(), *(read() for _ in range(readers)))
    return torn


async def _commit_race(store: ContextStore, run_id: str, racers: int) -> tuple[list[int], Any]:
    async def attempt(i: int) -> bool:
        return await store.commit(run_id, "guard", {"guard": i, "out": {"by": i}, f"w{i}": i})

    won = await asyncio.gather(*(attempt(i) for i in range(racers)))
    winners = [i for i, w in enumerate(won) if w]
    return winners, await store.get_all(run_id)


@requires("context")
class ContextStoreContract:
    """The context store contract (see the module docstring)."""

    contract = "context store"

    def test_context_state_machine(self, conformance: Harness) -> None:
        """Every operation, in random order on several runs, agrees with the model."""
        run_machine(ContextMachine, conformance)

    def test_null_is_a_value_and_absent_is_missing(self, conformance: Harness) -> None:
        store = conformance.context()
        run = conformance.new_id()

        async def body() -> None:
            assert await store.get(run, "k") is MISSING, "an absent key must read as MISSING"
            await store.set(run, "k", None)
            got = await store.get(run, "k")
            assert got is None, f"a stored None read back as {got!r}"
            assert await store.has(run, "k"), "has() is False for a key holding None"
            assert await store.get_many(run, ["k", "nope"]) == {"k": None}

        conformance.run(body())

    def test_patch_is_atomic_for_readers(self, conformance: Harness) -> None:
        """Concurrent readers never see half of a patch."""
        store = conformance.context()
        torn = conformance.run(_patch_race(store, conformance.new_id(), rounds=60, readers=3))
        assert not torn, f"readers saw a patch half applied, e.g. {torn[:3]}"

    def test_commit_first_wins_under_race(self, conformance: Harness) -> None:
        """Of 20 racing commits on one guard exactly one wins, and only its writes land."""
        store = conformance.context()
        winners, stored = conformance.run(_commit_race(store, conformance.new_id(), racers=20))
        assert len(winners) == 1, f"{len(winners)} commits won the same guard: {winners}"
        (w,) = winners
        expected = {"guard": w, "out": {"by": w}, f"w{w}": w}
        assert stored == expected, f"after the race the run holds {stored!r}, not {expected!r}"

    @requires("ttl")
    def test_context_expire_drops_the_run(self, conformance: Harness) -> None:
        store = conformance.context()
        run, other = conformance.new_id("run"), conformance.new_id("run")

        async def body() -> tuple[object, object]:
            await store.patch(run, {"a": 1, "b": [1, 2]})
            await store.set(other, "a", 1)
            await store.expire(run, EXPIRE)
            await asyncio.sleep(EXPIRE + 0.5)
            return await store.get(run, "a"), await store.get(other, "a")

        expired, kept = conformance.run(body())
        assert expired is MISSING, f"expire({EXPIRE}) left the run readable: {expired!r}"
        assert kept == 1, f"expire of one run dropped another run's key: {kept!r}"
