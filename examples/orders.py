"""Order fulfilment: the example workflow's node implementations.

Run it with ``make run``, or::

    flowcraft run examples/order_fulfilment.json --registry examples.orders:registry \\
        --input '{"order_id": "A-1", "items": [{"sku": "book", "qty": 2, "price": 12.5}]}'

Orders over 500 wait for a manager (``flowcraft resume RUN_ID --action approve``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowcraft_core import NodeContext, Registry, Result

registry = Registry()

STOCK = {"book": 100, "lamp": 5, "desk": 2}


@registry.node("validate_order")
async def validate_order(ctx: NodeContext) -> Result:
    order = ctx.input or {}
    items = order.get("items") or []
    problems = [f"unknown sku {i.get('sku')!r}" for i in items if i.get("sku") not in STOCK]
    if not items:
        problems.append("the order has no items")
    total = round(sum(i["qty"] * i["price"] for i in items if i.get("sku") in STOCK), 2)
    summary = {"order_id": order.get("order_id"), "items": items, "total": total}
    if problems:
        return Result(output={**summary, "problems": problems}, action="invalid")
    return Result(output=summary, action="valid")


@registry.node("reject_order")
async def reject_order(ctx: NodeContext) -> dict[str, Any]:
    return {"order_id": ctx.input["order_id"], "rejected": ctx.input["problems"]}


@registry.node("reserve_inventory")
async def reserve_inventory(ctx: NodeContext) -> dict[str, Any]:
    await asyncio.sleep(0.01)  # a call to the warehouse service
    return {"reserved": {i["sku"]: i["qty"] for i in ctx.input["items"]}}


@registry.node("charge_payment")
async def charge_payment(ctx: NodeContext) -> dict[str, Any]:
    # The payment gateway times out on the first attempt; config.maxRetries absorbs it.
    if ctx.attempt == 1:
        raise ConnectionError("payment gateway timed out")
    return {"charged": ctx.input["total"], "attempt": ctx.attempt}


@registry.node("quote_shipping")
def quote_shipping(ctx: NodeContext) -> dict[str, Any]:
    # A synchronous function: it runs in a thread, so it never blocks the event loop.
    weight = sum(i["qty"] for i in ctx.input["items"])
    return {"carrier": ctx.params.get("carrier", "post"), "cost": 4.5 + 0.5 * weight}


@registry.node("pack_order")
async def pack_order(ctx: NodeContext) -> dict[str, Any]:
    parts = ctx.input  # an `all` join: {predecessor id: its output}
    ctx.context.set("packed", True)
    return {
        "reserved": parts["reserve"]["reserved"],
        "charged": parts["charge"]["charged"],
        "shipping": parts["shipping"]["cost"],
    }


@registry.node("auto_approve")
async def auto_approve(ctx: NodeContext) -> dict[str, Any]:
    return {"approved_by": "policy", "total": ctx.input["charged"]}


@registry.node("ship")
async def ship(ctx: NodeContext) -> dict[str, Any]:
    approval = ctx.input  # an `any` join: the first approval that arrived
    return {"status": "shipped", "approved_by": approval.get("approved_by", "manager")}
