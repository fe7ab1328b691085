"""Subflows on the SQL driver with real ``flowcraft worker`` processes: every subflow scenario on
one SQLite file (and on PostgreSQL when it is available). The in-process conformance suite runs
the same scenarios under duplicated and crashed deliveries on each SQL database."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import services
from subflow_procs import run_subflow_scenarios

pytestmark = pytest.mark.slow


@pytest.mark.timeout(300)
@pytest.mark.parametrize("family", ["sqlite", "postgresql"])
async def test_subflow_scenarios_on_worker_processes(family: str, tmp_path: Path) -> None:
    services.require(family)
    if family == "sqlite":
        url = f"sqlite:///{tmp_path}/runs.db"
    else:
        url = services.server_url(family, ns=f"sf{uuid.uuid4().hex[:12]}")
    await run_subflow_scenarios(url, tmp_path)
