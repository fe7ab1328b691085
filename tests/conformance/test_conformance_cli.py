"""`flowcraft conformance memory://` passes: the command a third party runs, end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flowcraft_conformance.scenarios import SCENARIOS

FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")


def run_conformance_cli(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWCRAFT, "conformance", url], capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.timeout(600)
def test_memory_driver_conforms() -> None:
    result = run_conformance_cli("memory://")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("conforms"), result.stdout[-2000:]
    assert f"{len(SCENARIOS) * 9} test(s)" in result.stdout  # every scenario, every fault, both
