"""Mixed deployments, as an operator runs them: real ``flowcraft worker`` processes take jobs from
one server while context and coordination live on another, and ``flowcraft start`` /
``flowcraft wait`` drive runs from other processes. Outputs equal the in-memory run's.

Queue on RabbitMQ with the state on Redis or PostgreSQL, and the queue on Redis with the state
on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from flowcraft_core import Blueprint
from flowcraft_core.local import run_workflow
from flowcraft_redis import parse_url as parse_redis_url

pytestmark = pytest.mark.slow  # worker processes, seconds of waiting by design

REPO = Path(__file__).resolve().parents[2]
FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")
BLUEPRINT = str(REPO / "examples" / "order_fulfilment.json")
REGISTRY = "examples.orders:registry"
REDIS = os.environ.get("FLOWCRAFT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES = os.environ.get(
    "FLOWCRAFT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
ORDERS = [
    {"order_id": f"M-{i}", "items": [{"sku": "book", "qty": i, "price": 12.5}]} for i in range(1, 4)
]


def orders() -> Any:
    """The example's registry (the repository root is not on the test process's path)."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    return importlib.import_module("examples.orders").registry


async def _in_memory() -> list[Any]:
    blueprint, registry = Blueprint.load(BLUEPRINT), orders()
    results = [await run_workflow(blueprint, registry, order) for order in ORDERS]
    return [json.loads(json.dumps(result.outputs)) for result in results]


@functools.cache
def in_memory() -> list[Any]:
    """Each order's outputs from a run in this process on the memory driver, as JSON (once
    per process: the memory driver's shared state stays bound to the first event loop)."""
    return asyncio.run(_in_memory())


def env_for(urls: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCRAFT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(urls)
    return env


def flowcraft(*args: str, env: dict[str, str], timeout: float = 90) -> str:
    done = subprocess.run(
        [FLOWCRAFT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (args, done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def with_query(url: str, **params: str) -> str:
    joiner = "&" if "?" in url else "?"
    return url + joiner + "&".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis URL with a prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"test-mixed-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(parse_redis_url(REDIS).url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"the mixed deployment tests need Redis at {REDIS} ({exc}); set "
            "FLOWCRAFT_TEST_REDIS_URL or start redis-server on 127.0.0.1:6379"
        )
    yield with_query(REDIS, prefix=prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL with a table prefix of this test's own; its tables are dropped after."""
    prefix = f"mixed_{uuid.uuid4().hex[:10]}"
    try:
        psycopg.connect(POSTGRES, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(
            f"the mixed deployment tests need PostgreSQL at {POSTGRES} ({exc}); set "
            "FLOWCRAFT_TEST_POSTGRES_URL or start one (trust auth, database 'test')"
        )
    yield with_query(POSTGRES, prefix=prefix)
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        names = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "\\_%",)
        ).fetchall()
        for (name,) in names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@contextlib.contextmanager
def workers(env: dict[str, str], tmp: Path) -> Iterator[Callable[[], str]]:
    """A ``flowcraft worker --processes 2`` running until the block ends (then SIGTERM)."""
    err = tmp / "worker.stderr"
    with err.open("wb") as sink:
        proc = subprocess.Popen(
            [FLOWCRAFT, "worker", "--registry", REGISTRY, "--processes", "2", "--concurrency", "4"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )

    def log() -> str:
        return err.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 60
        while log().count(" ready") < 2:
            assert proc.poll() is None, f"the worker exited {proc.returncode}:\n{log()}"
            assert time.monotonic() < deadline, f"the worker was not ready in 60 s:\n{log()}"
            time.sleep(0.05)
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def run_orders(queue: str, state: str, tmp: Path) -> None:
    """Run every order through workers on ``queue`` with context + coordination on ``state``;
    each must complete with the in-memory run's outputs."""
    env = env_for({"FLOWCRAFT_QUEUE": queue, "FLOWCRAFT_BACKEND": state})
    with workers(env, tmp) as log:
        runs = [
            flowcraft("start", BLUEPRINT, "--input", json.dumps(order), env=env)
            .strip()
            .splitlines()[-1]
            for order in ORDERS
        ]
        results = [
            json.loads(
                flowcraft("wait", run, "--timeout", "60", "--json", env=env).splitlines()[-1]
            )
            for run in runs
        ]
        assert "Traceback" not in log(), log()
    expected = in_memory()
    for result, outputs in zip(results, expected, strict=True):
        assert result["status"] == "completed", result
        assert result["outputs"] == outputs


def redis_keys(url: str, pattern: str) -> list[bytes]:
    client = redis.Redis.from_url(parse_redis_url(url).url)
    try:
        return list(client.scan_iter(match=f"{parse_redis_url(url).prefix}:{pattern}"))
    finally:
        client.close()


def sql_context_runs(url: str) -> int:
    """Runs with context rows in the SQL driver's tables of ``url``'s prefix."""
    table = sql.Identifier(url.rsplit("prefix=", 1)[1] + "_context")
    with psycopg.connect(POSTGRES) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(DISTINCT run_id) FROM {}").format(table)
        ).fetchone()
    return int(row[0]) if row else 0


def test_queue_on_rabbitmq_state_on_redis(
    make_url: Callable[..., str], redis_url: str, tmp_path: Path
) -> None:
    run_orders(make_url(), redis_url, tmp_path)
    assert not redis_keys(redis_url, "dramatiq*"), "the jobs went through Redis"
    assert redis_keys(redis_url, "*"), "no run state on Redis"


def test_queue_on_rabbitmq_state_on_postgresql(
    make_url: Callable[..., str], postgres_url: str, tmp_path: Path
) -> None:
    run_orders(make_url(), postgres_url, tmp_path)
    assert sql_context_runs(postgres_url) == len(ORDERS), "the run state is not on PostgreSQL"


def test_queue_on_redis_state_on_postgresql(
    redis_url: str, postgres_url: str, tmp_path: Path
) -> None:
    run_orders(redis_url, postgres_url, tmp_path)
    assert redis_keys(redis_url, "dramatiq*"), "the jobs did not go through Redis"
    assert not redis_keys(redis_url, "ctx:*"), "run state went to Redis"
    assert sql_context_runs(postgres_url) == len(ORDERS), "the run state is not on PostgreSQL"


def test_queue_on_dramatiq_postgres_state_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    # ?queue=dramatiq builds the dramatiq-postgres queue (tests/dramatiq_postgres proves which
    # class the URL gives); here the whole deployment runs on it.
    run_orders(with_query(postgres_url, queue="dramatiq"), postgres_url, tmp_path)
    assert sql_context_runs(postgres_url) == len(ORDERS), "the run state is not on PostgreSQL"
