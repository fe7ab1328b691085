"""A lifecycle plugin that raises, and the nodes and blueprints its tests run (worker
subprocesses load them through :mod:`guest_worker`)."""

from __future__ import annotations

from typing import Any

from flowcraft_core import Blueprint, NodeContext
from flowcraft_core.hookspecs import LIFECYCLE, hookimpl
from flowcraft_core.plugins import default_manager
from flowcraft_core.protocols import Job


class Boom:
    """Raises in the hooks it is told to, and counts every call it gets."""

    def __init__(self, *raising: str) -> None:
        self.raising = set(raising)
        self.calls: dict[str, int] = {}

    def _called(self, hook: str) -> None:
        self.calls[hook] = self.calls.get(hook, 0) + 1
        if hook in self.raising:
            raise RuntimeError(f"boom in {hook}")

    @hookimpl
    def flowcraft_run_started(self, run_id: str, flow_id: str, input: Any) -> None:
        self._called("flowcraft_run_started")

    @hookimpl
    def flowcraft_run_finished(self, run_id: str, status: str, error: Any) -> None:
        self._called("flowcraft_run_finished")

    @hookimpl
    def flowcraft_node_started(self, job: Job) -> None:
        self._called("flowcraft_node_started")

    @hookimpl
    def flowcraft_node_finished(self, job: Job, output: Any, action: str | None) -> None:
        self._called("flowcraft_node_finished")

    @hookimpl
    def flowcraft_node_failed(self, job: Job, error: dict[str, Any]) -> None:
        self._called("flowcraft_node_failed")

    @hookimpl
    def flowcraft_node_retried(self, job: Job, error: dict[str, Any], delay: float) -> None:
        self._called("flowcraft_node_retried")

    @hookimpl
    def flowcraft_node_skipped(self, job: Job) -> None:
        self._called("flowcraft_node_skipped")

    @hookimpl
    def flowcraft_expression_failed(self, job: Job, where: str, error: str) -> None:
        self._called("flowcraft_expression_failed")

    @hookimpl
    def flowcraft_job_enqueued(self, job: Job, delay: float) -> None:
        self._called("flowcraft_job_enqueued")


async def add(ctx: NodeContext) -> int:
    return int(ctx.input) + 1


async def flaky(ctx: NodeContext) -> int:
    if ctx.attempt == 1:
        raise ValueError("first attempt fails")
    return int(ctx.input) * 10


async def broken(ctx: NodeContext) -> None:
    raise KeyError("always")


registry = {"add": add, "flaky": flaky, "broken": broken}

# a -> f (fails once, retried) -> b: every hook of a completed run, node_retried included;
# b -> d's condition cannot be evaluated (a number against a string): expression_failed, and d
# is skipped (node_skipped).
COMPLETES = Blueprint.from_dict(
    {
        "id": "guests-completes",
        "nodes": [
            {"id": "a", "uses": "add"},
            {"id": "f", "uses": "flaky", "config": {"maxRetries": 2, "retryDelay": 1}},
            {"id": "b", "uses": "add"},
            {"id": "d", "uses": "add"},
        ],
        "edges": [
            {"source": "a", "target": "f"},
            {"source": "f", "target": "b"},
            {"source": "b", "target": "d", "condition": "result > 'x'"},
        ],
    }
)
COMPLETES_OUTPUTS = {"a": 2, "f": 20, "b": 21}  # from input 1
# a -> x (always fails): node_failed and a failed run_finished.
FAILS = Blueprint.from_dict(
    {
        "id": "guests-fails",
        "nodes": [{"id": "a", "uses": "add"}, {"id": "x", "uses": "broken"}],
        "edges": [{"source": "a", "target": "x"}],
    }
)


def register_everywhere() -> None:
    """A plugin named ``boom`` that raises in every lifecycle hook, on this process's manager."""
    pm = default_manager()
    if pm.get_plugin("boom") is None:
        pm.register(Boom(*LIFECYCLE), name="boom")
