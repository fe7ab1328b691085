"""Idempotent starts: one key, one run, also when starts race on separate connections and in
separate processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from flowcraft_conformance.scenarios import SCENARIOS_BY_NAME, calls_of, registry

from flowcraft_core import Client, Worker, open_backends
from flowcraft_core.errors import FlowcraftError, RunExists

CHAIN = SCENARIOS_BY_NAME["chain"]


async def test_concurrent_starts_with_one_key_give_one_run_executed_once(backend_url: str) -> None:
    # Separate clients, each with its own connections: the starts really race at the backend.
    # (memory:// names one store per process, so its clients share it too.)
    clients = [Client(open_backends(backend_url)) for _ in range(6)]
    # Unique per test: the execution counts are kept per run id, in this process.
    key = f"order-{uuid.uuid4().hex}"
    try:
        ids = await asyncio.gather(
            *(c.start(CHAIN.flow, CHAIN.input, idempotency_key=key) for c in clients)
        )
        assert len(set(ids)) == 1, ids
        run_id = ids[0]
        other = await clients[0].start(CHAIN.flow, CHAIN.input, idempotency_key=key + "-b")
        assert other != run_id
        async with Worker(registry(), clients[0].backends):
            result = await clients[0].result(run_id, 30)
            assert (await clients[0].result(other, 30)).status == CHAIN.status
        assert result.status == CHAIN.status
        assert result.outputs == CHAIN.outputs
        # Every node ran once: six starts made one run, and the duplicates enqueued nothing.
        assert calls_of(run_id) and set(calls_of(run_id).values()) == {1}, calls_of(run_id)
        # After it finished, the key still names it and starts nothing.
        again = await clients[1].start(CHAIN.flow, {"other": 1}, idempotency_key=key)
        assert again == run_id
        assert (await clients[1].snapshot(run_id)).outputs == CHAIN.outputs
    finally:
        for c in clients:
            await c.close()


async def test_bad_idempotent_starts_are_refused_clearly(backend_url: str) -> None:
    client = Client(open_backends(backend_url))
    other = SCENARIOS_BY_NAME["fanout_fanin"]
    try:
        run_id = await client.start(CHAIN.flow, CHAIN.input, idempotency_key="k")
        with pytest.raises(FlowcraftError, match=f"'k' was used for run {run_id} of blueprint"):
            await client.start(other.flow, other.input, idempotency_key="k")
        with pytest.raises(FlowcraftError, match="not both"):
            await client.start(CHAIN.flow, CHAIN.input, run_id="x", idempotency_key="k")
        with pytest.raises(FlowcraftError, match="non-empty string"):
            await client.start(CHAIN.flow, CHAIN.input, idempotency_key="")
        # Without a key a taken run id is still refused.
        with pytest.raises(RunExists):
            await client.start(CHAIN.flow, CHAIN.input, run_id=run_id)
    finally:
        await client.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("family", ["redis", "sqlite"])
def test_concurrent_cli_starts_print_one_run_id(
    family: str, make_backend_url: Callable[[str], str], tmp_path: Path
) -> None:
    from procs import FLOWCRAFT, REPO, child_env

    url = make_backend_url(family)
    blueprint = tmp_path / "chain.json"
    blueprint.write_text(CHAIN.flow.to_json())
    key = f"nightly-{uuid.uuid4().hex}"
    cmd = [FLOWCRAFT, "start", str(blueprint), "--input", json.dumps(CHAIN.input)]
    cmd += ["--idempotency-key", key]
    procs = [
        subprocess.Popen(
            [*cmd, "--backend", url],
            cwd=REPO,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (out, err)
        assert "Traceback" not in err
    ids = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(ids) == 1, outs

    async def check() -> None:
        backends = open_backends(url)
        client = Client(backends)
        try:
            (run_id,) = ids
            async with Worker(registry(), backends):
                result = await client.result(run_id, 30)
            assert result.status == CHAIN.status and result.outputs == CHAIN.outputs
            assert set(calls_of(run_id).values()) == {1}, calls_of(run_id)
        finally:
            await client.close()

    asyncio.run(check())
