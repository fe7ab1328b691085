"""The two statements whose spelling differs between SQLite, PostgreSQL and MySQL: insert
or update on a primary-key conflict, and insert unless present."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import LargeBinary, Select, Table, bindparam, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from flowcraft_sql.schema import Key

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
        pg = postgresql.insert(table).from_select(list(rows[0]), _unnest(table, rows))
        return pg.on_conflict_do_update(
            index_elements=keys, set_={c: pg.excluded[c] for c in update}
        )
    lite = sqlite.insert(table).values(list(rows))
    return lite.on_conflict_do_update(
        index_elements=keys, set_={c: lite.excluded[c] for c in update}
    )


def _unnest(table: Table, rows: Sequence[dict[str, Any]]) -> Select[Any]:
    """``rows`` as one array parameter per column, unnested: a statement of one shape
    whatever the number of rows, so SQLAlchemy compiles it once (a multi-row VALUES has no
    cache key and is compiled at every execution, which cost more than its round trip).
    Its parameters are named by table, so the upserts of two tables can share a statement."""
    names = list(rows[0])
    params = []
    for name in names:
        column = table.c[name]
        values = [row[name] for row in rows]
        if isinstance(column.type, Key):  # bytea: encoded here, as Key does for one value
            values = [None if v is None else v.encode("utf-8") for v in values]
            kind: Any = ARRAY(LargeBinary)
        else:
            kind = ARRAY(column.type)
        params.append(bindparam(f"{table.name}_{name}", values, type_=kind))
    unnested = func.unnest(*params).table_valued(*names).render_derived()
    return select(*(unnested.c[name] for name in names))


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
