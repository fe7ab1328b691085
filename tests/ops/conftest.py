"""Backends for the operating-runs tests (index, history, retry, idempotent starts): every test
parametrized over ``backend_url`` runs on memory, Redis, SQLite and PostgreSQL, each with a
namespace of its own.

Redis: ``FLOWCRAFT_TEST_REDIS_URL`` or 127.0.0.1:6379 database 15, under a fresh ``prefix``
(its keys deleted afterwards). SQL: as tests/sql (a file per test for SQLite; a fresh ``ns`` on
the shared PostgreSQL, under this run's table prefix, dropped at the end of the session).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

HERE = Path(__file__).resolve().parent
# The process tests reuse the Redis tests' process helpers and node registry, and the SQL
# tests' database services.
sys.path.insert(0, str(HERE.parent / "redis"))
sys.path.insert(0, str(HERE.parent / "sql"))

import services  # noqa: E402

from flowcraft_memory import driver as memory_driver  # noqa: E402

REDIS = os.environ.get("FLOWCRAFT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
BACKENDS = ("memory", "redis", "sqlite", "postgresql")


@pytest.fixture(scope="session", autouse=True)
def _drop_this_runs_tables() -> Iterator[None]:
    yield
    services.drop_tables("postgresql")


@pytest.fixture(autouse=True)
def _fresh_memory() -> Iterator[None]:
    memory_driver.reset()
    yield
    memory_driver.reset()


def url_of(family: str, tmp_path: Path, prefixes: list[str]) -> str:
    if family == "memory":
        return f"memory://ops-{uuid.uuid4().hex[:8]}"
    if family == "redis":
        prefix = f"test-ops-{uuid.uuid4().hex[:12]}"
        prefixes.append(prefix)
        return f"{REDIS}{'&' if '?' in REDIS else '?'}prefix={prefix}"
    services.require(family)
    if family == "sqlite":
        return f"sqlite:///{tmp_path}/runs.db"
    return services.server_url(family, ns=f"o{uuid.uuid4().hex[:12]}")


@pytest.fixture
def make_backend_url(tmp_path: Path) -> Iterator[object]:
    prefixes: list[str] = []

    def make(family: str) -> str:
        return url_of(family, tmp_path, prefixes)

    yield make
    if prefixes:
        client = redis.Redis.from_url(REDIS.split("?")[0])
        try:
            for prefix in prefixes:
                keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
                if keys:
                    client.delete(*keys)
        finally:
            client.close()


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, make_backend_url: object) -> str:
    url: str = make_backend_url(request.param)  # type: ignore[operator]
    return url
