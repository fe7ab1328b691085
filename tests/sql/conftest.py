"""Fixtures of the SQL driver's tests: databases (see :mod:`services`) and cleanup."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import services


@pytest.fixture(scope="session", autouse=True)
def _drop_this_runs_tables() -> Iterator[None]:
    yield
    for family in ("postgresql", "mysql"):
        services.drop_tables(family)
    shutil.rmtree(services.SQLITE_DIR, ignore_errors=True)


# The process tests reuse the Redis tests' worker-process helpers and node registry.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "redis"))
