"""`flowcraft conformance memory://` passes: the command a third party runs, end to end.

A smoke test of the console script on two contracts: the whole suite runs on the memory driver
in this process (``test_memory_conformance.py``), one item per test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")
SMOKE = ("--only", "driver declaration", "--only", "signals")


def run_conformance_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLOWCRAFT, "conformance", url, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_flowcraft_conformance_cli_on_memory() -> None:
    result = run_conformance_cli("memory://", *SMOKE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.rstrip().endswith("conforms"), result.stdout[-2000:]
    for contract in ("driver declaration", "signals"):
        assert contract in result.stdout, result.stdout[-2000:]
    assert "failed" not in result.stdout
