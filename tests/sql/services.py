"""Where the SQL driver's tests find their databases, and a table prefix private to this test
run (several runs on one server never share or drop each other's tables).

PostgreSQL: ``FLOWCRAFT_TEST_POSTGRES_URL``, else ``postgresql://postgres@127.0.0.1:5432/test``.
MariaDB/MySQL: ``FLOWCRAFT_TEST_MYSQL_URL``, else ``mysql://root@127.0.0.1:3306/test``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import tempfile
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from flowcraft_sql.schema import tables
from flowcraft_sql.url import parse_url

POSTGRES = os.environ.get(
    "FLOWCRAFT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL = os.environ.get("FLOWCRAFT_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
#: Table prefix of this test run.
PREFIX = f"t{uuid.uuid4().hex[:10]}"
SQLITE_DIR = tempfile.mkdtemp(prefix="flowcraft-sql-")

HOW_TO = {
    "postgresql": (
        "the SQL driver's PostgreSQL tests need a server: set FLOWCRAFT_TEST_POSTGRES_URL="
        "postgresql://user@host:port/db, or start one on 127.0.0.1:5432 with trust auth and a "
        "database 'test' (e.g. apt-get install postgresql; createdb test)"
    ),
    "mysql": (
        "the SQL driver's MariaDB tests need a server: set FLOWCRAFT_TEST_MYSQL_URL="
        "mysql://user@host:port/db, or start one on 127.0.0.1:3306 with user root, no "
        "password and a database 'test' (e.g. apt-get install mariadb-server; "
        "mysql -e 'create database test')"
    ),
}


def with_query(url: str, **params: str) -> str:
    joiner = "&" if "?" in url else "?"
    return url + joiner + "&".join(f"{k}={v}" for k, v in params.items())


def server_url(family: str, **params: str) -> str:
    base = POSTGRES if family == "postgresql" else MYSQL
    return with_query(base, prefix=PREFIX, **params)


def sqlite_url(name: str = "conformance", **params: str) -> str:
    return with_query(f"sqlite:///{SQLITE_DIR}/{name}.db", prefix=PREFIX, **params)


async def _ping(url: str) -> str | None:
    engine = create_async_engine(parse_url(url).url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]
    finally:
        await engine.dispose()


_answers: dict[str, str | None] = {}


def require(family: str) -> None:
    """Fail the test, saying how to get a server, unless the family's server answers."""
    if family == "sqlite":
        return
    if family not in _answers:
        # On a thread of its own: callers may be inside an event loop already.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            _answers[family] = pool.submit(asyncio.run, _ping(server_url(family))).result()
    problem = _answers[family]
    if problem is not None:
        pytest.fail(f"{HOW_TO[family]} ({problem})", pytrace=False)


async def _drop(url: str, prefix: str) -> None:
    settings = parse_url(url)
    engine = create_async_engine(settings.url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: tables(prefix).metadata.drop_all(c, checkfirst=True))
    finally:
        await engine.dispose()


def drop_tables(family: str, prefix: str = PREFIX) -> None:
    """Drop a prefix's tables (after the run; never another run's)."""
    if family == "sqlite" or _answers.get(family, "untried") is not None:
        return
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _drop(server_url(family), prefix)).result()
