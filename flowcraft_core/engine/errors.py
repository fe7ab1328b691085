"""How a node failure is recorded in a run's final status."""

from __future__ import annotations

import traceback
from typing import Any


def describe(exc: BaseException, *, node_id: str, attempt: int | None = None) -> dict[str, Any]:
    """The structured error of a failed run: node, error type, message and traceback."""
    return {
        "node": node_id,
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(exc)),
        "attempt": attempt,
    }


def problem(node_id: str, type_name: str, message: str) -> dict[str, Any]:
    """A structured error that has no exception behind it."""
    return {"node": node_id, "type": type_name, "message": message, "traceback": None}
