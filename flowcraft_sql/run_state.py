"""The engine's state steps fused into one SQL transaction each.

With the context and coordination of one database, :meth:`SQLRunState.complete` commits a
node's result, records its arrivals, activates the targets that became ready, finishes the job,
finalizes the run if that was its last job, and loads the successor the worker continues with,
all in one transaction under one lock (the run's lock slot; a finishing step then also locks
the shared keys it moves the run between, after its run's, as the lock order of
:mod:`flowcraft_sql.database` wants). The semantics are those of
:class:`flowcraft_core.engine.state.ComposedRunState`, whose rarer steps it inherits; the
conformance suite drives both with the same steps and compares them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flowcraft_core.engine.keys import ACTIVE_RUNS, JOIN_ANY, RUN, RUNNING, RunKeys, run_keys
from flowcraft_core.engine.state import (
    Arrival,
    Census,
    Completion,
    ComposedRunState,
    Loaded,
    Prefetch,
    decide,
    ended_record,
    final_record,
    index_ops,
)
from flowcraft_core.protocols import Job, Op
from flowcraft_core.protocols.context import encode
from flowcraft_sql.context import SQLContextStore
from flowcraft_sql.coordination import SQLCoordinationStore, shaped


def _load_ops(rk: RunKeys, job_key: str, join: bool, lease_ttl: float, token: str) -> list[Op]:
    ops = [
        Op.get(rk.final),
        Op.set_if_absent(rk.lease(job_key), token, lease_ttl),
        Op.count(rk.failures(job_key)),
    ]
    if join:
        ops += [
            Op.count(rk.arrived(job_key)),
            Op.members(rk.live(job_key)),
            Op.get(rk.first(job_key)),
        ]
    return ops


def _decoded(rows: list[tuple[str, Any, Any]]) -> dict[str, Any]:
    return {key: json.loads(text) for key, _, text in rows}


def _loaded(results: list[Any], values: dict[str, Any], join: bool) -> Loaded:
    loaded = Loaded(
        final=json.loads(results[0]) if results[0] else None,
        values=values,
        lease=bool(results[1]),
        failures=results[2],
    )
    if join:
        loaded.arrived, loaded.live, loaded.first = results[3], results[4], results[5]
    return loaded


class SQLRunState(ComposedRunState):
    """:class:`~flowcraft_core.engine.state.RunState` in one transaction per step."""

    prefetches = True

    def __init__(
        self, context: SQLContextStore, coordination: SQLCoordinationStore, *, ttl: float
    ) -> None:
        super().__init__(context, coordination, ttl=ttl)
        self._ctx = context
        self._co = coordination
        self.db = coordination.db

    async def load(
        self, job: Job, keys: Sequence[str], *, join: bool, lease_ttl: float, token: str
    ) -> Loaded:
        ops = _load_ops(run_keys(job.run_id), job.key, join, lease_ttl, token)
        wanted = list(dict.fromkeys(keys))

        async def body(conn: AsyncConnection) -> Loaded:
            also = [self._values(job.run_id, wanted, 0)] if wanted else []
            batch = await self._co.open_batch(conn, ops, also)
            results = [batch.apply(op) for op in ops]
            await batch.flush(conn)
            values = _decoded(batch.also[0]) if wanted else {}
            return _loaded(results, values, join)

        return await self.db.run(body)

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
        rk, ttl, run_id = run_keys(job.run_id), self.ttl, job.run_id
        recording = (
            [Op.add_member(rk.history(job.key), record, ttl)]
            if record is not None and commit is not None
            else []
        )
        # Encoded before the transaction: a value without a JSON form writes nothing.
        encoded = None if commit is None else {k: encode(v) for k, v in commit.items()}
        arrival_ops: list[list[Op]] = []
        for a in arrivals:
            ops = [Op.add_member(rk.arrived(a.target), a.edge, ttl)]
            if a.live:
                ops.append(Op.add_member(rk.live(a.target), a.edge, ttl))
                if a.join == JOIN_ANY:
                    ops.append(Op.set_if_absent(rk.first(a.target), a.edge, ttl))
            else:
                ops.append(Op.count(rk.live(a.target)))
            arrival_ops.append(ops)
        counts = [
            Op.get(rk.final),
            Op.count(rk.activated),
            Op.count(rk.finished),
            Op.count(rk.waiting),
            Op.count(rk.resumed),
        ]
        tail = [
            Op.add_member(rk.finished, job.key, ttl),
            Op.delete(rk.lease(job.key)),
            Op.set(rk.progress, repr(time.time()), ttl),
        ]
        activations = {a.target: Op.add_member(rk.activated, a.target, ttl) for a in arrivals}
        ahead: list[Op] = []
        if prefetch is not None:
            ahead = _load_ops(
                rk, prefetch.target, prefetch.join, prefetch.lease_ttl, prefetch.token
            )
        final_ops = self._final_ops(
            rk, retention, final_record("completed", None), ended_record("completed", time.time())
        )
        needed = [
            *recording,
            *(op for ops in arrival_ops for op in ops),
            *activations.values(),
            *tail,
            *counts,
            *ahead,
        ]

        ahead_keys = list(dict.fromkeys(prefetch.keys)) if prefetch is not None else []
        also = []
        if encoded is not None:
            also.append(self._deadline(run_id, 0))
        if ahead_keys:
            also.append(self._values(run_id, ahead_keys, len(also)))

        async def body(conn: AsyncConnection) -> Completion:
            # Everything this step reads, in one statement under the run's lock: the
            # coordination rows, the run's retention deadline (for the commit) and the
            # successor's values (for the prefetch), read before the commit and overlaid
            # with it below.
            batch = await self._co.open_batch(conn, needed, also)
            committed: bool | None = None
            if encoded is not None:
                deadline = batch.also[0][0][1] if batch.also[0] else None
                if not await self._ctx.commit_in(
                    conn,
                    run_id,
                    guard,
                    encoded,
                    expired=deadline is not None and deadline <= time.time(),
                ):
                    return Completion(committed=False, ready=[])
                committed = True
            for op in recording:  # with the commit that won, only
                batch.apply(op)
            ready: list[tuple[str, bool]] = []
            for a, ops in zip(arrivals, arrival_ops, strict=True):
                results = [batch.apply(op) for op in ops]
                added, total = results[0]
                first = False
                if a.live:
                    live = results[1][1]
                    if a.join == JOIN_ANY:
                        first = bool(results[2])
                else:
                    live = results[1]
                verdict = decide(a, added, total, live, first)
                if verdict is not None:
                    ready.append((a.target, verdict))
            # Activated before this job finishes, as in the composed steps.
            for target, _ in ready:
                batch.apply(activations[target])
            for op in tail:
                batch.apply(op)
            final, *tokens = (batch.apply(op) for op in counts)
            census = Census(json.loads(final) if final else None, *tokens)
            completion = Completion(committed, ready, census)
            if census.awaiting and census.final is None:
                await self._co.signal_in(conn, rk.signal_idle(census.generation), ttl)
            if not completion.done and prefetch is not None and (prefetch.target, True) in ready:
                values = _decoded(batch.also[-1]) if ahead_keys else {}
                if encoded is not None:
                    # What this step's commit wrote (the guard as commit_in writes it).
                    written = {guard: encoded.get(guard, "null"), **encoded}
                    values.update((k, json.loads(written[k])) for k in ahead_keys if k in written)
                completion.prefetched = _loaded(
                    [batch.apply(op) for op in ahead], values, prefetch.join
                )
            await batch.flush(conn)
            if completion.done:
                # A second batch, so only a finishing step takes the locks of the shared keys
                # (every run's finish touches them): after its run's, as the lock order wants.
                completion.finalized = await self._finalize_in(conn, rk, retention, final_ops)
            return completion

        completion = await self.db.run(body)
        if completion.done:
            self._co.woken(rk.signal_done)
        elif completion.awaiting and completion.census.final is None:
            self._co.woken(rk.signal_idle(completion.census.generation))
        return completion

    # -- reads folded into a batch's load --------------------------------------------------

    def _values(self, run_id: str, keys: list[str], src: int) -> Select[Any]:
        """The run's context values of ``keys`` (live ones), as rows of a batch's load."""
        c = self.db.tables.context
        return shaped(src, c.c.key, text=c.c.value).where(
            c.c.ns == self._ctx.ns,
            c.c.run_id == run_id,
            c.c.key.in_(keys),
            self._ctx.live(run_id, time.time()),
        )

    def _deadline(self, run_id: str, src: int) -> Select[Any]:
        """The run's retention deadline, if it has one, as a row of a batch's load."""
        e = self.db.tables.expiry
        return shaped(src, e.c.run_id, number=e.c.deadline).where(
            e.c.ns == self._ctx.ns, e.c.run_id == run_id
        )

    # -- finalize -------------------------------------------------------------------------------

    @staticmethod
    def _final_ops(rk: RunKeys, retention: float, record: str, ended: str) -> list[Op]:
        return [
            Op.set_if_absent(rk.final, record, retention),
            Op.set_if_absent(rk.ended, ended, retention),
            *(Op.extend(key, retention) for key in rk.run_wide),
            Op.remove_member(ACTIVE_RUNS, rk.run_id),
        ]

    async def _finalize_in(
        self, conn: AsyncConnection, rk: RunKeys, retention: float, ops: list[Op]
    ) -> bool:
        """Finalize the run with ``ops`` (:meth:`_final_ops`) in ``conn``'s transaction, and
        move it in the run index if this call won. The index sets it moves between are locked
        with ``ops``' keys in one statement, before anything is known of who wins: locked only
        once won, they would be locked after ``runs:active``, both shared keys, in a second
        statement, against the lock order (flowcraft_sql.database), and deadlock with a start
        locking them together. The run's metadata (which names them) is written once, by its
        start, so it is read before the locks."""
        meta = (await self._ctx.read(conn, rk.run_id, [RUN])).get(RUN)
        moves: list[Op] = []
        if isinstance(meta, dict):
            status = json.loads(ops[0].value or "{}")["status"]
            moves = [
                *index_ops(meta, rk.run_id, RUNNING, 0, leaving=True),
                *index_ops(meta, rk.run_id, status, retention),
            ]
        batch = await self._co.open_batch(conn, [*ops, *moves])
        results = [batch.apply(op) for op in ops]
        won = bool(results[0])
        if won:
            # The run index's move, in this transaction: by the run's metadata.
            for op in moves:
                batch.apply(op)
        await batch.flush(conn)
        await self._after_finalize_in(conn, rk, retention)
        # Signalled even when another writer won: it may have died before its signal.
        await self._co.signal_in(conn, rk.signal_done, retention)
        await self._ctx.expire_in(conn, rk.run_id, retention)
        return won

    async def _after_finalize_in(
        self, conn: AsyncConnection, rk: RunKeys, retention: float
    ) -> None:
        """Every per-job key of the run (``run:<id>:<kind>:<job>``) goes with it: one range
        update, since keys compare byte for byte."""
        coord = self.db.tables.coord
        low = f"run:{rk.run_id}:"
        high = low[:-1] + ";"  # the first string after every one that starts with ``low``
        await conn.execute(
            update(coord)
            .where(coord.c.ns == self._co.ns, coord.c.key >= low, coord.c.key < high)
            .values(expires_at=time.time() + retention)
        )

    async def finalize(
        self, run_id: str, status: str, error: dict[str, Any] | None, *, retention: float
    ) -> bool:
        rk = run_keys(run_id)
        ops = self._final_ops(
            rk, retention, final_record(status, error), ended_record(status, time.time())
        )

        async def body(conn: AsyncConnection) -> bool:
            return await self._finalize_in(conn, rk, retention, ops)

        won = await self.db.run(body)
        self._co.woken(rk.signal_done)
        return won
