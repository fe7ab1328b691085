"""The SQL driver's tables, and the versioned runner that creates and migrates them.

Every table is named ``{prefix}_<name>`` and has the same design on SQLite, PostgreSQL and
MariaDB/MySQL. Keys compare byte for byte on all three (binary columns on PostgreSQL and
MySQL), so ``"a"``, ``"A"`` and ``"a "`` are three keys and a key range is a prefix.

The schema is created on first use and versioned in ``{prefix}_schema``: opening a database
applies the migrations it lacks, in order, under a database-wide lock, so processes starting
together migrate once. A database whose schema is newer than this release is refused with a
one-line error naming the versions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    insert,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from flowcraft_core.errors import DriverError

#: Schema version this release writes. Bump it with a new entry in :data:`MIGRATIONS`.
VERSION = 3
#: Slots of each lock level: a key's lock is slot ``level * LOCK_SLOTS + crc32(group) %
#: LOCK_SLOTS`` (flowcraft_sql.database: "Lock order").
LOCK_SLOTS = 1024
#: Lock levels (a run's keys, shared keys): the lock table has ``LOCK_LEVELS * LOCK_SLOTS`` rows.
LOCK_LEVELS = 2

_MYSQL = ("mysql", "mariadb")


class Key(TypeDecorator[str]):
    """A string compared byte for byte, any character included (NUL too): binary columns on
    PostgreSQL (whose text refuses NUL and sorts by locale) and MySQL (whose text collations
    ignore case and trailing spaces), UTF-8 text on SQLite (compared by memcmp)."""

    impl = Text
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__()
        self.length = length

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in _MYSQL:
            if self.length is None:
                return dialect.type_descriptor(mysql.LONGBLOB())
            return dialect.type_descriptor(mysql.VARBINARY(self.length))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.BYTEA())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: str | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name != "sqlite":
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("utf-8")
        return value  # type: ignore[no-any-return]


#: JSON text of any size (TEXT is 64 KiB on MySQL).
Json = Text().with_variant(mysql.LONGTEXT(), *_MYSQL)
#: Job ids: SQLite autoincrements only an INTEGER primary key.
JobId = BigInteger().with_variant(Integer(), "sqlite")

NS = 64
RUN = 255
KEY = 1024
MEMBER = 512


@dataclass(frozen=True)
class Tables:
    """The tables of one prefix."""

    metadata: MetaData
    schema: Table
    context: Table
    expiry: Table
    coord: Table
    members: Table
    signals: Table
    locks: Table
    jobs: Table


def tables(prefix: str) -> Tables:
    """The table objects for ``prefix`` (their version-1 shape; later versions add indexes)."""
    md = MetaData()
    kw: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}

    def table(name: str, *columns: Any) -> Table:
        return Table(f"{prefix}_{name}", md, *columns, **kw)

    return Tables(
        metadata=md,
        schema=table(
            "schema",
            Column("name", String(64), primary_key=True),
            Column("version", Integer, nullable=False),
        ),
        # One row per (run, key) of a run's context: the JSON text of its value.
        context=table(
            "context",
            Column("ns", Key(NS), primary_key=True),
            Column("run_id", Key(RUN), primary_key=True),
            Column("key", Key(KEY), primary_key=True),
            Column("value", Json, nullable=False),
        ),
        # A run's retention: its context reads as absent from ``deadline`` (epoch seconds).
        expiry=table(
            "expiry",
            Column("ns", Key(NS), primary_key=True),
            Column("run_id", Key(RUN), primary_key=True),
            Column("deadline", Double, nullable=False),
        ),
        # Coordination keys: kind 's' (a string in ``value``) or 'm' (a member set of ``size``
        # members, in the members table). ``expires_at`` is epoch seconds or NULL.
        coord=table(
            "coord",
            Column("ns", Key(NS), primary_key=True),
            Column("key", Key(KEY), primary_key=True),
            Column("kind", String(1), nullable=False),
            Column("value", Key(), nullable=True),  # any string, NUL included
            Column("size", Integer, nullable=False, default=0),
            Column("expires_at", Double, nullable=True),
        ),
        members=table(
            "members",
            Column("ns", Key(NS), primary_key=True),
            Column("key", Key(KEY), primary_key=True),
            Column("member", Key(MEMBER), primary_key=True),
        ),
        # Latched signals, apart from values as on Redis.
        signals=table(
            "signals",
            Column("ns", Key(NS), primary_key=True),
            Column("key", Key(KEY), primary_key=True),
            Column("expires_at", Double, nullable=True),
        ),
        # Row locks that serialise coordination batches touching the same keys.
        locks=table("locks", Column("slot", Integer, primary_key=True, autoincrement=False)),
        # The queue: a job is visible from ``available_at``; a claim moves that to the end of
        # its lease, so a dead worker's job reappears by itself.
        jobs=table(
            "jobs",
            Column("id", JobId, primary_key=True, autoincrement=True),
            Column("ns", Key(NS), nullable=False),
            Column("body", Json, nullable=False),
            Column("available_at", Double, nullable=False),
            Column("owner", String(64), nullable=True),
            Column("deliveries", Integer, nullable=False, default=0),
        ),
    )


# -- migrations ---------------------------------------------------------------------------------


def _v1(conn: Connection, t: Tables) -> None:
    """Every table, the jobs index, the lock slots."""
    t.metadata.create_all(conn, checkfirst=True)
    Index(f"{t.jobs.name}_due", t.jobs.c.ns, t.jobs.c.available_at).create(conn, checkfirst=True)
    if conn.execute(select(t.locks.c.slot).limit(1)).first() is None:
        conn.execute(insert(t.locks), [{"slot": i} for i in range(LOCK_SLOTS)])


def _v2(conn: Connection, t: Tables) -> None:
    """Indexes for the sweeper of expired rows, which otherwise scans whole tables."""
    Index(f"{t.coord.name}_expiry", t.coord.c.expires_at).create(conn, checkfirst=True)
    Index(f"{t.expiry.name}_deadline", t.expiry.c.deadline).create(conn, checkfirst=True)
    Index(f"{t.signals.name}_expiry", t.signals.c.expires_at).create(conn, checkfirst=True)


def _v3(conn: Connection, t: Tables) -> None:
    """The lock slots of the second lock level (shared keys), which until then shared the
    run keys' slots (a cause of deadlocks: flowcraft_sql.database, "Lock order")."""
    have = {slot for (slot,) in conn.execute(select(t.locks.c.slot))}
    missing = [{"slot": i} for i in range(LOCK_LEVELS * LOCK_SLOTS) if i not in have]
    if missing:
        conn.execute(insert(t.locks), missing)


#: Migration to each version from the one before it.
MIGRATIONS: dict[int, Callable[[Connection, Tables], None]] = {1: _v1, 2: _v2, 3: _v3}
NAME = "flowcraft"


def installed_version(conn: Connection, t: Tables) -> int:
    """The schema version recorded in the database (0: none yet)."""
    t.schema.create(conn, checkfirst=True)
    row = conn.execute(select(t.schema.c.version).where(t.schema.c.name == NAME)).first()
    return 0 if row is None else int(row[0])


def migrate(conn: Connection, t: Tables, *, where: str, target: int | None = None) -> int:
    """Bring the schema of ``t`` to ``target`` (default: :data:`VERSION`; call with the
    database-wide lock held); returns the version found. Raises :class:`DriverError` for a
    schema newer than this release's."""
    target = VERSION if target is None else target
    found = installed_version(conn, t)
    if found > VERSION:
        raise DriverError(
            f"{where}: tables '{t.schema.name[: -len('_schema')]}_*' have schema version "
            f"{found}, written by a newer flowcraft (this one knows up to {VERSION}); "
            "upgrade flowcraft"
        )
    for version in range(found + 1, target + 1):
        MIGRATIONS[version](conn, t)
        if version == 1:
            conn.execute(insert(t.schema).values(name=NAME, version=1))
        else:
            conn.execute(t.schema.update().where(t.schema.c.name == NAME).values(version=version))
    return found


def lock_name(prefix: str) -> str:
    return f"flowcraft-schema-{prefix}"


def advisory_lock_sql(family: str, prefix: str) -> tuple[Any, Any] | None:
    """Statements that take and release the database-wide migration lock (None on SQLite,
    where the migration's ``BEGIN IMMEDIATE`` is that lock)."""
    if family == "postgresql":
        return (
            text("SELECT pg_advisory_xact_lock(hashtext(:name))").bindparams(
                name=lock_name(prefix)
            ),
            None,
        )
    if family == "mysql":
        return (
            text("SELECT GET_LOCK(:name, 60)").bindparams(name=lock_name(prefix)),
            text("SELECT RELEASE_LOCK(:name)").bindparams(name=lock_name(prefix)),
        )
    return None
