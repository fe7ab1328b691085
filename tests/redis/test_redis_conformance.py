"""`flowcraft conformance redis://…/15` passes: our primary driver meets every contract."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from flowcraft_conformance.scenarios import SCENARIOS

FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")


@pytest.mark.timeout(900)
def test_redis_driver_conforms(redis_server: str) -> None:
    result = subprocess.run(
        [FLOWCRAFT, "conformance", redis_server],  # the session's Redis, database 15
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("conforms"), result.stdout[-2000:]
    assert f"{len(SCENARIOS) * 9} test(s)" in result.stdout  # every scenario, every fault, both
    # The fused run state ran the differential machine (a skip would be listed with its reason).
    assert re.search(r"run state\W+1 test\(s\)\W+passed", result.stdout), result.stdout[-2000:]
