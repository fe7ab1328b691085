"""The schema is created on first use, migrated by a newer release keeping its runs, and a
schema from a newer release is refused with one line naming it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import services
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from flowcraft_core import Client, Registry, Worker, open_backends
from flowcraft_core.builder import Flow
from flowcraft_core.errors import DriverError
from flowcraft_core.node import NodeContext
from flowcraft_sql import SQLContextStore, database, schema
from flowcraft_sql.database import Database
from flowcraft_sql.url import parse_url

FAMILIES = ["sqlite", "postgresql"]


def url_for(family: str) -> str:
    services.require(family)
    prefix = f"{services.PREFIX}s{uuid.uuid4().hex[:6]}"
    if family == "sqlite":
        return f"sqlite:///{services.SQLITE_DIR}/schema-{prefix}.db?prefix={prefix}"
    return services.with_query(services.POSTGRES, prefix=prefix)


async def double(ctx: NodeContext) -> int:
    return 2 * int(ctx.input)


REGISTRY = Registry.of({"double": double})
FLOW = (
    Flow("upgrade")
    .node("a", "double")
    .wait("gate")
    .node("b", "double", inputs="a")
    .edge("a", "gate")
    .edge("gate", "b")
    .to_blueprint()
)


async def version_of(url: str) -> int:
    db = Database(parse_url(url))
    try:
        engine = await db.engine()
        t = db.tables
        async with engine.connect() as conn:
            found = await conn.scalar(select(t.schema.c.version))
        return int(found or 0)
    finally:
        await db.dispose()


async def drop(url: str) -> None:
    settings = parse_url(url)
    engine = create_async_engine(settings.url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: schema.tables(settings.prefix).metadata.drop_all(c))
    await engine.dispose()


@pytest.mark.parametrize("family", FAMILIES)
async def test_an_upgrade_from_the_previous_version_keeps_runs(
    family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = url_for(family)
    try:
        # The previous release: schema version VERSION - 1, a run finished, one parked.
        previous = schema.VERSION - 1
        with monkeypatch.context() as old:
            old.setattr(schema, "VERSION", previous)
            backends = open_backends(url)
            client = Client(backends)
            async with Worker(REGISTRY, backends, concurrency=2):
                parked = await client.start(FLOW, 5)
                first = await client.result(parked, timeout=20)
            assert first.status == "awaiting" and first.outputs == {"a": 10}, first
            await backends.close()
            assert await version_of(url) == previous

        # This release opens it: migrated, and the run goes on where it stopped.
        backends = open_backends(url)
        client = Client(backends)
        async with Worker(REGISTRY, backends, concurrency=2):
            assert (await client.snapshot(parked)).status == "awaiting"
            await client.resume(parked, output=None)
            final = await client.result(parked, timeout=20)
        await backends.close()
        assert final.status == "completed", final
        assert final.outputs["a"] == 10 and final.outputs["b"] == 20
        assert await version_of(url) == schema.VERSION
    finally:
        await drop(url)


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_newer_schema_is_refused_in_one_line(family: str) -> None:
    url = url_for(family)
    try:
        store = SQLContextStore(url)
        await store.set("r", "k", 1)
        t = store.db.tables
        engine = await store.db.engine()
        async with engine.begin() as conn:
            await conn.execute(update(t.schema).values(version=schema.VERSION + 1))
        await store.close()

        # A process of this release opening it (this one remembers it migrated it).
        database._prepared.clear()
        newer = SQLContextStore(url)
        with pytest.raises(DriverError) as caught:
            await newer.get("r", "k")
        message = str(caught.value)
        assert "\n" not in message
        assert f"schema version {schema.VERSION + 1}" in message
        assert "newer flowcraft" in message and "_*" in message
        await newer.close()
    finally:
        await drop(url)


async def test_processes_starting_together_create_the_schema_once() -> None:
    url = url_for("postgresql")
    try:
        stores = [
            SQLContextStore(parse_url(url), database=Database(parse_url(url))) for _ in range(4)
        ]
        await asyncio.gather(*(s.set("r", f"k{i}", i) for i, s in enumerate(stores)))
        assert await stores[0].get_many("r", [f"k{i}" for i in range(4)]) == {
            f"k{i}": i for i in range(4)
        }
        for s in stores:
            await s.close()
    finally:
        await drop(url)
