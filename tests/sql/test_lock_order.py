"""The SQL driver's coordination locks are taken in one global order, so no two transactions
ever deadlock on them (flowcraft_sql.database: "Lock order").

The scenario is the one ``make bench-peers`` deadlocked on PostgreSQL: fifty ``Client.start``
at once (each locks its run, ``runs:active`` and the run index's "running" sets, in one
statement) while the runs started before them finish (each locks its run, then ``runs:active``,
then the index sets it moves between, in separate statements). Any deadlock the server detects
is counted at the engine, whether or not the driver's retry then got through.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import services
from sqlalchemy import event

from flowcraft_core import Client, NodeContext, Registry, Worker, open_backends
from flowcraft_core.blueprint import Blueprint
from flowcraft_sql.coordination import SQLCoordinationStore
from flowcraft_sql.database import LockOrderError, lock_level


async def _noop(ctx: NodeContext) -> Any:
    return None


REGISTRY = Registry({"noop": _noop})


def fanout(size: int) -> Blueprint:
    """The benchmark's fan-out: a start node, ``size`` parallel nodes and an ``all`` join."""
    nodes: list[dict[str, Any]] = [{"id": "start", "uses": "noop"}]
    nodes += [{"id": f"p{i}", "uses": "noop"} for i in range(size)]
    nodes.append({"id": "join", "uses": "noop"})
    edges = [{"source": "start", "target": f"p{i}"} for i in range(size)]
    edges += [{"source": f"p{i}", "target": "join"} for i in range(size)]
    return Blueprint.from_dict({"id": f"fanout-{size}", "nodes": nodes, "edges": edges})


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("family", ["postgresql", "mysql"])
async def test_concurrent_starts_while_runs_finish_never_deadlock(family: str) -> None:
    services.require(family)
    url = services.server_url(family, ns=f"deadlock_{uuid.uuid4().hex[:8]}")
    backends = open_backends(url)
    coordination = backends.coordination
    assert isinstance(coordination, SQLCoordinationStore)
    engine = await coordination.db.engine()
    deadlocks: list[str] = []

    def on_error(context: Any) -> None:
        message = str(context.original_exception).lower()
        if "deadlock" in message:
            statement = " ".join((context.statement or "").split())[:160]
            deadlocks.append(f"{message.splitlines()[0]} on {statement}")

    event.listen(engine.sync_engine, "handle_error", on_error)
    flow = fanout(20)
    client = Client(backends)
    try:
        async with Worker(REGISTRY, backends, concurrency=8):
            # Three waves of fifty starts at once, each while the runs of the waves before it
            # are still finishing.
            run_ids: list[str] = []
            finishing: list[asyncio.Task[Any]] = []
            for _ in range(3):
                wave = await asyncio.wait_for(
                    asyncio.gather(*(client.start(flow, None) for _ in range(50))), 90
                )
                run_ids += wave
                finishing += [asyncio.ensure_future(client.result(r, timeout=150)) for r in wave]
            got = await asyncio.wait_for(asyncio.gather(*finishing), 180)
    finally:
        event.remove(engine.sync_engine, "handle_error", on_error)
        await client.close()
        await backends.close()
    assert not deadlocks, f"{len(deadlocks)} deadlocks, the first: {deadlocks[0]}"
    assert [r.status for r in got] == ["completed"] * len(run_ids)


# -- the order itself, checked on every database (SQLite's writers need no locks, but a
# transaction that breaks the order is refused there too, so its tests catch it) -----------


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
async def store(request: pytest.FixtureRequest) -> Any:
    family = request.param
    services.require(family)
    ns = f"order_{uuid.uuid4().hex[:8]}"
    url = (
        services.sqlite_url("lock-order", ns=ns)
        if family == "sqlite"
        else services.server_url(family, ns=ns)
    )
    coordination = SQLCoordinationStore(url)
    try:
        yield coordination
    finally:
        await coordination.close()


def test_run_keys_lock_before_every_shared_key() -> None:
    assert lock_level("run:r1:final") < lock_level("runs:active")
    assert lock_level("run:r1:in:a#0") == lock_level("run:r2:act")
    assert lock_level("runs:idx:status:1:running") == lock_level("bp:abc")
    assert lock_level("run:no-colon") == lock_level("runs:active")  # not a run's key


async def test_a_run_after_a_shared_key_is_refused(store: SQLCoordinationStore) -> None:
    async def body(conn: Any) -> None:
        await store.db.lock(conn, ["runs:active"])
        await store.db.lock(conn, ["run:r1:final"])

    with pytest.raises(LockOrderError, match="run:r1:final"):
        await store.db.run(body)


async def test_two_statements_of_one_level_are_refused(store: SQLCoordinationStore) -> None:
    async def runs(conn: Any) -> None:
        await store.db.lock(conn, ["run:r1:final"])
        await store.db.lock(conn, ["run:r2:final"])

    async def shared(conn: Any) -> None:
        await store.db.lock(conn, ["run:r1:final", "runs:active"])
        await store.db.lock(conn, ["runs:idx:status:1:running"])

    for body in (runs, shared):
        with pytest.raises(LockOrderError):
            await store.db.run(body)


async def test_the_order_holds_per_transaction(store: SQLCoordinationStore) -> None:
    """Higher levels after lower ones, and again what is held already, are fine; the next
    transaction (on the same pooled connection) starts afresh."""

    async def body(conn: Any) -> None:
        await store.db.lock(conn, ["run:r1:final"])
        await store.db.lock(conn, ["run:r1:ended", "runs:active", "runs:idx:all:1:"])
        await store.db.lock(conn, ["runs:active"])

    for _ in range(3):
        await store.db.run(body)
