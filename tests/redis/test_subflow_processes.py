"""Subflows on a real Redis with real ``flowcraft worker`` processes: every subflow scenario
(chain, inputs/outputs, nested through the workers' --blueprints catalog, awaiting resumed
through the parent, failed child retried then fallback, failed child), and ``flowcraft
status`` listing a run's children."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from flowcraft_conformance.scenarios import SCENARIOS_BY_NAME
from procs import flowcraft
from subflow_procs import catalog_dir, run_subflow_scenarios

from flowcraft_core import Blueprint, Client, open_backends
from flowcraft_core.engine import keys

pytestmark = pytest.mark.slow


async def test_subflow_scenarios_on_worker_processes(
    tmp_path: Path, make_url: Callable[..., str]
) -> None:
    await run_subflow_scenarios(make_url(), tmp_path)


async def test_cli_status_lists_children(tmp_path: Path, make_url: Callable[..., str]) -> None:
    """`flowcraft start --blueprints` pins the children; `flowcraft run`... here a worker
    process runs it; `flowcraft status` shows each child's node, blueprint and status."""
    from procs import Procs

    url = make_url()
    scenario = SCENARIOS_BY_NAME["subflow_chain"]
    catalog = catalog_dir(tmp_path)
    main = tmp_path / "main.json"
    main.write_text(json.dumps(scenario.blueprint))
    with Procs(tmp_path) as procs:
        procs.worker(url, "flowcraft_conformance.scenarios:REGISTRY", concurrency=2)
        started = flowcraft(
            "start", str(main), "--input", "0", "--backend", url, "--blueprints", str(catalog)
        )
        assert started.returncode == 0, started.stderr
        run_id = started.stdout.strip().splitlines()[-1]
        backends = open_backends(url)
        client = Client(backends, blueprints=[Blueprint.load(p) for p in catalog.iterdir()])
        try:
            result = await client.result(run_id, 60)
        finally:
            await client.close()
    assert result.status == "completed", (result, procs.stderr())
    assert result.outputs == scenario.outputs
    status = flowcraft("status", run_id, "--backend", url)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.strip().splitlines()
    assert lines[0] == "completed"
    for node in ("s1", "s2"):
        child = keys.child_run_id(run_id, f"{node}#0", 1)
        assert f"  child {child} (node {node!r}, sf-inc): completed" in lines, lines
    as_json = json.loads(flowcraft("status", run_id, "--backend", url, "--json").stdout)
    assert {c["node"] for c in as_json["children"].values()} == {"s1", "s2"}
