"""Deliberately broken drivers: the in-memory stores with one contract violated each.

Each :class:`Broken` names the contract of the conformance suite that must catch it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowcraft_conformance.target import Clock, DriverParts, Target

from flowcraft_core.engine.state import Census, Completion
from flowcraft_core.protocols import Job, Op
from flowcraft_core.protocols.context import encode
from flowcraft_memory import MemoryContextStore, MemoryCoordinationStore, MemoryQueue
from flowcraft_memory.driver import flowcraft_driver_info
from flowcraft_memory.run_state import MemoryRunState
from flowcraft_sql import SQLContextStore, SQLCoordinationStore, SQLQueue


class NonAtomicCounter(MemoryCoordinationStore):
    """``incr`` reads, yields to the event loop, then writes: racing increments are lost."""

    async def incr(self, key: str, amount: int = 1, *, ttl: float | None = None) -> int:
        current = await self.get(key)
        await asyncio.sleep(0)
        value = int(current or 0) + amount
        await self.set(key, str(value), ttl=ttl)
        return value


class LossyQueue(MemoryQueue):
    """Loses one job in fifty."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        self.seen += 1
        if self.seen % 50 == 0:
            return
        await super().enqueue(job, delay=delay)


class DropsLongDelays(MemoryQueue):
    """Jobs delayed by more than a second are silently dropped (a broker's short delay queue)."""

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        if delay <= 1.0:
            await super().enqueue(job, delay=delay)


class DroppingPatchContext(MemoryContextStore):
    """``patch`` silently drops the last of several writes."""

    async def patch(self, run_id: str, set: Any, delete: Any = ()) -> None:
        writes = dict(set)
        if len(writes) > 1:
            writes.pop(list(writes)[-1])
        await super().patch(run_id, writes, delete)


class DroppingCommitContext(MemoryContextStore):
    """``commit`` writes its guard but drops the other writes."""

    async def commit(self, run_id: str, guard: str, set: Any) -> bool:
        return await super().commit(run_id, guard, {k: v for k, v in set.items() if k == guard})


def _small(values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if len(encode(v)) <= 1024}


class LosesBigValues(MemoryContextStore):
    """Every write of a value whose JSON is over 1 KiB is silently dropped (a size limit)."""

    async def set(self, run_id: str, key: str, value: Any) -> None:
        if len(encode(value)) <= 1024:
            await super().set(run_id, key, value)

    async def patch(self, run_id: str, set: Any, delete: Any = ()) -> None:
        await super().patch(run_id, _small(set), delete)

    async def commit(self, run_id: str, guard: str, set: Any) -> bool:
        return await super().commit(run_id, guard, {**_small(set), guard: set[guard]})


class ShortGetMany(MemoryContextStore):
    """``get_many`` answers for the first ten keys asked and forgets the rest."""

    async def get_many(self, run_id: str, keys: Any) -> dict[str, Any]:
        return await super().get_many(run_id, list(keys)[:10])


class LatchedOnFirstKeyOnly(MemoryCoordinationStore):
    """``wait_any`` looks for a latched signal on the first of its keys only; the others wake
    it only when signalled while it waits."""

    async def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        if len(keys) > 1 and keys[0] not in self._signals:
            latched = self._signals
            self._signals = {k for k in latched if k not in keys[1:]}
            try:
                return await super().wait_any(keys, timeout)
            finally:
                self._signals |= latched
        return await super().wait_any(keys, timeout)


class LatchConsumedByFirstWaiter(MemoryCoordinationStore):
    """A latched signal is taken by the first ``wait_any`` that sees it (a queue, not a latch)."""

    async def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        got = await super().wait_any(keys, timeout)
        if got is not None:
            self._signals.discard(got)
        return got


class SlowPollingCoordination(MemoryCoordinationStore):
    """``wait_any`` is woken by no signal: it looks for a latched key every 2 s (a driver that
    only polls, slowly, and declares no poll). Latches and timeouts are kept."""

    POLL = 2.0

    async def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            for key in keys:
                self._live(key)
                if key in self._signals:
                    return key
            remaining = self.POLL if deadline is None else deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(self.POLL, remaining))


class TTLIgnoringCoordination(MemoryCoordinationStore):
    """Accepts every ttl and ignores it: nothing ever expires."""

    def _apply(self, op: Op) -> Any:
        if op.name == "extend":
            return self._live(op.key) is not None
        if op.ttl is not None:
            op = dataclasses.replace(op, ttl=None)
        return super()._apply(op)

    async def signal(self, key: str, *, ttl: float | None = None) -> None:
        await super().signal(key)


class NoRedeliveryQueue(MemoryQueue):
    """A job whose handler raised is dropped instead of delivered again."""

    def _redeliver(self, job: Job, delivery: int, *, backoff: bool = False) -> None:
        return None


class DuplicateCountingCoordination(MemoryCoordinationStore):
    """``add_member`` counts every add, duplicates included, and always says ``added``."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        super().__init__(clock)
        self.adds: dict[str, int] = {}

    def _apply(self, op: Op) -> Any:
        if op.name in ("add_member", "count") and self._live(op.key) is None:
            self.adds.pop(op.key, None)
        if op.name == "add_member":
            super()._apply(op)
            self.adds[op.key] = self.adds.get(op.key, 0) + 1
            return (True, self.adds[op.key])
        if op.name == "count":
            return self.adds.get(op.key, 0)
        if op.name == "delete":
            self.adds.pop(op.key, None)
        return super()._apply(op)


class AnyJoinFiresTwice(MemoryRunState):
    """The fused run state with one rule changed: every taken edge into an ``any`` join makes
    it ready (and activates it again), not just the first."""

    async def complete(self, job: Job, **kwargs: Any) -> Completion:
        completion = await super().complete(job, **kwargs)
        if completion.committed is not False:
            for a in kwargs["arrivals"]:
                if a.join == "any" and a.live and (a.target, True) not in completion.ready:
                    completion.ready.append((a.target, True))
        return completion


class CensusIgnoresParkedWaits(MemoryRunState):
    """The fused run state whose census counts no parked wait node."""

    async def census(self, run_id: str) -> Census:
        census = await super().census(run_id)
        return dataclasses.replace(census, waiting=census.resumed)


class NonAtomicSQLCommit(SQLContextStore):
    """The SQL context store whose ``commit`` looks for its guard in one transaction and writes
    in another: racing commits both see the guard absent and both win."""

    async def commit(self, run_id: str, guard: str, set: Any) -> bool:
        if await self.has(run_id, guard):
            return False
        await self.patch(run_id, {guard: None, **set})
        return True


def sql_parts(context: type[SQLContextStore]) -> Callable[[str], DriverParts]:
    """SQL components on one SQLite file per namespace, with ``context`` as context store."""
    directory = tempfile.mkdtemp(prefix="flowcraft-broken-sql-")

    def factory(namespace: str) -> DriverParts:
        url = f"sqlite:///{directory}/{namespace}.db"
        return DriverParts(SQLQueue(url), context(url), SQLCoordinationStore(url))

    return factory


@dataclass(frozen=True)
class Broken:
    """A broken driver and the contract that must catch it."""

    name: str
    contract: str
    queue: Callable[[], Any] = MemoryQueue
    context: Callable[[], Any] = MemoryContextStore
    coordination: Callable[..., Any] = MemoryCoordinationStore
    run_state: Callable[..., Any] | None = None
    #: Builds every component for a namespace instead (drivers other than memory).
    parts: Callable[[str], DriverParts] | None = None
    #: Declared on top of the memory driver's capabilities.
    capabilities: dict[str, Any] = dataclasses.field(default_factory=dict)

    def target(self) -> Target:
        def factory(namespace: str) -> DriverParts:
            if self.parts is not None:
                return self.parts(namespace)
            return DriverParts(self.queue(), self.context(), self.coordination())

        return Target.from_factory(
            factory,
            name=f"broken: {self.name}",
            capabilities={**flowcraft_driver_info().capabilities, **self.capabilities},
            clocked_coordination=lambda clock: self.coordination(clock),
            run_state=(
                None
                if self.run_state is None
                else lambda context, coordination, ttl: self.run_state(  # type: ignore[misc]
                    context, coordination, ttl=ttl
                )
            ),
        )


BROKEN = [
    Broken("non-atomic incr", "coordination atomicity", coordination=NonAtomicCounter),
    Broken("loses one job in fifty", "queue delivery", queue=LossyQueue),
    Broken("patch drops a write", "context store", context=DroppingPatchContext),
    Broken("commit drops its writes", "context store", context=DroppingCommitContext),
    Broken("writes over 1 KiB lost", "context store", context=LosesBigValues),
    Broken("get_many stops after ten keys", "context store", context=ShortGetMany),
    Broken("ttl ignored", "coordination TTL", coordination=TTLIgnoringCoordination),
    Broken("latch seen on the first key only", "signals", coordination=LatchedOnFirstKeyOnly),
    Broken(
        "latch consumed by the first waiter", "signals", coordination=LatchConsumedByFirstWaiter
    ),
    Broken("wakes only by a slow poll", "signals", coordination=SlowPollingCoordination),
    Broken("declares a slow signal poll", "signals", capabilities={"signal_poll_s": 5.0}),
    Broken("no redelivery after a crash", "queue redelivery", queue=NoRedeliveryQueue),
    Broken("jobs delayed over a second dropped", "queue delays", queue=DropsLongDelays),
    Broken(
        "add_member counts duplicates",
        "coordination store",
        coordination=DuplicateCountingCoordination,
    ),
    Broken("an any join fires twice", "run state", run_state=AnyJoinFiresTwice),
    Broken("census ignores parked waits", "run state", run_state=CensusIgnoresParkedWaits),
    Broken("SQL commit not atomic", "context store", parts=sql_parts(NonAtomicSQLCommit)),
]
