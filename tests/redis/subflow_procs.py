"""The subflow conformance scenarios run by real ``flowcraft worker`` processes (any backend
URL): shared by the Redis and the SQL process tests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from flowcraft_conformance.scenarios import SUBFLOW_SCENARIOS, Scenario, calls_of, resume_scenario
from procs import Procs

from flowcraft_core import Blueprint, Client, RunResult, open_backends

REGISTRY = "flowcraft_conformance.scenarios:REGISTRY"


def catalog_dir(tmp_path: Path) -> Path:
    """Every scenario's catalog blueprints, one file each, for the workers' --blueprints."""
    root = tmp_path / "catalog"
    root.mkdir(exist_ok=True)
    seen: dict[str, str] = {}
    for scenario in SUBFLOW_SCENARIOS:
        for raw in scenario.blueprints:
            text = json.dumps(raw, sort_keys=True)
            assert seen.setdefault(raw["id"], text) == text, f"two scenarios differ on {raw['id']}"
            (root / f"{raw['id']}.json").write_text(text)
    return root


async def descendants(client: Client, run_id: str) -> list[str]:
    out: list[str] = []
    for child, info in (await client.children(run_id)).items():
        out.append(str(info["status"]))
        out.extend(await descendants(client, child))
    return out


async def run_one(client: Client, worker_client: Client, scenario: Scenario) -> RunResult:
    # A worker-catalog scenario is started by a client without a catalog: nothing is pinned.
    starter = worker_client if scenario.worker_catalog else client
    run_id = await starter.start(scenario.flow, scenario.input, context=scenario.context)
    result = await client.result(run_id, 60)
    return await resume_scenario(client, scenario, run_id, result, 60)


async def run_subflow_scenarios(url: str, tmp_path: Path, *, workers: int = 2) -> None:
    """Every subflow scenario at once on ``workers`` worker processes (each given the catalog
    with --blueprints): outputs, statuses, context, errors and the child runs as the scenario
    says; node code is counted in the worker processes, so only results are checked here."""
    catalog = catalog_dir(tmp_path)
    with Procs(tmp_path) as procs:
        for _ in range(workers):
            procs.worker(
                url, REGISTRY, concurrency=4, ready=False, extra=("--blueprints", str(catalog))
            )
        for proc in procs.procs:
            proc.wait_ready()
        backends = open_backends(url)
        blueprints = [Blueprint.load(p) for p in sorted(catalog.iterdir())]
        client = Client(backends, blueprints=blueprints)
        bare = Client(backends)
        try:
            results = await asyncio.gather(*(run_one(client, bare, s) for s in SUBFLOW_SCENARIOS))
            for scenario, result in zip(SUBFLOW_SCENARIOS, results, strict=True):
                where = (scenario.name, result, procs.stderr())
                assert result.status == scenario.status, where
                assert result.outputs == scenario.outputs, where
                if scenario.final_context is not None:
                    assert result.context == scenario.final_context, where
                if scenario.error_type is not None:
                    assert result.error is not None and result.error["type"] == scenario.error_type
                assert sorted(await descendants(client, result.run_id)) == scenario.children, where
                assert not calls_of(result.run_id)  # the code ran in the workers, not here
        finally:
            await client.close()
            await backends.close()
