"""``flowcraft worker --registry metrics_nodes:registry``: nodes whose outcomes the metrics
tests count — ``ok``, ``flaky`` (fails its first attempt), ``broken`` (always fails) — and
``gate`` (holds its worker until two worker processes are inside one: see ``otel_nodes``)."""

from __future__ import annotations

import asyncio
from typing import Any

from otel_nodes import gate

from flowcraft_core import NodeContext


async def ok(ctx: NodeContext) -> Any:
    await asyncio.sleep(0.01)
    return ctx.node_id


async def flaky(ctx: NodeContext) -> Any:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return ctx.node_id


async def broken(ctx: NodeContext) -> Any:
    raise ValueError("always fails")


registry = {"ok": ok, "flaky": flaky, "broken": broken, "gate": gate}
