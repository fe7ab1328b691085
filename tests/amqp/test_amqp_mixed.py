"""A mixed deployment, as an operator runs it: real ``flowcraft worker`` processes take jobs from
RabbitMQ while context and coordination live on another driver, and ``flowcraft start`` /
``flowcraft wait`` drive runs from other processes. Outputs equal the in-memory run's."""

from __future__ import annotations

import asyncio
import contextlib
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

import pytest
import redis

from flowcraft_core import Blueprint
from flowcraft_core.local import run_workflow
from flowcraft_redis import parse_url as parse_redis_url

REPO = Path(__file__).resolve().parents[2]
FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")
BLUEPRINT = str(REPO / "examples" / "order_fulfilment.json")
REGISTRY = "examples.orders:registry"
REDIS = os.environ.get("FLOWCRAFT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ORDERS = [
    {"order_id": f"M-{i}", "items": [{"sku": "book", "qty": i, "price": 12.5}]} for i in range(1, 4)
]


def orders() -> Any:
    """The example's registry (the repository root is not on the test process's path)."""
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    return importlib.import_module("examples.orders").registry


async def in_memory() -> list[Any]:
    """Each order's outputs from a run in this process on the memory driver, as JSON."""
    blueprint, registry = Blueprint.load(BLUEPRINT), orders()
    results = [await run_workflow(blueprint, registry, order) for order in ORDERS]
    return [json.loads(json.dumps(result.outputs)) for result in results]


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


@pytest.fixture
def state_url() -> Iterator[str]:
    """Context and coordination on Redis (database 15, a prefix of this test's own)."""
    prefix = f"test-mixed-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(parse_redis_url(REDIS).url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"the mixed deployment test needs Redis at {REDIS} ({exc}); set "
            "FLOWCRAFT_TEST_REDIS_URL or start redis-server on 127.0.0.1:6379"
        )
    joiner = "&" if "?" in REDIS else "?"
    yield f"{REDIS}{joiner}prefix={prefix}"
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


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


def test_worker_on_rabbitmq_with_state_elsewhere_runs_orders_as_memory_does(
    make_url: Callable[..., str], state_url: str, tmp_path: Path
) -> None:
    queue_url = make_url()
    env = env_for({"FLOWCRAFT_QUEUE": queue_url, "FLOWCRAFT_BACKEND": state_url})
    with workers(env, tmp_path) as log:
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
    expected = asyncio.run(in_memory())
    for result, outputs in zip(results, expected, strict=True):
        assert result["status"] == "completed", result
        assert result["outputs"] == outputs
    # The jobs went through RabbitMQ: the Redis side holds no Dramatiq queue of this deployment.
    client = redis.Redis.from_url(parse_redis_url(state_url).url)
    prefix = parse_redis_url(state_url).prefix
    try:
        assert not list(client.scan_iter(match=f"{prefix}:dramatiq*")), "jobs went via Redis"
        assert list(client.scan_iter(match=f"{prefix}:*")), "no run state on Redis"
    finally:
        client.close()
