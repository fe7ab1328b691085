"""Any node id (``#``, ``.``, ``/``, any unicode) round-trips through the SQL driver too, on
SQLite, PostgreSQL and MariaDB: the same workflows as the memory and Redis test
(tests/redis/test_language_ids.py), whose helpers this reuses."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import services
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_language_ids import _expected, _run, node_ids

FAMILIES = ("sqlite", "postgresql", "mysql")


def _url(family: str) -> str:
    ns = f"ids{uuid.uuid4().hex[:10]}"
    if family == "sqlite":
        return services.sqlite_url("language-ids", ns=ns)
    return services.server_url(family, ns=ns)


# Every example runs a whole workflow on a database: a 32nd of the profile's examples.
@pytest.mark.parametrize("family", FAMILIES)
@settings(
    max_examples=max(1, settings.default.max_examples // 32),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ids=st.lists(node_ids, min_size=1, max_size=4, unique=True))
def test_any_unicode_node_id_round_trips_on_sql(family: str, ids: list[str]) -> None:
    services.require(family)
    assert asyncio.run(_run(_url(family), ids)) == _expected(ids)


@pytest.mark.parametrize("family", FAMILIES)
def test_ids_that_look_like_keys_never_collide_on_sql(family: str) -> None:
    services.require(family)
    ids = ["a", "a#1", "a#0", "_outputs.a", "run:x:in:a#0", "b.c", "b/c", "ü", "🚀 x", "a\x00b"]
    assert asyncio.run(_run(_url(family), ids)) == _expected(ids)
