"""Helpers for tests that run the real ``flowcraft`` console script in subprocesses against a
real Redis: worker processes (always killed on exit), CLI calls, the execution log written by
:mod:`proc_nodes`, and blueprints of ``step`` nodes with their expected outputs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from proc_nodes import LOG_ENV

from flowcraft_core import Blueprint, Client, RunResult
from flowcraft_redis import parse_url

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE = REPO / "examples" / "order_fulfilment.json"
REGISTRY = "proc_nodes:registry"


def flowcraft_script() -> str:
    beside = Path(sys.executable).parent / "flowcraft"
    assert beside.exists(), f"the flowcraft console script is not installed beside {sys.executable}"
    return str(beside)


FLOWCRAFT = flowcraft_script()


def child_env(log: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a subprocess: no FLOWCRAFT_* of ours leaks in; the repository root
    (``examples``) and this directory (``proc_nodes``) are importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCRAFT_")}
    paths = [str(REPO), str(HERE), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    if log is not None:
        env[LOG_ENV] = str(log)
    env.update(extra)
    return env


def flowcraft(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``flowcraft ARGS`` to completion (killed if it outlives ``timeout``)."""
    return subprocess.run(
        [FLOWCRAFT, *args],
        cwd=REPO,
        env=env if env is not None else child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class WorkerProc:
    popen: subprocess.Popen[bytes]
    err: Path
    name: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the worker prints ``ready`` (it consumes the queue from then on)."""
        deadline = time.monotonic() + timeout
        while "ready" not in self.stderr():
            code = self.popen.poll()
            if code is not None:
                raise AssertionError(f"worker {self.name} exited {code}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker {self.name} not ready in {timeout} s:\n{self.stderr()}"
                )
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)


@dataclass
class Procs:
    """Starts ``flowcraft worker`` processes; on exit every one still alive is SIGKILLed."""

    tmp: Path
    log: Path | None = None
    procs: list[WorkerProc] = field(default_factory=list)

    def worker(
        self,
        url: str,
        registry: str = REGISTRY,
        *,
        concurrency: int = 4,
        reconcile_every: float = 0.0,
        stale_after: float = 300.0,
        ready: bool = True,
        env: dict[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> WorkerProc:
        name = f"worker-{len(self.procs)}"
        err = self.tmp / f"{name}.stderr"
        with err.open("wb") as sink:
            popen = subprocess.Popen(
                [
                    FLOWCRAFT,
                    "worker",
                    "--registry",
                    registry,
                    "--backend",
                    url,
                    "--processes",
                    "1",
                    "--concurrency",
                    str(concurrency),
                    "--reconcile-every",
                    str(reconcile_every),
                    "--stale-after",
                    str(stale_after),
                    *extra,
                ],
                cwd=REPO,
                env=child_env(self.log, **(env or {})),
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        proc = WorkerProc(popen, err, name)
        self.procs.append(proc)
        if ready:
            proc.wait_ready()
        return proc

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill_all()

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(10)

    def stderr(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}):\n{p.stderr()}" for p in self.procs)


# -- the execution log --------------------------------------------------------------------------


@dataclass(frozen=True)
class Exec:
    phase: str
    run: str
    node: str
    attempt: int
    pid: int
    at: float


def read_log(path: Path) -> list[Exec]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        phase, run, node, attempt, pid, at = line.split()
        entries.append(Exec(phase, run, node, int(attempt), int(pid), float(at)))
    return entries


def starts(entries: Iterable[Exec]) -> Counter[tuple[str, str, int]]:
    """Executions started per (run, node, attempt)."""
    return Counter((e.run, e.node, e.attempt) for e in entries if e.phase == "start")


def starts_per_node(entries: Iterable[Exec]) -> Counter[tuple[str, str]]:
    return Counter((e.run, e.node) for e in entries if e.phase == "start")


# -- Redis, behind the driver's back ------------------------------------------------------------


def committed(url: str, run_ids: Sequence[str]) -> set[tuple[str, str]]:
    """(run, node) pairs whose output is committed in Redis now."""
    settings = parse_url(url)
    client = redis.Redis.from_url(settings.url, decode_responses=True)
    try:
        pipe = client.pipeline(transaction=False)
        for run_id in run_ids:
            pipe.hkeys(f"{settings.prefix}:ctx:{run_id}")
        found = pipe.execute()
    finally:
        client.close()
    prefix = "_outputs."
    return {
        (run_id, key[len(prefix) :])
        for run_id, keys in zip(run_ids, found, strict=True)
        for key in keys
        if key.startswith(prefix)
    }


async def results(
    client: Client, run_ids: Sequence[str], timeout: float, parallel: int = 40
) -> list[RunResult]:
    """Every run's result, ``parallel`` waits at a time (each holds Redis connections)."""
    gate = asyncio.Semaphore(parallel)

    async def one(run_id: str) -> RunResult:
        async with gate:
            return await client.result(run_id, timeout=timeout)

    return list(await asyncio.gather(*(one(r) for r in run_ids)))


# -- blueprints of step nodes ---------------------------------------------------------------------


@dataclass(frozen=True)
class StepNode:
    id: str
    add: float
    preds: tuple[str, ...] = ()
    uses: str = "step"
    config: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def step_blueprint(flow_id: str, nodes: Sequence[StepNode], delay: float = 0.0) -> Blueprint:
    return Blueprint.from_dict(
        {
            "id": flow_id,
            "nodes": [
                {
                    "id": n.id,
                    "uses": n.uses,
                    "params": {"add": n.add, "delay": delay, **n.params},
                    "config": {**({"joinStrategy": "all"} if len(n.preds) > 1 else {}), **n.config},
                }
                for n in nodes
            ],
            "edges": [{"source": p, "target": n.id} for n in nodes for p in n.preds],
        }
    )


def step_outputs(nodes: Sequence[StepNode], x: float) -> dict[str, Any]:
    """What every node of a step blueprint outputs for the run input ``{"x": x}``."""
    values: dict[str, float] = {}
    for n in nodes:  # listed in topological order
        incoming = sum(values[p] for p in n.preds) if n.preds else x
        values[n.id] = incoming + n.add
    return {node: {"node": node, "value": value} for node, value in values.items()}


#: a chain, a fan-out of three, an ``all`` join, and one more node.
SLOW_FLOW = (
    StepNode("a", 1),
    StepNode("b", 1, ("a",)),
    StepNode("c1", 10, ("b",)),
    StepNode("c2", 20, ("b",)),
    StepNode("c3", 30, ("b",)),
    StepNode("d", 0, ("c1", "c2", "c3")),
    StepNode("e", 1, ("d",)),
)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
