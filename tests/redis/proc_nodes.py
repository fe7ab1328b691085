"""Node implementations for the multi-process Redis tests, imported by ``flowcraft worker``
subprocesses as ``--registry proc_nodes:registry`` (``tests/redis`` is on their PYTHONPATH).

Every node appends ``PHASE RUN NODE ATTEMPT PID TIME`` lines (phase ``start``, ``end`` or
``fail``) to the file named by ``$FLOWCRAFT_TEST_EXEC_LOG``, one ``os.write`` of a short line on
an ``O_APPEND`` descriptor each, so lines of concurrent processes never interleave. The tests
count them to prove that no node's code ran more often than it may.

``registry`` holds the example's order nodes (wrapped to record their executions) and the
``step`` family below; ``partial_registry`` lacks ``step_b`` (a worker without an
implementation).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from flowcraft_core import NodeContext, Registry, Result

try:
    from examples import orders
except ModuleNotFoundError:  # in the pytest process: the repository root is not on sys.path
    sys.path.append(str(Path(__file__).resolve().parents[2]))
    from examples import orders

LOG_ENV = "FLOWCRAFT_TEST_EXEC_LOG"


def record(phase: str, ctx: NodeContext) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = f"{phase} {ctx.run_id} {ctx.node_id} {ctx.attempt} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def counted_instances(call: Callable[[NodeContext], Awaitable[Any]]) -> Callable[..., Any]:
    """As :func:`counted`, the node field naming the instance too (``node#instance``)."""

    async def run(ctx: NodeContext) -> Any:
        named = NodeContext(**{**vars(ctx), "node_id": f"{ctx.node_id}#{ctx.instance}"})
        record("start", named)
        value = await call(ctx)
        record("end", named)
        return value

    return run


async def item(ctx: NodeContext) -> Any:
    """A batch item: sleeps ``params``-free 5 ms, outputs ten times its input."""
    await asyncio.sleep(0.005)
    return ctx.input * 10


async def tick(ctx: NodeContext) -> Any:
    """A loop body node: adds 1 to the context key ``n`` after 5 ms."""
    await asyncio.sleep(0.005)
    n = (await ctx.context.get("n") or 0) + 1
    ctx.context.set("n", n)
    return n


def counted(call: Callable[[NodeContext], Awaitable[Any]]) -> Callable[..., Any]:
    async def run(ctx: NodeContext) -> Any:
        record("start", ctx)
        try:
            value = await call(ctx)
        except Exception:
            record("fail", ctx)
            raise
        record("end", ctx)
        return value

    return run


def incoming_value(value: Any) -> float:
    """The number a ``step`` node builds on: the run input's ``x``, a predecessor's
    ``value``, or the sum of the values of an ``all`` join's predecessors."""
    if not isinstance(value, dict):
        return 0
    if "x" in value:
        return float(value["x"])
    if "value" in value:
        return float(value["value"])
    return sum(float(part["value"]) for part in value.values())


async def step(ctx: NodeContext) -> dict[str, Any]:
    """Sleeps ``params.delay`` seconds, then outputs ``incoming + params.add``."""
    await asyncio.sleep(float(ctx.params.get("delay", 0)))
    return {"node": ctx.node_id, "value": incoming_value(ctx.input) + ctx.params.get("add", 0)}


async def gated(ctx: NodeContext) -> dict[str, Any]:
    """A ``step`` held until the file ``params.gate`` exists: the test opens the gate when it
    has done what must happen while the node runs (at most a minute, then it fails)."""
    gate = Path(ctx.params["gate"])
    deadline = time.monotonic() + 60
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} was never opened")
        await asyncio.sleep(0.01)
    return await step(ctx)


async def flaky(ctx: NodeContext) -> dict[str, Any]:
    """A ``step`` whose first attempt fails."""
    if ctx.attempt == 1:
        raise ConnectionError("flaky: first attempt fails")
    return await step(ctx)


async def fixable(ctx: NodeContext) -> dict[str, Any]:
    """A ``step`` that fails until the file ``params.fixed`` exists (the operator's fix)."""
    if not Path(ctx.params["fixed"]).exists():
        raise RuntimeError(f"node {ctx.node_id} is broken until {ctx.params['fixed']} exists")
    return await step(ctx)


async def unserialisable(ctx: NodeContext) -> Any:
    kind = ctx.params.get("kind")
    if kind == "set":
        return {"tags": {"a", "b"}}
    if kind == "nan":
        return {"ratio": float("nan")}
    if kind == "context":
        ctx.context.set("handle", object())
        return {"ok": True}
    return Result(output={"ok": True})


class NodeBaseException(BaseException):
    """A BaseException of node code's own, none of Python's."""


_RAISED: dict[str, type[BaseException]] = {
    "KeyboardInterrupt": KeyboardInterrupt,
    "SystemExit": SystemExit,
    "GeneratorExit": GeneratorExit,
    "CancelledError": asyncio.CancelledError,
    "custom": NodeBaseException,
}


async def raiser(ctx: NodeContext) -> Any:
    """Raises the BaseException named by ``params.kind`` (a poison message, if it escaped)."""
    raise _RAISED[ctx.params["kind"]](f"raised by node {ctx.node_id}")


def sync_raiser(ctx: NodeContext) -> Any:
    raise _RAISED[ctx.params["kind"]](f"raised by node {ctx.node_id}")


async def forever(ctx: NodeContext) -> Any:
    """Never returns."""
    await asyncio.Event().wait()


def sync_forever(ctx: NodeContext) -> Any:
    """Never returns, in a thread."""
    while True:
        time.sleep(0.05)


LEDGER_ENV = "CHAOS_LEDGER_PATH"  # not FLOWCRAFT_*: child_env keeps those out


def ledger(phase: str, ctx: NodeContext) -> None:
    """One JSON line per execution event, with the node's input: the chaos soak's ledger."""
    path = os.environ.get(LEDGER_ENV)
    if not path:
        return
    entry = {
        "phase": phase,
        "run": ctx.run_id,
        "node": ctx.node_id,
        "attempt": ctx.attempt,
        "pid": os.getpid(),
        "t": time.time(),
        "input": ctx.input if phase == "start" else None,
    }
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


async def chaos_step(ctx: NodeContext) -> dict[str, Any]:
    """A ``step`` that records its input in the ledger; with ``params.flaky`` its first
    attempt fails."""
    ledger("start", ctx)
    await asyncio.sleep(float(ctx.params.get("delay", 0)))
    if ctx.params.get("flaky") and ctx.attempt == 1:
        ledger("fail", ctx)
        raise ConnectionError("flaky: first attempt fails")
    value = {"node": ctx.node_id, "value": incoming_value(ctx.input) + ctx.params.get("add", 0)}
    ledger("end", ctx)
    return value


def _build(include_b: bool) -> Registry:
    reg = Registry()
    for key, impl in orders.registry.items():
        reg.register(key, counted(impl.call))
    reg.register("step", counted(step))
    reg.register("item", counted_instances(item))
    reg.register("tick", counted_instances(tick))
    reg.register("echo_instance", counted_instances(step))
    reg.register("flaky", counted(flaky))
    reg.register("gated", counted(gated))
    reg.register("fixable", counted(fixable))
    if include_b:
        reg.register("step_b", counted(step))
    reg.register("unserialisable", counted(unserialisable))
    reg.register("raiser", counted(raiser))
    reg.register("chaos_step", chaos_step)
    reg.register("forever", counted(forever))
    for key, sync_impl in (("sync_raiser", sync_raiser), ("sync_forever", sync_forever)):
        reg.register(key, counted(Registry({key: sync_impl})[key].call))
    return reg


registry = _build(include_b=True)
partial_registry = _build(include_b=False)
