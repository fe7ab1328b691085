"""The SQL context store: one row per (run, key) holding the JSON text of its value."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import and_, exists, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.ext.asyncio import AsyncConnection

from flowcraft_core.protocols.context import MISSING, Missing, encode
from flowcraft_sql.database import Database, shared
from flowcraft_sql.schema import KEY, RUN
from flowcraft_sql.statements import insert_first, upsert
from flowcraft_sql.url import SQLSettings, parse_url


def checked(what: str, text: str, limit: int) -> str:
    """``text`` if it fits its column (``limit`` UTF-8 bytes), else a ValueError naming it:
    nothing is ever truncated."""
    if len(text) * 4 > limit and len(text.encode("utf-8")) > limit:
        raise ValueError(f"{what} is longer than {limit} bytes: {text[:60]!r}…")
    return text


class SQLContextStore:
    """Per-run JSON maps in ``{prefix}_context``; retention deadlines in ``{prefix}_expiry``.

    Every method is one transaction: :meth:`patch` and :meth:`commit` are atomic, and
    :meth:`commit` is first-wins through the guard row's primary key. Values are encoded
    before anything is sent, so a value without a JSON form writes nothing. A run past its
    retention reads as empty at once; its rows are deleted by the next write to it or by the
    periodic sweep.
    """

    def __init__(self, url: str | SQLSettings, *, database: Database | None = None) -> None:
        self.settings = parse_url(url) if isinstance(url, str) else url
        self.db = (database or shared(self.settings)).acquire()
        self.ns = self.settings.ns
        self._closed = False

    # -- statements shared with the fused run state ------------------------------------------

    def live(self, run_id: str, now: float) -> Any:
        e = self.db.tables.expiry
        return ~exists().where(and_(e.c.ns == self.ns, e.c.run_id == run_id, e.c.deadline <= now))

    async def read(self, conn: AsyncConnection, run_id: str, keys: list[str]) -> dict[str, Any]:
        c = self.db.tables.context
        rows = await conn.execute(
            select(c.c.key, c.c.value).where(
                c.c.ns == self.ns,
                c.c.run_id == run_id,
                c.c.key.in_(keys),
                self.live(run_id, time.time()),
            )
        )
        return {k: json.loads(v) for k, v in rows}

    async def purge_expired(
        self, conn: AsyncConnection, run_id: str, expired: bool | None = None
    ) -> None:
        """Delete the run's rows if its retention has passed (before writing to it).
        ``expired``: whether it has, when the caller read the deadline already."""
        t = self.db.tables
        if expired is None:
            row = (
                await conn.execute(
                    select(t.expiry.c.deadline).where(
                        t.expiry.c.ns == self.ns, t.expiry.c.run_id == run_id
                    )
                )
            ).first()
            expired = row is not None and row[0] <= time.time()
        if expired:
            await conn.execute(
                sql_delete(t.context).where(t.context.c.ns == self.ns, t.context.c.run_id == run_id)
            )
            await conn.execute(
                sql_delete(t.expiry).where(t.expiry.c.ns == self.ns, t.expiry.c.run_id == run_id)
            )

    def rows(self, run_id: str, values: Mapping[str, str]) -> list[dict[str, Any]]:
        checked("run id", run_id, RUN)
        return [
            {"ns": self.ns, "run_id": run_id, "key": checked("context key", k, KEY), "value": v}
            for k, v in values.items()
        ]

    async def write(self, conn: AsyncConnection, run_id: str, values: Mapping[str, str]) -> None:
        if values:
            await conn.execute(
                upsert(self.db.family, self.db.tables.context, self.rows(run_id, values), ["value"])
            )

    async def commit_in(
        self,
        conn: AsyncConnection,
        run_id: str,
        guard: str,
        encoded: Mapping[str, str],
        *,
        expired: bool | None = None,
    ) -> bool:
        """The first-wins commit inside ``conn``'s transaction (``expired``: see
        :meth:`purge_expired`)."""
        await self.purge_expired(conn, run_id, expired)
        first = self.rows(run_id, {guard: encoded.get(guard, "null")})[0]
        if not await insert_first(conn, self.db.family, self.db.tables.context, first):
            return False
        await self.write(conn, run_id, {k: v for k, v in encoded.items() if k != guard})
        return True

    # -- protocol -----------------------------------------------------------------------------

    async def get(self, run_id: str, key: str) -> Any | Missing:
        found = await self.get_many(run_id, [key])
        return found.get(key, MISSING)

    async def get_many(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}

        async def body(conn: AsyncConnection) -> dict[str, Any]:
            return await self.read(conn, run_id, wanted)

        return await self.db.run(body, write=False)

    async def get_all(self, run_id: str) -> dict[str, Any]:
        c = self.db.tables.context

        async def body(conn: AsyncConnection) -> dict[str, Any]:
            rows = await conn.execute(
                select(c.c.key, c.c.value).where(
                    c.c.ns == self.ns, c.c.run_id == run_id, self.live(run_id, time.time())
                )
            )
            return {k: json.loads(v) for k, v in rows}

        return await self.db.run(body, write=False)

    async def set(self, run_id: str, key: str, value: Any) -> None:
        await self.patch(run_id, {key: value})

    async def delete(self, run_id: str, key: str) -> None:
        await self.patch(run_id, {}, [key])

    async def has(self, run_id: str, key: str) -> bool:
        return await self.get(run_id, key) is not MISSING

    async def patch(self, run_id: str, set: Mapping[str, Any], delete: Iterable[str] = ()) -> None:
        encoded = {k: encode(v) for k, v in set.items()}
        removed = list(dict.fromkeys(delete))
        if not encoded and not removed:
            return
        c = self.db.tables.context

        async def body(conn: AsyncConnection) -> None:
            await self.purge_expired(conn, run_id)
            await self.write(conn, run_id, dict(sorted(encoded.items())))
            if removed:
                await conn.execute(
                    sql_delete(c).where(
                        c.c.ns == self.ns, c.c.run_id == run_id, c.c.key.in_(removed)
                    )
                )

        await self.db.run(body)

    async def commit(self, run_id: str, guard: str, set: Mapping[str, Any]) -> bool:
        encoded = {k: encode(v) for k, v in set.items()}

        async def body(conn: AsyncConnection) -> bool:
            return await self.commit_in(conn, run_id, guard, encoded)

        return await self.db.run(body)

    async def expire_in(self, conn: AsyncConnection, run_id: str, seconds: float) -> None:
        t = self.db.tables
        await self.purge_expired(conn, run_id)
        present = (
            await conn.execute(
                select(t.context.c.key)
                .where(t.context.c.ns == self.ns, t.context.c.run_id == run_id)
                .limit(1)
            )
        ).first()
        if present is not None:
            row = {"ns": self.ns, "run_id": run_id, "deadline": time.time() + seconds}
            await conn.execute(upsert(self.db.family, t.expiry, [row], ["deadline"]))

    async def expire(self, run_id: str, seconds: float) -> None:
        async def body(conn: AsyncConnection) -> None:
            await self.expire_in(conn, run_id, seconds)

        await self.db.run(body)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.db.release()
