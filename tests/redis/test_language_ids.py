"""Any node id (``#``, ``.``, ``/``, any unicode) round-trips through every driver: its output
comes back under exactly that id, and no two ids share a stored key (docs/design.md
§ Blueprints)."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcraft_core import (
    Blueprint,
    BlueprintError,
    Client,
    NodeContext,
    Registry,
    Worker,
    open_backends,
)

# Valid Unicode text (no lone surrogates, which no store can encode): every category else.
node_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


async def _echo(ctx: NodeContext) -> Any:
    return {"id": ctx.node_id, "input": ctx.input}


async def _run(url: str, ids: list[str]) -> dict[str, Any]:
    nodes = [{"id": nid, "uses": "echo"} for nid in ids]
    edges = [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]
    flow = Blueprint.from_dict(
        {"id": f"ids-{uuid.uuid4().hex[:6]}", "nodes": nodes, "edges": edges}
    )
    backends = open_backends(url)
    try:
        async with Worker(Registry({"echo": _echo}), backends, concurrency=2):
            client = Client(backends)
            run_id = await client.start(flow, "in")
            result = await client.result(run_id, 30)
        assert result.status == "completed", result.error
        return result.outputs
    finally:
        await backends.close()


def _expected(ids: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    previous: Any = "in"
    for nid in ids:
        out[nid] = previous = {"id": nid, "input": previous}
    return out


@pytest.fixture(params=["memory", "redis"])
def backend_url(request: pytest.FixtureRequest) -> Callable[[], str]:
    if request.param == "memory":
        return lambda: f"memory://{uuid.uuid4().hex}"
    make_url: Callable[..., str] = request.getfixturevalue("make_url")
    return make_url


# Every example runs a whole workflow: a sixteenth of the profile's examples (25 in ci).
@settings(
    max_examples=max(1, settings.default.max_examples // 16),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ids=st.lists(node_ids, min_size=1, max_size=4, unique=True))
def test_any_unicode_node_id_round_trips(backend_url: Callable[[], str], ids: list[str]) -> None:
    assert asyncio.run(_run(backend_url(), ids)) == _expected(ids)


@pytest.mark.parametrize(
    "ids",
    [
        # An id that looks like another node's instance key, and ids with separators.
        ["a", "a#1", "a#0", "_outputs.a", "run:x:in:a#0"],
        ["b.c", "b", "b/c", "ü", "🚀 launch", "%23", "a\x00b"],
    ],
)
def test_ids_that_look_like_keys_never_collide(
    backend_url: Callable[[], str], ids: list[str]
) -> None:
    assert asyncio.run(_run(backend_url(), ids)) == _expected(ids)


def test_an_id_that_is_not_unicode_text_is_refused() -> None:
    with pytest.raises(BlueprintError, match="lone surrogate"):
        Blueprint.from_json('{"id": "s", "nodes": [{"id": "\\ud800", "uses": "x"}]}')
