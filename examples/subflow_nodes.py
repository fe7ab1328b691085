"""Node code of the subflow example (examples/subflows: an invoice whose VAT is a subflow)."""

from __future__ import annotations

from typing import Any

from flowcraft_core import NodeContext


def total(ctx: NodeContext) -> Any:
    return sum(ctx.input)


def vat(ctx: NodeContext) -> Any:
    return round(ctx.input * 0.2, 2)


def add(ctx: NodeContext) -> Any:
    return ctx.input["total"] + ctx.input["vat"]


registry = {"sum": total, "vat": vat, "add": add}
