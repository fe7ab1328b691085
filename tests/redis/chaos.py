"""The chaos soak: workflows of mixed shapes on three ``flowcraft worker`` processes while a
monkey SIGKILLs and restarts workers and strikes the backend. Always against a PRIVATE server on
a free port, never a shared one:

* ``--backend redis`` (the default): ``redis-server`` restarted (AOF, fsync always), kill -9ed,
  paused (``DEBUG SLEEP``), its client connections killed;
* ``--backend postgresql`` (the SQL driver, its jobs-table queue): a cluster initdb'ed into a
  temporary directory, restarted (``pg_ctl -m fast``), crashed (``-m immediate``: recovery from
  the WAL at the next start), its client sessions terminated (``pg_terminate_backend``);
* ``--backend mariadb``: a private ``mariadbd`` SIGKILLed (InnoDB recovery at the next start)
  and restarted.

At the end every run must have completed with exact outputs; every node's recorded input must
equal what its predecessors committed (``problems``); and a node's code may have run more than
once (per attempt) only if the earlier execution was in flight at a fault
(``unexplained_reruns``, each with its timing and the nearest fault, for diagnosis). It
prints runs, faults by kind and re-runs.

    python tests/redis/chaos.py --runs 2000                          # make chaos
    python tests/redis/chaos.py --seconds 60                         # the version in make test
    python tests/redis/chaos.py --runs 500 --backend postgresql      # make chaos-sql
    python tests/redis/chaos.py --runs 500 --backend mariadb         # make chaos-sql
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "sql"), str(HERE.parents[1])]

import redis  # noqa: E402
from private_servers import PrivateMariaDB, PrivatePostgres  # noqa: E402
from proc_nodes import LEDGER_ENV  # noqa: E402
from procs import Procs, WorkerProc  # noqa: E402
from test_redis_restart import PrivateRedis, free_port  # noqa: E402

from flowcraft_core import Blueprint, Client  # noqa: E402

GRACE = 3.0  # seconds around a fault within which an execution counts as in flight at it
IN_FLIGHT = 40  # runs in flight at once


# -- shapes and what they must output ---------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    name: str
    blueprint: Blueprint
    preds: dict[str, tuple[str, ...]]  # node -> predecessors, in topological order
    adds: dict[str, float]
    dead: frozenset[str] = frozenset()  # nodes on a dead path (never run)
    waits: frozenset[str] = frozenset()  # wait nodes, resumed with {"value": RESUMED}


RESUMED = 7.0


def _shape(name: str, spec: list[tuple[str, float, tuple[str, ...], dict[str, Any]]]) -> Shape:
    nodes, edges = [], []
    preds: dict[str, tuple[str, ...]] = {}
    adds: dict[str, float] = {}
    dead, waits = set(), set()
    for node_id, add, ps, extra in spec:
        preds[node_id], adds[node_id] = ps, add
        if extra.get("wait"):
            nodes.append({"id": node_id, "uses": "wait"})
            waits.add(node_id)
        else:
            config: dict[str, Any] = {"maxRetries": 3} if extra.get("flaky") else {}
            if len(ps) > 1:
                config["joinStrategy"] = "all"
            params = {"add": add, "delay": extra.get("delay", 0.05), "flaky": extra.get("flaky")}
            nodes.append({"id": node_id, "uses": "chaos_step", "params": params, "config": config})
        if extra.get("dead"):
            dead.add(node_id)
        for p in ps:
            edge: dict[str, Any] = {"source": p, "target": node_id}
            if extra.get("dead"):
                edge["condition"] = "result.output.value > 1000000000"
            edges.append(edge)
    bp = Blueprint.from_dict({"id": f"chaos-{name}", "nodes": nodes, "edges": edges})
    return Shape(name, bp, preds, adds, frozenset(dead), frozenset(waits))


SHAPES = [
    _shape(
        "chain",
        [("a", 1, (), {}), ("b", 2, ("a",), {}), ("c", 3, ("b",), {}), ("d", 4, ("c",), {})],
    ),
    _shape(
        "fan",
        [("s", 1, (), {})]
        + [(f"f{i}", i, ("s",), {}) for i in range(6)]
        + [("j", 0, tuple(f"f{i}" for i in range(6)), {}), ("t", 1, ("j",), {})],
    ),
    _shape("retry", [("a", 1, (), {}), ("r", 5, ("a",), {"flaky": True}), ("z", 1, ("r",), {})]),
    _shape(
        "dead",
        [
            ("a", 1, (), {}),
            ("b", 10, ("a",), {"dead": True}),
            ("c", 20, ("a",), {}),
            ("d", 0, ("b", "c"), {}),
        ],
    ),
    _shape("wait", [("a", 1, (), {}), ("w", 0, ("a",), {"wait": True}), ("b", 2, ("w",), {})]),
]


def expected(shape: Shape, x: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(outputs, inputs) of every node that runs, for the run input ``{"x": x}``."""
    outputs: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    for node, ps in shape.preds.items():
        if node in shape.dead:
            continue
        live = [p for p in ps if p not in shape.dead]
        if not ps:
            given: Any = {"x": x}
        elif len(ps) == 1:
            given = outputs[live[0]]
        else:
            given = {p: outputs[p] for p in live}
        inputs[node] = given
        if node in shape.waits:
            outputs[node] = {"value": RESUMED}
            continue
        if isinstance(given, dict) and "x" in given:
            base = float(given["x"])
        elif isinstance(given, dict) and "value" in given:
            base = float(given["value"])
        else:
            base = sum(float(v["value"]) for v in given.values())
        outputs[node] = {"node": node, "value": base + shape.adds[node]}
    return outputs, inputs


# -- faults -------------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    start: float
    end: float = 0.0
    pid: int | None = None


class RedisTarget:
    """A private ``redis-server`` and what the monkey does to it."""

    faults = ("redis_restart", "redis_kill9", "redis_pause", "client_kill")

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        assert exe, "the chaos soak needs redis-server on PATH (apt-get install redis-server)"
        server_dir = workdir / "redis"
        server_dir.mkdir()
        self.server = PrivateRedis(
            exe, free_port(), server_dir, extra=("--enable-debug-command", "yes")
        )
        self.url = f"redis://127.0.0.1:{self.server.port}/0?prefix=chaos"

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.kill()

    def strike(self, kind: str, rng: random.Random) -> None:
        if kind == "redis_restart":
            self.server.stop()
            time.sleep(rng.uniform(0.2, 1.5))
            self.server.start()
        elif kind == "redis_kill9":
            self.server.kill()
            time.sleep(rng.uniform(0.2, 1.5))
            self.server.start()
        elif kind == "redis_pause":
            raw = redis.Redis(port=self.server.port, socket_timeout=10)
            try:
                raw.execute_command("DEBUG", "SLEEP", f"{rng.uniform(0.5, 2.0):.2f}")
            finally:
                raw.close()
        else:
            raw = redis.Redis(port=self.server.port, socket_timeout=5)
            try:
                raw.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            finally:
                raw.close()


class PostgresTarget:
    """A private PostgreSQL cluster and what the monkey does to it."""

    faults = ("postgres_restart", "postgres_crash", "session_kill")

    def __init__(self, workdir: Path) -> None:
        missing = PrivatePostgres.missing()
        assert missing is None, missing
        self.server = PrivatePostgres.create()
        self.url = f"{self.server.url}?prefix=chaos"

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.destroy()

    def strike(self, kind: str, rng: random.Random) -> None:
        if kind == "session_kill":
            self.server.terminate_sessions()
            return
        self.server.stop("fast" if kind == "postgres_restart" else "immediate")
        time.sleep(rng.uniform(0.2, 1.5))
        self.server.start()


class MariaDBTarget:
    """A private MariaDB server and what the monkey does to it."""

    faults = ("mariadb_sigkill", "mariadb_restart")

    def __init__(self, workdir: Path) -> None:
        missing = PrivateMariaDB.missing()
        assert missing is None, missing
        self.server = PrivateMariaDB.create()
        self.url = f"{self.server.url}?prefix=chaos"

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.destroy()

    def strike(self, kind: str, rng: random.Random) -> None:
        self.server.kill() if kind == "mariadb_sigkill" else self.server.stop()
        time.sleep(rng.uniform(0.2, 1.5))
        self.server.start()


Target = RedisTarget | PostgresTarget | MariaDBTarget
TARGETS: dict[str, type[Target]] = {
    "redis": RedisTarget,
    "postgresql": PostgresTarget,
    "mariadb": MariaDBTarget,
}


@dataclass
class Monkey:
    """Every few seconds, one fault; records each with its time window."""

    target: Target
    procs: Procs
    url: str
    workers: list[WorkerProc]
    rng: random.Random
    faults: list[Fault] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        kinds = ["worker_sigkill", *self.target.faults]
        while not self.stop.wait(self.rng.uniform(2.0, 4.0)):
            kind = self.rng.choice(kinds)
            fault = Fault(kind, time.time())
            try:
                if kind == "worker_sigkill":
                    self.worker_sigkill(fault)
                else:
                    self.target.strike(kind, self.rng)
            except Exception as exc:  # a fault that failed to happen is reported, not fatal
                print(f"monkey: {kind} failed: {exc!r}", file=sys.stderr)
                continue
            fault.end = time.time()
            self.faults.append(fault)

    def worker_sigkill(self, fault: Fault) -> None:
        victim = self.rng.choice([w for w in self.workers if w.popen.poll() is None])
        fault.pid = victim.pid
        os.kill(victim.pid, signal.SIGKILL)
        victim.popen.wait(10)
        self.workers.remove(victim)
        self.workers.append(
            self.procs.worker(self.url, concurrency=4, reconcile_every=5, stale_after=10)
        )


# -- the soak -----------------------------------------------------------------------------------


async def _again(what: str, call: Any, deadline: float) -> Any:
    """A client call, asked again while the backend is away (the client is not under test
    here)."""
    while True:
        try:
            return await call()
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} kept failing: {exc!r}") from None
            await asyncio.sleep(0.2)


async def soak(
    workdir: Path,
    runs: int | None,
    seconds: float | None,
    seed: int,
    backend: str = "redis",
) -> dict[str, Any]:
    rng = random.Random(seed)
    # The client's own warnings (a connection dropped, retrying) are the expected weather here.
    logging.getLogger("flowcraft_core").setLevel(logging.ERROR)
    target = TARGETS[backend](workdir)
    target.start()
    url = target.url
    ledger_path = workdir / "ledger.jsonl"
    os.environ[LEDGER_ENV] = str(ledger_path)  # inherited by the workers through child_env
    started: dict[str, tuple[Shape, float]] = {}
    results: dict[str, Any] = {}
    begin = time.monotonic()
    try:
        with Procs(workdir) as procs:
            workers = [
                procs.worker(url, concurrency=4, reconcile_every=5, stale_after=10)
                for _ in range(3)
            ]
            monkey = Monkey(target, procs, url, workers, rng)
            thread = threading.Thread(target=monkey.run, daemon=True)
            thread.start()
            client = Client(url)
            try:
                await _drive(client, rng, runs, seconds, begin, started, results)
            finally:
                monkey.stop.set()
                thread.join()
                await client.close()
            stderr = procs.stderr()
    finally:
        target.close()
        os.environ.pop(LEDGER_ENV, None)
    figures = _verify(
        started, results, monkey.faults, ledger_path, stderr, time.monotonic() - begin
    )
    return {"backend": backend, **figures}


async def _drive(
    client: Client,
    rng: random.Random,
    runs: int | None,
    seconds: float | None,
    begin: float,
    started: dict[str, tuple[Shape, float]],
    results: dict[str, Any],
) -> None:
    gate = asyncio.Semaphore(IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []

    def more() -> bool:
        if runs is not None and len(started) >= runs:
            return False
        return seconds is None or time.monotonic() - begin < seconds

    async def follow(run_id: str, shape: Shape) -> None:
        try:
            deadline = time.monotonic() + 300
            while True:
                result = await _again(
                    f"result of {run_id}",
                    lambda: client.result(run_id, timeout=max(1.0, deadline - time.monotonic())),
                    deadline,
                )
                if result.status != "awaiting":
                    results[run_id] = result
                    return
                for node in sorted(shape.waits - set(result.outputs)):
                    with contextlib.suppress(Exception):  # resumed already by a lost reply
                        await _again(
                            f"resume of {run_id}",
                            lambda n=node: client.resume(
                                run_id, None, {"value": RESUMED}, node_id=n
                            ),
                            deadline,
                        )
        finally:
            gate.release()

    i = 0
    while more():
        await gate.acquire()
        shape = SHAPES[i % len(SHAPES)]
        x = float(i)
        # Not asked again: Client.start itself must survive the faults without creating two
        # runs (it retries with the same run id).
        run_id = await client.start(shape.blueprint, {"x": x})
        started[run_id] = (shape, x)
        tasks.append(asyncio.create_task(follow(run_id, shape)))
        i += 1
    await asyncio.gather(*tasks)


def _verify(
    started: dict[str, tuple[Shape, float]],
    results: dict[str, Any],
    faults: list[Fault],
    ledger_path: Path,
    stderr: str,
    elapsed: float,
) -> dict[str, Any]:
    problems: list[str] = []
    entries = (
        [json.loads(line) for line in ledger_path.read_text().splitlines()]
        if ledger_path.exists()
        else []
    )
    for run_id, (shape, x) in started.items():
        result = results.get(run_id)
        want, _ = expected(shape, x)
        if result is None or result.status != "completed":
            problems.append(f"run {run_id} ({shape.name}) ended {getattr(result, 'status', None)}")
        elif result.outputs != want:
            problems.append(f"run {run_id} ({shape.name}): outputs {result.outputs} != {want}")
    executions: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    ends: dict[tuple[str, str, int, int], float] = {}
    for e in entries:
        key = (e["run"], e["node"], e["attempt"])
        if e["phase"] == "start":
            executions.setdefault(key, []).append(e)
            shape, x = started[e["run"]]
            _, inputs = expected(shape, x)
            if e["input"] != inputs[e["node"]]:
                problems.append(f"{key}: input {e['input']} != committed {inputs[e['node']]}")
        else:
            ends[(*key, e["pid"])] = e["t"]
    reruns = 0
    unexplained: list[str] = []
    for key, starts in executions.items():
        for earlier in starts[:-1]:
            reruns += 1
            finished = ends.get((*key, earlier["pid"]), float("inf"))
            at_fault = any(
                earlier["t"] <= f.end + GRACE
                and finished >= f.start - GRACE
                and (
                    f.kind != "worker_sigkill"
                    or f.pid == earlier["pid"]
                    or finished == float("inf")
                )
                for f in faults
            )
            if not at_fault:
                later = starts[starts.index(earlier) + 1]
                near = min(faults, key=lambda f: abs(f.start - earlier["t"]), default=None)
                unexplained.append(
                    f"{key} ran at {earlier['t']:.3f} on pid {earlier['pid']} "
                    f"(ended {finished - earlier['t']:+.3f}s later) and again "
                    f"{later['t'] - earlier['t']:.3f}s after on pid {later['pid']}; nearest "
                    + (
                        f"fault {near.kind} from {near.start - earlier['t']:+.3f}s to "
                        f"{near.end - earlier['t']:+.3f}s"
                        if near
                        else "fault: none"
                    )
                )
    figures = {
        "runs": len(started),
        "completed": sum(1 for r in results.values() if r.status == "completed"),
        "faults": dict(Counter(f.kind for f in faults)),
        "executions": sum(len(s) for s in executions.values()),
        "re-runs": reruns,
        "seconds": round(elapsed, 1),
        "problems": problems[:20],
        "problem_count": len(problems),
        "unexplained_reruns": unexplained[:20],
        "unexplained_count": len(unexplained),
    }
    if problems or unexplained:
        figures["worker_stderr_tail"] = stderr[-3000:]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", choices=sorted(TARGETS), default="redis")
    args = parser.parse_args()
    if args.runs is None and args.seconds is None:
        args.runs = 2000
    with tempfile.TemporaryDirectory(prefix="flowcraft-chaos-") as tmp:
        figures = asyncio.run(soak(Path(tmp), args.runs, args.seconds, args.seed, args.backend))
    print(json.dumps(figures, indent=2))
    sys.exit(0 if figures["problem_count"] == figures["unexplained_count"] == 0 else 1)


if __name__ == "__main__":
    main()
