"""The two statements whose spelling differs between SQLite, PostgreSQL and MySQL: insert
or update on a primary-key conflict, and insert unless present."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

_DUPLICATE_KEY = 1062  # MySQL's ER_DUP_ENTRY


def upsert(
    family: str, table: Table, rows: Sequence[dict[str, Any]], update: Sequence[str]
) -> Insert:
    """Insert ``rows``; a row whose primary key exists gets the columns ``update`` instead."""
    if family == "mysql":
        my = mysql.insert(table).values(list(rows))
        result: Insert = my.on_duplicate_key_update({c: my.inserted[c] for c in update})
        return result
    keys = [c.name for c in table.primary_key.columns]
    if family == "postgresql":
        pg = postgresql.insert(table).values(list(rows))
        return pg.on_conflict_do_update(
            index_elements=keys, set_={c: pg.excluded[c] for c in update}
        )
    lite = sqlite.insert(table).values(list(rows))
    return lite.on_conflict_do_update(
        index_elements=keys, set_={c: lite.excluded[c] for c in update}
    )


async def insert_first(
    conn: AsyncConnection, family: str, table: Table, row: dict[str, Any]
) -> bool:
    """Insert ``row`` unless its primary key exists; whether it was inserted.

    MySQL's ``INSERT IGNORE`` would also turn errors such as truncation into warnings (and its
    drivers ask for those in another round trip), so there a duplicate key is caught instead:
    MySQL rolls back only the statement, not the transaction."""
    if family == "mysql":
        try:
            await conn.execute(mysql.insert(table).values(row))
        except IntegrityError as exc:
            if getattr(exc.orig, "args", (None,))[0] == _DUPLICATE_KEY:
                return False
            raise
        return True
    dialect = postgresql if family == "postgresql" else sqlite
    result = await conn.execute(dialect.insert(table).values(row).on_conflict_do_nothing())
    return bool(result.rowcount == 1)
