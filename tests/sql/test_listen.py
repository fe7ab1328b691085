"""PostgreSQL's LISTEN connection: a waiter goes on only once its process listens.

Two waiters starting together used to differ: the first opened the LISTEN connection, the
second saw it claimed and went on at once, looked for its signal, and then waited while LISTEN
was not yet in effect, so a NOTIFY sent in that window was lost and only the safety poll (one
second later) woke it."""

from __future__ import annotations

import asyncio

import services

from flowcraft_sql.database import Database
from flowcraft_sql.url import parse_url


async def test_concurrent_callers_return_only_once_listening() -> None:
    services.require("postgresql")
    db = Database(parse_url(services.server_url("postgresql")))
    loop = asyncio.get_running_loop()
    listening: list[bool] = []

    async def caller() -> None:
        await db.listen()
        listening.append(db._listeners.get(loop) is not None)

    try:
        await asyncio.gather(*(caller() for _ in range(5)))
        assert listening == [True] * 5, f"returned before LISTEN was in effect: {listening}"
    finally:
        await db.dispose()
