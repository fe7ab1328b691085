"""A real Redis for the Redis driver's tests, and a fresh key prefix per test.

Where Redis comes from, in order: ``FLOWCRAFT_TEST_REDIS_URL``; a server answering on
127.0.0.1:6379 (database 15, never 0); a ``redis-server`` from PATH started for the session on a
free port. Every test gets its own ``?prefix=test-...``, and its keys are deleted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlencode

import pytest
import redis

from flowcraft_redis import RedisContextStore, RedisCoordinationStore, RedisQueue, parse_url

LOCAL = "redis://127.0.0.1:6379/15"


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The base URL of a Redis server for this test session."""
    given = os.environ.get("FLOWCRAFT_TEST_REDIS_URL")
    if given:
        if not _answers(given):
            pytest.fail(f"FLOWCRAFT_TEST_REDIS_URL={given} does not answer PING")
        yield given
        return
    if _answers(LOCAL):
        yield LOCAL
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "the Redis driver tests need a Redis server: set FLOWCRAFT_TEST_REDIS_URL="
            "redis://host:port/db, start one on 127.0.0.1:6379, or put redis-server on PATH "
            "(e.g. apt-get install redis-server) so the tests can start their own"
        )
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="flowcraft-redis-") as workdir:
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/15"
        try:
            deadline = time.monotonic() + 10
            while not _answers(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server on port {port} did not start")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


@pytest.fixture
def make_url(redis_server: str) -> Iterator[Callable[..., str]]:
    """Builds URLs with a prefix of their own (and any other query parameters); every key under
    those prefixes is deleted after the test."""
    prefixes: list[str] = []

    def make(**params: object) -> str:
        prefix = f"test-{uuid.uuid4().hex[:12]}"
        prefixes.append(prefix)
        query = urlencode({"prefix": prefix, **params})
        joiner = "&" if "?" in redis_server else "?"
        return f"{redis_server}{joiner}{query}"

    yield make
    client = redis.Redis.from_url(parse_url(redis_server).url)
    try:
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_url(make_url: Callable[..., str]) -> str:
    """A URL with a prefix of its own, cleaned up after the test."""
    return make_url()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain client on the test's database, for looking behind the driver's back."""
    client = redis.Redis.from_url(parse_url(redis_url).url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
async def context(redis_url: str) -> AsyncIterator[RedisContextStore]:
    store = RedisContextStore(redis_url)
    yield store
    await store.close()


@pytest.fixture
async def coordination(redis_url: str) -> AsyncIterator[RedisCoordinationStore]:
    store = RedisCoordinationStore(redis_url)
    yield store
    await store.close()


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[RedisQueue]:
    q = RedisQueue(redis_url)
    yield q
    await q.close()
