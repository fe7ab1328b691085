"""The run state's hot steps fused into one Lua script each (``run_start.lua``,
``run_load.lua``, ``run_complete.lua``, ``run_finalize.lua``): with the context and
coordination of one Redis, a node costs two round trips — load, then commit-and-route — however
wide the run, and a chain one (the completion prefetches the successor's load). A start is one
round trip, and refuses a taken run id atomically.

Offered through the ``flowcraft_make_run_state`` hook when both stores are this driver's on the
same database; otherwise the engine composes the steps from the two protocols. The rarer steps
(park, resume, release, renew, a failed attempt, a missing implementation, sleep, census, wait,
frontier) are inherited from the reference, :class:`ComposedRunState`, which is correct on these
stores: each is one or two batches of this driver's coordination store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flowcraft_core.engine.keys import (
    ACTIVE_RUNS,
    INDEX_BASE,
    INDEX_BUCKET_SECONDS,
    INDEX_FLOW,
    INDEX_STATUS,
    INPUT,
    RUN,
    RUNNING,
    blueprint_key,
    index_bucket,
    index_key,
    index_member,
    run_keys,
)
from flowcraft_core.engine.state import (
    Arrival,
    Census,
    Completion,
    ComposedRunState,
    Loaded,
    Prefetch,
    ended_record,
    final_record,
)
from flowcraft_core.errors import RunExists
from flowcraft_core.protocols import Job
from flowcraft_core.protocols.context import encode
from flowcraft_redis.context import RedisContextStore
from flowcraft_redis.coordination import RedisCoordinationStore, milliseconds

_COMPLETED = final_record("completed", None)


class RedisRunState(ComposedRunState):
    """:class:`~flowcraft_core.engine.state.RunState` in one round trip per step."""

    prefetches = True

    def __init__(
        self, context: RedisContextStore, coordination: RedisCoordinationStore, *, ttl: float
    ) -> None:
        super().__init__(context, coordination, ttl=ttl)
        self._ctx = context
        self._co = coordination
        self._connections = coordination.connections

    async def start(
        self,
        run_id: str,
        *,
        input: Any,
        meta: Mapping[str, Any],
        digest: str,
        blueprint: str,
        jobs: Sequence[str],
        context: Mapping[str, Any] | None = None,
    ) -> None:
        rk = run_keys(run_id)
        co = self._co.key
        values = {**(context or {}), INPUT: input, RUN: dict(meta)}
        # Encoded before anything is sent: a value without a JSON form writes nothing.
        pairs = [(field, encode(value)) for field, value in values.items()]
        started = float(meta["started"])
        bucket = index_bucket(started)
        args: list[str | int] = [
            milliseconds(self.ttl),
            repr(time.time()),
            run_id,
            blueprint,
            RUN,
            index_member(started, run_id),
            milliseconds(self.ttl + INDEX_BUCKET_SECONDS),
            len(jobs),
            *jobs,
        ]
        for field, value in pairs:
            args += [field, value]
        redis_keys = [
            self._ctx.key(run_id),
            co(blueprint_key(digest)),
            co(rk.activated),
            co(ACTIVE_RUNS),
            co(rk.progress),
            co(index_key(INDEX_STATUS, bucket, RUNNING)),
            co(index_key(INDEX_FLOW, bucket, f"{RUNNING}:{meta['flow']}")),
        ]
        if not await self._connections.script("run_start.lua")(keys=redis_keys, args=args):
            raise RunExists(f"a run with id {run_id!r} already exists; it was left unchanged")

    async def load(
        self, job: Job, keys: Sequence[str], *, join: bool, lease_ttl: float, token: str
    ) -> Loaded:
        rk = run_keys(job.run_id)
        jk = job.key
        co = self._co.key
        redis_keys = [
            self._ctx.key(job.run_id),
            co(rk.final),
            co(rk.lease(jk)),
            co(rk.failures(jk)),
        ]
        if join:
            redis_keys += [co(rk.arrived(jk)), co(rk.live(jk)), co(rk.first(jk))]
        fields = list(dict.fromkeys(keys))
        args = [token, milliseconds(lease_ttl), "1" if join else "0", *fields]
        reply = await self._connections.script("run_load.lua")(keys=redis_keys, args=args)
        loaded = _loaded(reply, fields)
        assert loaded is not None
        return loaded

    async def complete(
        self,
        job: Job,
        *,
        guard: str,
        commit: Mapping[str, Any] | None,
        arrivals: Sequence[Arrival],
        retention: float,
        prefetch: Prefetch | None = None,
        record: str | None = None,
    ) -> Completion:
        rk = run_keys(job.run_id)
        co = self._co.key
        redis_keys = [
            self._ctx.key(job.run_id),
            co(rk.activated),
            co(rk.finished),
            co(rk.waiting),
            co(rk.resumed),
            co(rk.lease(job.key)),
            co(rk.progress),
            co(rk.final),
            self._co.signal_key(rk.signal_done),
            co(ACTIVE_RUNS),
        ]
        now = time.time()
        ends: list[str | int] = [
            record or "",
            ended_record("completed", now),
            co(INDEX_BASE),
            milliseconds(retention + INDEX_BUCKET_SECONDS),
            "completed",
        ]
        if prefetch is None:
            redis_keys += [co("-")] * 5  # never touched: the script is told there is none
            fields: list[str] = []
            ahead: list[str | int] = ["", "", 0, "0", *ends, 0]
        else:
            t = prefetch.target
            redis_keys += [
                co(rk.lease(t)),
                co(rk.failures(t)),
                co(rk.arrived(t)),
                co(rk.live(t)),
                co(rk.first(t)),
            ]
            fields = list(dict.fromkeys(prefetch.keys))
            ahead = [
                t,
                prefetch.token,
                milliseconds(prefetch.lease_ttl),
                "1" if prefetch.join else "0",
                *ends,
                len(fields),
                *fields,
            ]
        redis_keys += [co(rk.history(job.key)), co(rk.events), co(rk.ended)]
        args: list[str | int] = [milliseconds(self.ttl), repr(now), job.key]
        tail: list[str | int] = [milliseconds(retention), _COMPLETED, job.run_id, *ahead]
        if commit is None:
            args += ["0", guard, 0, *tail]
        else:
            # Encoded before anything is sent: a value without a JSON form writes nothing.
            pairs = [(field, encode(value)) for field, value in commit.items()]
            args += ["1", guard, len(pairs), *tail]
            for field, value in pairs:
                args += [field, value]
        for a in arrivals:
            redis_keys += [co(rk.arrived(a.target)), co(rk.live(a.target)), co(rk.first(a.target))]
            args += [a.target, a.edge, "1" if a.live else "0", a.join, a.expected]
        reply = await self._connections.script("run_complete.lua")(keys=redis_keys, args=args)
        if reply[0] == 0:
            return Completion(committed=False, ready=[])
        final = reply[1]
        committed, activated, finished, waiting, resumed, finalized, count = (
            int(x) for x in reply[2:9]
        )
        rest = reply[9 : 9 + 2 * count]
        ready = [(str(rest[i]), rest[i + 1] == "1") for i in range(0, len(rest), 2)]
        census = Census(json.loads(final) if final else None, activated, finished, waiting, resumed)
        completion = Completion(
            True if committed == 1 else None,
            ready,
            census,
            finalized=None if finalized < 0 else finalized == 1,
            prefetched=_loaded(reply[9 + 2 * count :], fields),
        )
        await self._announce_idle(rk, census)
        return completion

    async def finalize(
        self, run_id: str, status: str, error: dict[str, Any] | None, *, retention: float
    ) -> bool:
        rk = run_keys(run_id)
        co = self._co.key
        redis_keys = [
            co(rk.final),
            self._co.signal_key(rk.signal_done),
            co(ACTIVE_RUNS),
            self._ctx.key(run_id),
            *(co(k) for k in (*rk.run_wide, rk.ended)),
        ]
        record = final_record(status, error)
        won = await self._connections.script("run_finalize.lua")(
            keys=redis_keys,
            args=[
                record,
                milliseconds(retention),
                run_id,
                ended_record(status, time.time()),
                status,
                co(INDEX_BASE),
                milliseconds(retention + INDEX_BUCKET_SECONDS),
            ],
        )
        return bool(won)


def _loaded(reply: list[Any], fields: list[str]) -> Loaded | None:
    """A :class:`Loaded` from the seven values run_load.lua returns (None if absent)."""
    if not reply:
        return None
    final, lease, failures, arrived, live, first, raws = reply
    return Loaded(
        final=json.loads(final) if final else None,
        values={f: json.loads(r) for f, r in zip(fields, raws, strict=False) if r is not None},
        lease=bool(lease),
        failures=int(failures),
        arrived=int(arrived),
        live=set(live),
        first=first or None,
    )
