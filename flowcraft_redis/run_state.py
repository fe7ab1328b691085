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
    INDEX_BUCKET_SECONDS,
    INDEX_FLOW,
    INDEX_STATUS,
    INPUT,
    RUN,
    RUNNING,
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
from flowcraft_redis.connection import Script
from flowcraft_redis.context import RedisContextStore
from flowcraft_redis.coordination import RedisCoordinationStore, milliseconds


class RedisRunState(ComposedRunState):
    """:class:`~flowcraft_core.engine.state.RunState` in one round trip per step.

    Each script is sent only what varies per call: the run id, job keys, times and values. Key
    names are derived inside the scripts from the run id (``run_keys.lua``), with this
    connection's prefixes and every constant rendered in when the script is loaded. So the
    scripts touch keys they do not declare: Redis Cluster is out of scope.
    """

    prefetches = True
    pipelined = True  # every script call of one loop turn shares one write (connection._Batches)

    def __init__(
        self, context: RedisContextStore, coordination: RedisCoordinationStore, *, ttl: float
    ) -> None:
        super().__init__(context, coordination, ttl=ttl)
        self._ctx = context
        self._co = coordination
        self._connections = coordination.connections
        # The prefixes the scripts derive key names from, from the stores' own key functions.
        self._keyspace = (
            ("CTX", context.key("")),
            ("CO", coordination.key("")),
            ("SIG", coordination.signal_key("")),
        )
        self._ttl_ms = milliseconds(ttl)
        self._ms: dict[float, int] = {}

    def _milliseconds(self, seconds: float) -> int:
        """:func:`milliseconds`, remembered: a deployment uses a handful of TTLs."""
        ms = self._ms.get(seconds)
        if ms is None:
            if len(self._ms) > 64:
                self._ms.clear()
            ms = self._ms[seconds] = milliseconds(seconds)
        return ms

    def _script(self, name: str) -> Script:
        return self._connections.script(name, self._keyspace)

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
        co = self._co.key
        values = {**(context or {}), INPUT: input, RUN: dict(meta)}
        # Encoded before anything is sent: a value without a JSON form writes nothing.
        pairs = [(field, encode(value)) for field, value in values.items()]
        started = float(meta["started"])
        bucket = index_bucket(started)
        args: list[str | int] = [
            run_id,
            self._ttl_ms,
            repr(time.time()),
            digest,
            blueprint,
            index_member(started, run_id),
            milliseconds(self.ttl + INDEX_BUCKET_SECONDS),
            co(index_key(INDEX_STATUS, bucket, RUNNING)),
            co(index_key(INDEX_FLOW, bucket, f"{RUNNING}:{meta['flow']}")),
            len(jobs),
            *jobs,
        ]
        for field, value in pairs:
            args += [field, value]
        if not await self._script("run_start.lua")(args=args):
            raise RunExists(f"a run with id {run_id!r} already exists; it was left unchanged")

    async def load(
        self, job: Job, keys: Sequence[str], *, join: bool, lease_ttl: float, token: str
    ) -> Loaded:
        fields = list(dict.fromkeys(keys))
        args = [
            job.run_id,
            job.key,
            token,
            self._milliseconds(lease_ttl),
            "1" if join else "0",
            *fields,
        ]
        loaded = _loaded(await self._script("run_load.lua")(args=args), fields)
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
        args: list[str | int] = [
            job.run_id,
            job.key,
            repr(time.time()),
            self._ttl_ms,
            self._milliseconds(retention),
        ]
        if commit is None:
            args += ["", 0, ""]
        else:
            assert guard, "a commit needs its guard field"
            args += [guard, len(commit), record or ""]
        if prefetch is None:
            fields: list[str] = []
            args += ["", "", 0, "0", 0]
        else:
            fields = list(dict.fromkeys(prefetch.keys))
            args += [
                prefetch.target,
                prefetch.token,
                self._milliseconds(prefetch.lease_ttl),
                "1" if prefetch.join else "0",
                len(fields),
                *fields,
            ]
        if commit is not None:
            # Encoded before anything is sent: a value without a JSON form writes nothing.
            for field, value in commit.items():
                args += (field, encode(value))
        for a in arrivals:
            args += (a.target, a.edge, "1" if a.live else "0", a.join, a.expected)
        reply = await self._script("run_complete.lua")(args=args)
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
        await self._announce_idle(run_keys(job.run_id), census)
        return completion

    async def finalize(
        self, run_id: str, status: str, error: dict[str, Any] | None, *, retention: float
    ) -> bool:
        won = await self._script("run_finalize.lua")(
            args=[
                run_id,
                status,
                final_record(status, error),
                ended_record(status, time.time()),
                milliseconds(retention),
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
