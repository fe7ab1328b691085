"""The SQL coordination store: keys in ``{prefix}_coord``, set members in
``{prefix}_members``, latched signals in ``{prefix}_signals``.

A batch is one transaction in three moves: lock the keys' lock slots (see
:meth:`flowcraft_sql.database.Database.lock`), read the rows and members the operations need,
compute every result in order here, then write the differences back. Under the locks no other
batch can change those keys in between, so the batch is atomic and serial with every other,
in a handful of statements whatever its length: one to lock, one to read (rows and members
together, and whatever the fused run state reads with them), and on PostgreSQL one to write
(elsewhere one per kind of write). Each statement is a round trip to the server, which is what
a step costs most. Expired rows read as absent and are deleted by
the batch that finds them, or by the periodic sweep.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

from sqlalchemy import (
    Integer,
    Select,
    delete,
    literal,
    null,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from flowcraft_core.protocols.coordination import BatchBacked, Op, OpName
from flowcraft_sql.context import checked
from flowcraft_sql.database import Database, shared
from flowcraft_sql.schema import KEY, MEMBER
from flowcraft_sql.statements import upsert
from flowcraft_sql.url import SQLSettings, parse_url

OP_NAMES = frozenset(get_args(OpName))
_NEEDS_VALUE = frozenset({"set", "set_if_absent", "add_member", "remove_member"})
_READS = frozenset({"get", "count", "members"})


@dataclass(slots=True)
class _Row:
    kind: str  # 's' string, 'm' member set
    value: str | None
    size: int
    expires_at: float | None


@dataclass(slots=True)
class _Members:
    """What is known of one set's members: from the database (``known`` per member, or the
    whole ``base``) and this batch's changes. ``reset``: the database's members are stale (the
    set was deleted, expired or replaced) and are deleted on flush."""

    known: dict[str, bool] = field(default_factory=dict)
    base: set[str] | None = None
    added: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    reset: bool = False

    def has(self, member: str) -> bool:
        if member in self.added:
            return True
        if member in self.removed or self.reset:
            return False
        if self.base is not None:
            return member in self.base
        return self.known.get(member, False)

    def all(self) -> set[str]:
        base = set() if self.reset else set(self.base or ())
        return (base - self.removed) | self.added

    def clear(self) -> None:
        self.reset = True
        self.added.clear()
        self.removed.clear()


class Batch:
    """One batch of operations against the rows of one namespace, inside a transaction."""

    def __init__(self, db: Database, ns: str, now: float) -> None:
        self.db = db
        self.ns = ns
        self.now = now
        self.rows: dict[str, _Row | None] = {}
        self.in_db: set[str] = set()  # keys with a row in the database (live or expired)
        self.dirty: set[str] = set()
        self.sets: dict[str, _Members] = {}
        #: The rows of :meth:`load`'s ``also`` selects: (key, number, text) each.
        self.also: list[list[tuple[str, Any, Any]]] = []

    async def load(
        self, conn: AsyncConnection, ops: Sequence[Op], also: Sequence[Select[Any]] = ()
    ) -> None:
        """Read the rows and members ``ops`` need, and the rows of ``also`` (selects of
        :func:`shaped` form, put in :attr:`also` by position), in one statement."""
        t = self.db.tables
        keys = list(dict.fromkeys(op.key for op in ops))
        c, m = t.coord, t.members
        parts: list[Select[Any]] = [
            select(
                literal(-1, Integer),
                c.c.key,
                c.c.kind,
                c.c.value,
                c.c.size,
                c.c.expires_at,
                null(),
            ).where(c.c.ns == self.ns, c.c.key.in_(keys))
        ]
        # The members the ops may touch, asked for whether or not their set exists: it is
        # read in the same statement, so a member row of a set that is absent, expired or a
        # string is simply ignored below.
        whole = {op.key for op in ops if op.name == "members"}
        pairs = {
            (op.key, op.value or "")
            for op in ops
            if op.name in ("add_member", "remove_member") and op.key not in whole
        }
        conditions = []
        if whole:
            conditions.append(m.c.key.in_(sorted(whole)))
        if pairs:
            conditions.append(tuple_(m.c.key, m.c.member).in_(sorted(pairs)))
        if conditions:
            parts.append(
                shaped(-2, m.c.key, value=m.c.member).where(m.c.ns == self.ns, or_(*conditions))
            )
        parts.extend(also)
        query: Any = parts[0] if len(parts) == 1 else union_all(*parts)
        self.also = [[] for _ in also]
        self.rows = dict.fromkeys(keys)
        member_rows: list[tuple[str, str]] = []
        for src, key, kind, value, size, expires_at, text_value in await conn.execute(query):
            if src >= 0:
                self.also[src].append((key, expires_at, text_value))
                continue
            if src == -2:
                member_rows.append((key, value))
                continue
            self.in_db.add(key)
            if expires_at is not None and expires_at <= self.now:
                self.dirty.add(key)  # expired: deleted on flush unless written again
                if kind == "m":
                    self._set(key).clear()
                continue
            self.rows[key] = _Row(kind, value, size, expires_at)
        wanted = {
            k
            for k in (*whole, *(k for k, _ in pairs))
            if (row := self.rows[k]) is not None and row.kind == "m"
        }
        for k in wanted:
            if k in whole:
                self._set(k).base = set()
        for k, v in pairs:
            if k in wanted:
                self._set(k).known[v] = False
        for key, member in member_rows:
            if key in wanted:
                members = self._set(key)
                if members.base is not None:
                    members.base.add(member)
                members.known[member] = True

    def _set(self, key: str) -> _Members:
        members = self.sets.get(key)
        if members is None:
            members = self.sets[key] = _Members()
        return members

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self.now + ttl

    def _put(self, key: str, row: _Row | None) -> None:
        self.rows[key] = row
        self.dirty.add(key)

    def apply(self, op: Op) -> Any:
        """``op``'s result, with its effect recorded for :meth:`flush`."""
        key, name = op.key, op.name
        row = self.rows[key]
        if name == "get":
            return row.value if row is not None and row.kind == "s" else None
        if name == "count":
            return row.size if row is not None and row.kind == "m" else 0
        if name == "members":
            return self.sets[key].all() if row is not None and row.kind == "m" else set()
        if name == "set":
            assert op.value is not None
            if row is not None and row.kind == "m":
                self._set(key).clear()
            self._put(key, _Row("s", op.value, 0, self._deadline(op.ttl)))
            return None
        if name == "set_if_absent":
            assert op.value is not None
            if row is not None:
                return False
            self._put(key, _Row("s", op.value, 0, self._deadline(op.ttl)))
            return True
        if name == "incr":
            if row is not None and row.kind == "m":
                raise TypeError(f"incr on a member set: {key!r}")
            if row is None:
                value = op.amount
                self._put(key, _Row("s", str(value), 0, self._deadline(op.ttl)))
            else:
                value = int(row.value or 0) + op.amount
                row.value = str(value)
                self.dirty.add(key)
            return value
        if name == "delete":
            if row is None:
                return False
            if row.kind == "m":
                self._set(key).clear()
            self._put(key, None)
            return True
        if name == "extend":
            if row is None:
                return False
            assert op.ttl is not None
            row.expires_at = self.now + op.ttl
            self.dirty.add(key)
            return True
        if name == "add_member":
            member = op.value
            assert member is not None
            checked("member", member, MEMBER)
            if row is None:
                row = _Row("m", None, 0, self._deadline(op.ttl))
                self._set(key).clear()  # whatever the database holds for it is stale
                self._put(key, row)
            elif row.kind != "m":
                raise TypeError(f"add_member on a string key: {key!r}")
            members = self._set(key)
            if members.has(member):
                return False, row.size
            members.added.add(member)
            members.removed.discard(member)
            row.size += 1
            self.dirty.add(key)
            return True, row.size
        if name == "remove_member":
            member = op.value
            assert member is not None
            if row is None or row.kind != "m" or not self._set(key).has(member):
                return False
            members = self._set(key)
            members.added.discard(member)
            members.removed.add(member)
            row.size -= 1
            self.dirty.add(key)
            return True
        raise ValueError(f"unknown coordination op {name!r}")

    async def flush(self, conn: AsyncConnection) -> None:
        """Write every change back: in one statement on PostgreSQL (the writes as CTEs of
        the last), in a few elsewhere."""
        statements = self._writes()
        if not statements:
            return
        if self.db.family == "postgresql" and len(statements) > 1:
            # The CTEs and the main statement run on one snapshot, so they must not touch
            # the same row: _writes keeps them disjoint.
            last = statements[-1]
            for i, stmt in enumerate(statements[:-1]):
                last = last.add_cte(stmt.cte(f"w{i}"))
            statements = [last]
        for stmt in statements:
            await conn.execute(stmt)

    def _writes(self) -> list[Any]:
        """The statements that write this batch's changes, each row touched by one only."""
        t, ns = self.db.tables, self.ns
        m = t.members
        out: list[Any] = []
        added = [
            {"ns": ns, "key": k, "member": v}
            for k, s in sorted(self.sets.items())
            for v in sorted(s.added)
        ]
        reset = [k for k, s in self.sets.items() if s.reset and k in self.in_db]
        if reset:
            stale = delete(m).where(m.c.ns == ns, m.c.key.in_(reset))
            kept = [(r["key"], r["member"]) for r in added if r["key"] in set(reset)]
            if kept:  # re-added at once: upserted below, not deleted here
                stale = stale.where(tuple_(m.c.key, m.c.member).not_in(kept))
            out.append(stale)
        gone = [
            (k, v)
            for k, s in self.sets.items()
            for v in s.removed
            if not s.reset and v not in s.added
        ]
        if gone:
            out.append(delete(m).where(m.c.ns == ns, tuple_(m.c.key, m.c.member).in_(gone)))
        deleted = [k for k in self.dirty if self.rows.get(k) is None and k in self.in_db]
        if deleted:
            out.append(delete(t.coord).where(t.coord.c.ns == ns, t.coord.c.key.in_(deleted)))
        written = [
            {
                "ns": ns,
                "key": k,
                "kind": row.kind,
                "value": row.value,
                "size": row.size,
                "expires_at": row.expires_at,
            }
            for k in sorted(self.dirty)
            if (row := self.rows.get(k)) is not None
        ]
        if written:
            out.append(
                upsert(self.db.family, t.coord, written, ["kind", "value", "size", "expires_at"])
            )
        if added:
            # Upsert, not insert: a member of a reset set that is added again keeps its row.
            out.append(upsert(self.db.family, m, added, ["member"]))
        return out


def shaped(
    src: int, key: Any, *, value: Any = None, number: Any = None, text: Any = None
) -> Select[Any]:
    """A select in the form of :meth:`Batch.load`'s one statement, to add to it: ``src`` (the
    position in ``also``), a key, and a number or a text (the columns its rows give back).
    The other columns are untyped NULLs: a union takes each column's type from the branches
    that have one, on every database."""
    return select(
        literal(src, Integer),
        key,
        null(),
        null() if value is None else value,
        literal(0, Integer),
        null() if number is None else number,
        null() if text is None else text,
    )


def validate(ops: Sequence[Op]) -> None:
    for op in ops:
        if op.name not in OP_NAMES:
            raise ValueError(f"unknown coordination op {op.name!r}")
        if op.name in _NEEDS_VALUE and op.value is None:
            raise ValueError(f"coordination op {op.name!r} on {op.key!r} needs a value")
        if op.name == "extend" and op.ttl is None:
            raise ValueError(f"coordination op 'extend' on {op.key!r} needs a ttl")
        checked("coordination key", op.key, KEY)


class SQLCoordinationStore(BatchBacked):
    """Shared atomic state in SQL tables (see the module docstring). ``clock`` gives epoch
    seconds for TTLs; tests inject one. Every process of a deployment must agree on the time
    (NTP), as they must on Redis for Dramatiq's delays."""

    def __init__(
        self,
        url: str | SQLSettings,
        *,
        database: Database | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = parse_url(url) if isinstance(url, str) else url
        self.db = (database or shared(self.settings)).acquire()
        self.ns = self.settings.ns
        self.clock = clock
        self._closed = False

    # -- operations ---------------------------------------------------------------------------

    async def open_batch(
        self, conn: AsyncConnection, ops: Sequence[Op], also: Sequence[Select[Any]] = ()
    ) -> Batch:
        """Lock and load what ``ops`` (any of which may then be applied, in any order) need,
        and the rows of ``also`` (see :meth:`Batch.load`), inside ``conn``'s transaction: the
        fused run state's entry point."""
        if len(ops) > 1 or ops[0].name not in _READS:
            await self.db.lock(conn, (op.key for op in ops))
        batch = Batch(self.db, self.ns, self.clock())
        await batch.load(conn, ops, also)
        return batch

    async def apply_in(self, conn: AsyncConnection, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` inside ``conn``'s transaction."""
        batch = await self.open_batch(conn, ops)
        results = [batch.apply(op) for op in ops]
        await batch.flush(conn)
        return results

    async def batch(self, ops: Sequence[Op]) -> list[Any]:
        """Run ``ops`` atomically and in order; results as documented on :class:`Op`. An
        operation that fails (a write to a key of the other type) raises, and the whole batch
        is rolled back."""
        if not ops:
            return []
        validate(ops)
        write = len(ops) > 1 or ops[0].name not in _READS

        async def body(conn: AsyncConnection) -> list[Any]:
            return await self.apply_in(conn, ops)

        results = await self.db.run(body, write=write)
        if write and self.db.sweep_due():
            await self.sweep()
        return results

    # -- signals ------------------------------------------------------------------------------

    async def signal_in(self, conn: AsyncConnection, key: str, ttl: float | None) -> None:
        """Latch ``key`` inside ``conn``'s transaction; call :meth:`woken` after it commits."""
        checked("signal key", key, KEY)
        s = self.db.tables.signals
        row = {"ns": self.ns, "key": key, "expires_at": None if ttl is None else self.clock() + ttl}
        await conn.execute(upsert(self.db.family, s, [row], ["expires_at"]))
        await self.db.notify(conn, "signal", json.dumps([self.ns, key]))

    def woken(self, key: str) -> None:
        self.db.wake_signal(self.ns, key)

    async def signal(self, key: str, *, ttl: float | None = None) -> None:
        """Latch ``key``: its row stays until it expires. Waiters of this process wake at
        once; of other processes by NOTIFY (PostgreSQL) or their next poll."""

        async def body(conn: AsyncConnection) -> None:
            await self.signal_in(conn, key, ttl)

        await self.db.run(body)
        self.woken(key)

    async def _signalled(self, keys: list[str]) -> str | None:
        s = self.db.tables.signals
        now = self.clock()

        async def body(conn: AsyncConnection) -> set[str]:
            rows = await conn.execute(
                select(s.c.key).where(
                    s.c.ns == self.ns,
                    s.c.key.in_(keys),
                    or_(s.c.expires_at.is_(None), s.c.expires_at > now),
                )
            )
            return {k for (k,) in rows}

        found = await self.db.run(body, write=False)
        return next((k for k in keys if k in found), None)

    async def wait_any(self, keys: Sequence[str], timeout: float | None) -> str | None:
        """Block until one of ``keys`` is signalled (or already is); None on timeout.

        A signal from this process wakes the waiter at once; from another, by NOTIFY on
        PostgreSQL, else within ``signal_poll`` seconds (the driver declares it as the
        ``signal_poll_s`` capability)."""
        wanted = list(dict.fromkeys(keys))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        if not wanted:
            await asyncio.sleep(timeout if timeout is not None else 1e9)
            return None
        # Register before listening and looking: a signal of this process while the LISTEN
        # connection is still being opened, or between the look and the wait, is not missed.
        fut = self.db.signal_waiter(self.ns, wanted)
        try:
            await self.db.listen()
            if fut.done():
                return fut.result()
            found = await self._signalled(wanted)
            if found is not None:
                return found
            # Signals of this process resolve ``fut`` at once; of others, NOTIFY or the
            # database's one poller for all waiters do. A short safety poll on PostgreSQL
            # covers a NOTIFY lost while its connection was being re-established.
            self.db.ensure_poller(self.settings.signal_poll if not self.db.push else 1.0)
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return None
                await asyncio.wait([fut], timeout=remaining)
                if fut.done():
                    # A signal of this process, a NOTIFY or the poller: each saw the latch
                    # set, so no second look is needed.
                    return fut.result()
                if self.db.push:
                    await self.db.listen()  # re-established if its connection died
        finally:
            self.db.forget_signal_waiter(self.ns, wanted, fut)

    # -- housekeeping -------------------------------------------------------------------------

    async def sweep(self, limit: int = 500) -> int:
        """Delete up to ``limit`` expired keys (with their members) and signals; returns how
        many keys went. Run now and then by writers; always safe."""
        t, now = self.db.tables, self.clock()

        async def body(conn: AsyncConnection) -> int:
            rows = await conn.execute(
                select(t.coord.c.key)
                .where(t.coord.c.ns == self.ns, t.coord.c.expires_at <= now)
                .limit(limit)
            )
            keys = [k for (k,) in rows]
            if keys:
                await self.db.lock(conn, keys)
                expired = [
                    k
                    for (k,) in await conn.execute(
                        select(t.coord.c.key).where(
                            t.coord.c.ns == self.ns,
                            t.coord.c.key.in_(keys),
                            t.coord.c.expires_at <= now,
                        )
                    )
                ]
                if expired:
                    await conn.execute(
                        delete(t.members).where(
                            t.members.c.ns == self.ns, t.members.c.key.in_(expired)
                        )
                    )
                    await conn.execute(
                        delete(t.coord).where(t.coord.c.ns == self.ns, t.coord.c.key.in_(expired))
                    )
                keys = expired
            return len(keys)

        async def signals(conn: AsyncConnection) -> None:
            await conn.execute(
                delete(t.signals).where(t.signals.c.ns == self.ns, t.signals.c.expires_at <= now)
            )

        swept = await self.db.run(body)
        # A transaction of its own: a writer of a signal may hold its row while it waits for a
        # lock slot (a finishing run), so no transaction holding slots waits for signal rows.
        await self.db.run(signals)
        return swept

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.db.release()
