"""``python -m benchmarks.peers`` (``make bench-peers``): ours against the systems a user would
pick instead, interleaved in one run, printing ours ÷ theirs in nodes/s.

- memory: our memory driver vs Flowcraft TS 2.10.1's in-process ``FlowRuntime``;
- Redis: our Redis driver vs Flowcraft TS + ``@flowcraft/bullmq-adapter``, Celery (chains and
  chords) and bare Dramatiq (a no-op actor on our broker settings), 2 worker processes each, on
  one private ``redis-server`` (each system on its own database, flushed between configs);
- SQL: our ``sqlite:///`` and ``postgresql://`` backends vs DBOS Transact on the same SQLite
  (a file of its own) and PostgreSQL (a schema of its own), two processes each;
- latency: one 5-node chain at a time on an idle system, ours (Redis) vs Flowcraft TS + BullMQ.

The peers live in ``.bench/`` (``make bench-peers`` installs them): ``.bench/ts`` (npm, pinned by
``benchmarks/peers/ts/package-lock.json``) and ``.bench/venv`` (Celery, DBOS). The configs of a
shape run back to back (ours, then each peer), so every ratio compares runs taken minutes apart
at most on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from benchmarks.memory import bench as memory_bench
from benchmarks.redis import ROOT, bare_dramatiq, bench_url, processes
from benchmarks.shapes import SHAPES
from flowcraft_core.client import Client
from flowcraft_core.drivers import open_backends

BENCH = ROOT / ".bench"
TS = BENCH / "ts"
VENV_PY = BENCH / "venv" / "bin" / "python"
POSTGRES = os.environ.get(
    "FLOWCRAFT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
#: (shape, size, runs of ours, runs of Flowcraft TS on Redis). Flowcraft TS reads the whole
#: run context for every node, so a wide fan-out costs it quadratic time: fewer runs keep the
#: benchmark within minutes while still giving its 2 x 5 job slots 1,500 ready jobs.
SHAPES_RUNS = [
    ("fanout", 20, 200, 200),
    ("chain", 20, 200, 200),
    ("fanout", 500, 10, 3),
    ("subflow-chain", 20, 50, 50),
]
SQL_SHAPES = [("fanout", 20, 50), ("chain", 20, 50)]
WORKERS, THREADS = 2, 8


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own, so nobody else's tests or benchmarks share it."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("bench-peers needs redis-server on PATH (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="flowcraft-peers-redis-") as tmp:
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp]
        proc = subprocess.Popen([*args, "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            client = redis.Redis(port=port)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            client.close()
            yield f"redis://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(30)


def flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def node_json(*args: str, timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run(
        ["node", "bench.mjs", *args], cwd=TS, capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"node bench.mjs {' '.join(args)} failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@contextmanager
def spawned(
    cmds: list[list[str]], cwd: Path, env: dict[str, str], ready: str | None, stdin: bool = False
) -> Iterator[list[subprocess.Popen[str]]]:
    pipe = subprocess.PIPE if stdin else subprocess.DEVNULL
    procs = [
        subprocess.Popen(c, cwd=cwd, env=env, stdin=pipe, stdout=subprocess.PIPE, text=True)
        for c in cmds
    ]
    try:
        if ready is not None:
            for proc in procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                if line.strip() != ready:
                    raise RuntimeError(f"{cmds[0]} did not start: {line!r}")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait(60)


def ts_redis(url: str, shape: str, size: int, runs: int) -> dict[str, Any]:
    flush(url)
    queue = f"q{uuid.uuid4().hex[:6]}"
    cmd = ["node", "bench.mjs", "worker", url, queue]
    with spawned([cmd] * WORKERS, TS, dict(os.environ), "ready"):
        return node_json("client", url, queue, shape, str(size), str(runs))


def ts_latency(url: str, count: int) -> dict[str, Any]:
    flush(url)
    queue = f"q{uuid.uuid4().hex[:6]}"
    cmd = ["node", "bench.mjs", "worker", url, queue]
    with spawned([cmd] * WORKERS, TS, dict(os.environ), "ready"):
        return node_json("latency", url, queue, "5", str(count))


def celery(url: str, shape: str, size: int, runs: int) -> dict[str, Any]:
    flush(url)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_CELERY_BROKER": url,
        "BENCH_CELERY_BACKEND": url,
    }
    worker = [str(VENV_PY), "-m", "celery", "-A", "benchmarks.peers.celery_app", "worker"]
    worker += ["--pool", "threads", "-c", str(THREADS), "-l", "warning"]
    worker += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    cmds = [[*worker, "-n", f"w{i}@%h"] for i in range(WORKERS)]
    with spawned(cmds, ROOT, env, None):
        out = subprocess.run(
            [
                str(VENV_PY),
                "-m",
                "benchmarks.peers.celery_app",
                "client",
                shape,
                str(size),
                str(runs),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    if out.returncode != 0:
        raise RuntimeError(f"celery client failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def dbos(system_url: str, schema: str, shape: str, size: int, runs: int) -> dict[str, Any]:
    """Two DBOS processes, each running half the workflows, released together."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    per = runs // WORKERS
    cmd = [str(VENV_PY), "-m", "benchmarks.peers.dbos_bench", system_url, schema, shape]
    cmd += [str(size), str(per)]
    # The first launch creates DBOS's schema; the others start after it, not racing it.
    with (
        spawned([cmd], ROOT, env, "ready", stdin=True) as first,
        spawned([cmd] * (WORKERS - 1), ROOT, env, "ready", stdin=True) as rest,
    ):
        procs = first + rest
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outs = []
        for proc in procs:
            assert proc.stdout is not None
            outs.append(json.loads(proc.stdout.readline()))
    started = min(o["started"] for o in outs)
    ended = max(o["ended"] for o in outs)
    nodes = (size if shape == "chain" else size + 2) * per * WORKERS
    lat = sorted(x for o in outs for x in o["latencies"])
    return {
        "nodes": nodes,
        "seconds": round(ended - started, 4),
        "nodes_per_s": round(nodes / (ended - started), 1),
        "p50_ms": round(lat[len(lat) // 2], 2),
    }


async def our_latency(url: str, count: int) -> dict[str, Any]:
    blueprint = SHAPES["chain"](5)
    backends = open_backends(url)
    client = Client(backends)
    try:
        for _ in range(5):  # warm-up
            await client.result(await client.start(blueprint, None), 60)
        latencies = []
        for _ in range(count):
            t0 = time.perf_counter()
            result = await client.result(await client.start(blueprint, None), 60)
            if result.status != "completed":
                raise RuntimeError(f"latency run ended {result.status}")
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        await backends.close()
    lat = sorted(latencies)
    return {
        "p50_ms": round(lat[len(lat) // 2], 2),
        "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
    }


def ours_redis_latency(url: str, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="flowcraft-bench-") as tmp:
        files = [os.path.join(tmp, f"w{i}.json") for i in range(WORKERS)]
        with processes("benchmarks.redis_worker", [url, str(THREADS)], files):
            return asyncio.run(our_latency(url, count))


async def _drop_sql(url: str, prefix: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from flowcraft_sql.schema import tables
    from flowcraft_sql.url import parse_url

    engine = create_async_engine(parse_url(url).url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: tables(prefix).metadata.drop_all(c, checkfirst=True))
    finally:
        await engine.dispose()


def _drop_pg_schema(schema: str) -> None:
    subprocess.run(
        ["psql", POSTGRES, "-q", "-c", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
        capture_output=True,
        check=False,
    )


def ratio(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    return f"{ours['nodes_per_s'] / theirs['nodes_per_s']:.2f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("--skip", default="", help="comma-separated: memory,redis,sql,latency")
    parser.add_argument("--latency-runs", type=int, default=200)
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    # Memory alone (--skip redis,sql,latency) needs only Flowcraft TS, not the peers' venv.
    needs_venv = bool({"redis", "sql"} - skip)
    if not (TS / "node_modules").is_dir() or (needs_venv and not VENV_PY.exists()):
        raise SystemExit("the peers are not installed: run `make bench-peers`")
    shutil.copy(Path(__file__).parent / "ts" / "bench.mjs", TS / "bench.mjs")
    rows: list[tuple[str, str, dict[str, Any], dict[str, dict[str, Any]]]] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    if "memory" not in skip:
        for shape, size, runs, _ in SHAPES_RUNS:
            log(f"memory {shape}-{size}: ours")
            ours = asyncio.run(memory_bench(shape, size, runs))
            log(f"memory {shape}-{size}: Flowcraft TS FlowRuntime")
            ts = node_json("memory", shape, str(size), str(runs))
            rows.append(("memory", f"{shape}-{size}", ours, {"Flowcraft TS FlowRuntime": ts}))
            log(f"  {json.dumps(rows[-1][2:])}")

    latency: dict[str, dict[str, Any]] = {}
    needs_redis = bool({"redis", "latency"} - skip)
    with private_redis() if needs_redis else contextlib.nullcontext("") as base:
        if "redis" not in skip:
            for shape, size, runs, ts_runs in SHAPES_RUNS:
                url = f"{base}/1?prefix=bench"
                flush(f"{base}/1")
                log(f"redis {shape}-{size}: ours")
                ours = bench_url(url, shape, size, runs, WORKERS, THREADS)
                log(f"redis {shape}-{size}: Flowcraft TS + BullMQ")
                ts = ts_redis(f"{base}/2", shape, size, ts_runs)
                peers = {"Flowcraft TS + BullMQ": ts}
                if shape != "subflow-chain":  # Celery has no child runs to compare with
                    log(f"redis {shape}-{size}: Celery")
                    peers["Celery"] = celery(f"{base}/3", shape, size, runs)
                log(f"redis {shape}-{size}: bare Dramatiq")
                flush(f"{base}/1")
                bare = bare_dramatiq(url, WORKERS, THREADS, ours["nodes"])
                peers["bare Dramatiq"] = {"nodes_per_s": round(bare, 1)}
                rows.append(("redis", f"{shape}-{size}", ours, peers))
                log(f"  {json.dumps(rows[-1][2:])}")
        if "latency" not in skip:
            log("latency: ours")
            flush(f"{base}/1")
            latency["ours (Redis)"] = ours_redis_latency(f"{base}/1?prefix=lat", args.latency_runs)
            log("latency: Flowcraft TS + BullMQ")
            latency["Flowcraft TS + BullMQ"] = ts_latency(f"{base}/2", args.latency_runs)

    if "sql" not in skip:
        tmp = tempfile.mkdtemp(prefix="flowcraft-peers-sql-")
        try:
            for family in ("sqlite", "postgresql"):
                for shape, size, runs in SQL_SHAPES:
                    tag = uuid.uuid4().hex[:8]
                    prefix = f"bench{tag}"
                    if family == "sqlite":
                        ours_url = f"sqlite:///{tmp}/ours-{tag}.db?prefix={prefix}"
                        dbos_url, schema = f"sqlite:///{tmp}/dbos-{tag}.db", ""
                    else:
                        joiner = "&" if "?" in POSTGRES else "?"
                        ours_url = f"{POSTGRES}{joiner}prefix={prefix}"
                        dbos_url, schema = (
                            POSTGRES.replace("postgresql://", "postgresql+psycopg://"),
                            f"dbos_{tag}",
                        )
                    try:
                        log(f"{family} {shape}-{size}: ours")
                        ours = bench_url(ours_url, shape, size, runs, WORKERS, THREADS)
                        log(f"{family} {shape}-{size}: DBOS")
                        theirs = dbos(dbos_url, schema, shape, size, runs)
                    finally:
                        if family == "postgresql":
                            asyncio.run(_drop_sql(ours_url, prefix))
                            _drop_pg_schema(schema)
                    rows.append((family, f"{shape}-{size}", ours, {"DBOS": theirs}))
                    log(f"  {json.dumps(rows[-1][2:])}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    print(
        f"\n{started}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print("\n| backend | shape | ours nodes/s | peer | peer nodes/s | ours ÷ peer |")
    print("|---|---|---|---|---|---|")
    for backend, shape, ours, peers in rows:
        for name, theirs in peers.items():
            print(
                f"| {backend} | {shape} | {ours['nodes_per_s']:,.0f} | {name} | "
                f"{theirs['nodes_per_s']:,.0f} | **{ratio(ours, theirs)}** |"
            )
    if latency:
        print("\n| one 5-node chain on an idle system | p50 ms | p99 ms |")
        print("|---|---|---|")
        for name, row in latency.items():
            print(f"| {name} | {row['p50_ms']} | {row['p99_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
