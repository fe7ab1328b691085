"""Contract: the coordination store (:class:`flowcraft_core.protocols.CoordinationStore`).

Guaranteed, and checked against a plain Python model (:class:`CoordinationModel`):

* ``get``/``set``/``set_if_absent``/``incr``/``delete``/``extend`` on string keys and
  ``add_member``/``remove_member``/``count``/``members`` on member sets give exactly the model's
  results, and the store's state matches the model after every step;
* ``add_member`` counts a member once (re-adding reports ``added=False``);
* ``batch`` runs a list of operations in order with each one's result;
* ``ttl`` is accepted everywhere; ``incr`` applies it only when it creates the key; ``set``
  without ``ttl`` makes a key persistent; ``extend`` is True only for an existing key.

Not specified, so not checked: whether a member set emptied by ``remove_member`` still exists
(the machine deletes it), operations of the wrong type on a key (string op on a set), and whether
``add_member(..., ttl=...)`` on an existing set renews its TTL.
Expiry under TTLs is checked by :mod:`flowcraft_conformance.ttl`, with an injected clock.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from flowcraft_core.protocols import Op

from .capabilities import requires
from .facade import SyncCoordinationStore
from .harness import BoundMachine, Harness, run_machine

VALUE_KEYS = ("v:a", "v:ключ", "v:{tag}")
COUNTER_KEYS = ("c:a", "c:b")
SET_KEYS = ("s:a", "s:\u0436", "s:{tag}")
ALL_KEYS = VALUE_KEYS + COUNTER_KEYS + SET_KEYS
MEMBERS = ("m1", "m2", "м3", "m 4", "{m5}")

value_keys = st.sampled_from(VALUE_KEYS)
counter_keys = st.sampled_from(COUNTER_KEYS)
set_keys = st.sampled_from(SET_KEYS)
any_keys = st.sampled_from(ALL_KEYS)
members = st.sampled_from(MEMBERS)
values = st.text(st.characters(codec="utf-8"), max_size=10)
amounts = st.integers(-1000, 1000)
counter_values = st.integers(-(2**40), 2**40).map(str)
ttl_choices = st.integers(0, 3)


class CoordinationModel:
    """What a coordination store must answer: string keys, member sets and deadlines on a
    clock (``now``) that the caller advances."""

    def __init__(self) -> None:
        self.now = 0.0
        self.values: dict[str, str] = {}
        self.sets: dict[str, set[str]] = {}
        self.deadlines: dict[str, float] = {}

    def exists(self, key: str) -> bool:
        self._expire(key)
        return key in self.values or key in self.sets

    def _expire(self, key: str) -> None:
        deadline = self.deadlines.get(key)
        if deadline is not None and self.now >= deadline:
            self._drop(key)

    def _drop(self, key: str) -> None:
        self.values.pop(key, None)
        self.sets.pop(key, None)
        self.deadlines.pop(key, None)

    def _ttl(self, key: str, ttl: float | None) -> None:
        if ttl is None:
            self.deadlines.pop(key, None)
        else:
            self.deadlines[key] = self.now + ttl

    def apply(self, op: Op) -> Any:
        key = op.key
        existed = self.exists(key)
        if op.name == "get":
            return self.values.get(key)
        if op.name == "set":
            assert op.value is not None
            self.values[key] = op.value
            self._ttl(key, op.ttl)
            return None
        if op.name == "set_if_absent":
            if existed:
                return False
            assert op.value is not None
            self.values[key] = op.value
            self._ttl(key, op.ttl)
            return True
        if op.name == "incr":
            value = int(self.values.get(key, "0")) + op.amount
            self.values[key] = str(value)
            if not existed:
                self._ttl(key, op.ttl)
            return value
        if op.name == "delete":
            self._drop(key)
            return existed
        if op.name == "extend":
            if existed:
                assert op.ttl is not None
                self._ttl(key, op.ttl)
            return existed
        if op.name == "add_member":
            assert op.value is not None
            if not existed:
                self.sets[key] = set()
                self._ttl(key, op.ttl)
            group = self.sets[key]
            added = op.value not in group
            group.add(op.value)
            return (added, len(group))
        if op.name == "remove_member":
            group = self.sets.get(key, set())
            present = op.value in group
            group.discard(op.value or "")
            return present
        if op.name == "count":
            return len(self.sets.get(key, ()))
        if op.name == "members":
            return set(self.sets.get(key, ()))
        raise ValueError(f"unknown op {op.name!r}")


def call(store: SyncCoordinationStore, op: Op) -> Any:
    """``op`` through the store's own method (not :meth:`batch`)."""
    name, key = op.name, op.key
    if name == "get":
        return store.get(key)
    if name == "set":
        assert op.value is not None
        return store.set(key, op.value, ttl=op.ttl)
    if name == "set_if_absent":
        assert op.value is not None
        return store.set_if_absent(key, op.value, ttl=op.ttl)
    if name == "incr":
        return store.incr(key, op.amount, ttl=op.ttl)
    if name == "delete":
        return store.delete(key)
    if name == "extend":
        assert op.ttl is not None
        return store.extend(key, op.ttl)
    if name == "add_member":
        assert op.value is not None
        return store.add_member(key, op.value, ttl=op.ttl)
    if name == "remove_member":
        assert op.value is not None
        return store.remove_member(key, op.value)
    if name == "count":
        return store.batch([op])[0]
    if name == "members":
        return store.members(key)
    raise ValueError(f"unknown op {name!r}")


def normalize(name: str, result: Any) -> Any:
    """A result in the protocol's shape: truthiness for booleans, tuples for add_member."""
    if name in ("set_if_absent", "delete", "extend", "remove_member"):
        return bool(result) if isinstance(result, bool | int) else result
    if name == "add_member" and isinstance(result, tuple | list) and len(result) == 2:
        return (bool(result[0]), result[1])
    if name == "members" and isinstance(result, set | frozenset | list | tuple):
        return set(result)
    return result


class CoordinationMachine(BoundMachine):
    """CoordinationStore against :class:`CoordinationModel`. TTLs, when the driver has them, are
    an hour long here: accepted, never reached (expiry is :mod:`~flowcraft_conformance.ttl`)."""

    clocked: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        h = self.harness
        self.prefix = h.new_id("coord") + ":"
        self.model = CoordinationModel()
        self.clock_now = 1000.0
        if self.clocked:
            store = h.clocked_coordination(self._clock)
            self.ttls: tuple[float | None, ...] = (None, 1.5, 2.5, 5.5)
            self.extend_ttls: tuple[float, ...] = (1.5, 2.5, 5.5)
            self.model.now = self.clock_now
            self.release: Callable[[], None] = lambda: h.run(store.close())
        else:
            parts = h.open(components=["coordination"])
            assert parts.coordination is not None
            store = parts.coordination
            self.ttls = (None, None, 3600.0) if h.has("ttl") else (None,)
            self.extend_ttls = (3600.0,)
            self.release = lambda: h.release(parts)
        self.store = SyncCoordinationStore(store, h.loop)

    def _clock(self) -> float:
        return self.clock_now

    def teardown(self) -> None:
        self.release()

    def ttl(self, choice: int) -> float | None:
        return self.ttls[choice % len(self.ttls)]

    def _store_op(self, op: Op) -> Op:
        return dataclasses.replace(op, key=self.prefix + op.key)

    def check(self, op: Op) -> Any:
        expected = self.model.apply(op)
        got = normalize(op.name, call(self.store, self._store_op(op)))
        assert got == expected, f"{op.name}({op.key!r}, ...) gave {got!r}, expected {expected!r}"
        return got

    # -- string keys --------------------------------------------------------------------------

    @rule(key=value_keys, value=values, ttl=ttl_choices)
    def set(self, key: str, value: str, ttl: int) -> None:
        self.check(Op.set(key, value, self.ttl(ttl)))

    @rule(key=counter_keys, value=counter_values, ttl=ttl_choices)
    def set_counter(self, key: str, value: str, ttl: int) -> None:
        self.check(Op.set(key, value, self.ttl(ttl)))

    @rule(key=value_keys, value=values, ttl=ttl_choices)
    def set_if_absent(self, key: str, value: str, ttl: int) -> None:
        self.check(Op.set_if_absent(key, value, self.ttl(ttl)))

    @rule(key=counter_keys, amount=amounts, ttl=ttl_choices)
    def incr(self, key: str, amount: int, ttl: int) -> None:
        self.check(Op.incr(key, amount, self.ttl(ttl)))

    @rule(key=st.sampled_from(VALUE_KEYS + COUNTER_KEYS))
    def get(self, key: str) -> None:
        self.check(Op.get(key))

    # -- member sets --------------------------------------------------------------------------

    @rule(key=set_keys, member=members, ttl=ttl_choices)
    def add_member(self, key: str, member: str, ttl: int) -> None:
        # A ttl only when the set is created: renewing an existing set's TTL is not specified.
        chosen = None if self.model.exists(key) else self.ttl(ttl)
        self.check(Op.add_member(key, member, chosen))

    @rule(key=set_keys, member=members)
    def remove_member(self, key: str, member: str) -> None:
        self.check(Op.remove_member(key, member))
        if key in self.model.sets and not self.model.sets[key]:
            # Whether an empty set still exists is not specified: make it absent on both sides.
            self.store.delete(self.prefix + key)
            self.model.apply(Op.delete(key))

    @rule(key=set_keys)
    def count(self, key: str) -> None:
        self.check(Op.count(key))

    @rule(key=set_keys)
    def members(self, key: str) -> None:
        self.check(Op.members(key))

    # -- any key ------------------------------------------------------------------------------

    @rule(key=any_keys)
    def delete(self, key: str) -> None:
        self.check(Op.delete(key))

    @rule(key=any_keys, ttl=ttl_choices)
    def extend(self, key: str, ttl: int) -> None:
        self.check(Op.extend(key, self.extend_ttls[ttl % len(self.extend_ttls)]))

    @rule(data=st.data())
    def batch(self, data: st.DataObject) -> None:
        ops = data.draw(st.lists(self._batch_op(), min_size=1, max_size=6), label="ops")
        expected = [self.model.apply(op) for op in ops]
        raw = self.store.batch([self._store_op(op) for op in ops])
        assert len(raw) == len(ops), f"batch of {len(ops)} ops returned {len(raw)} results"
        got = [normalize(op.name, r) for op, r in zip(ops, raw, strict=True)]
        assert got == expected, f"batch({ops!r}) gave {got!r}, expected {expected!r}"

    def _batch_op(self) -> st.SearchStrategy[Op]:
        ttl = st.sampled_from(self.ttls)
        return st.one_of(
            st.builds(Op.get, st.sampled_from(VALUE_KEYS + COUNTER_KEYS)),
            st.builds(Op.set, value_keys, values, ttl),
            st.builds(Op.set_if_absent, value_keys, values, ttl),
            st.builds(Op.incr, counter_keys, amounts, ttl),
            st.builds(Op.delete, any_keys),
            st.builds(Op.add_member, set_keys, members),
            st.builds(Op.count, set_keys),
            st.builds(Op.members, set_keys),
            st.builds(Op.extend, any_keys, st.sampled_from(self.extend_ttls)),
        )

    # -- clock --------------------------------------------------------------------------------

    @precondition(lambda self: self.clocked)
    @rule(seconds=st.integers(1, 3))
    def advance_clock(self, seconds: int) -> None:
        """Whole seconds against TTLs ending in .5: never exactly on a deadline."""
        self.clock_now += seconds
        self.model.now = self.clock_now

    async def _read_every_key(self) -> tuple[list[str | None], list[builtins.set[str]]]:
        # Reads only, so concurrently: one round trip of latency per step, not one per key.
        store = self.store.store
        values = asyncio.gather(*(store.get(self.prefix + k) for k in VALUE_KEYS + COUNTER_KEYS))
        sets = asyncio.gather(*(store.members(self.prefix + k) for k in SET_KEYS))
        return list(await values), list(await sets)

    @invariant()
    def state_matches_the_model(self) -> None:
        got_values, got_sets = self.harness.run(self._read_every_key())
        for key, got in zip(VALUE_KEYS + COUNTER_KEYS, got_values, strict=True):
            self.model.exists(key)
            expected = self.model.values.get(key)
            assert got == expected, f"get({key!r}) gives {got!r}, the model holds {expected!r}"
        for key, got_set in zip(SET_KEYS, got_sets, strict=True):
            got_members = normalize("members", got_set)
            self.model.exists(key)
            expected_members = self.model.sets.get(key, set())
            assert got_members == expected_members, (
                f"members({key!r}) gives {got_members!r}, the model holds {expected_members!r}"
            )


@requires("coordination")
class CoordinationContract:
    """The coordination store contract (see the module docstring)."""

    contract = "coordination store"

    def test_coordination_state_machine(self, conformance: Harness) -> None:
        """Every operation and random batches agree with the model, step by step."""
        run_machine(CoordinationMachine, conformance)

    def test_protocol_results_have_the_documented_types(self, conformance: Harness) -> None:
        store = conformance.coordination()
        key = conformance.new_id()

        async def body() -> None:
            assert await store.get(key) is None
            assert await store.set_if_absent(key, "v") is True
            assert await store.set_if_absent(key, "w") is False
            n = await store.incr(key + ":n", 5)
            assert type(n) is int and n == 5, f"incr returned {n!r}, not the int 5"
            added = await store.add_member(key + ":s", "m")
            assert tuple(added) == (True, 1), f"add_member returned {added!r}"
            got = await store.members(key + ":s")
            assert got == {"m"} and isinstance(got, set), f"members returned {got!r}"
            assert await store.delete(key) is True
            assert await store.delete(key) is False

        conformance.run(body())
