"""The chaos soak of ``make chaos``, for 60 seconds (see ``chaos.py``): every run exact, every
input what its predecessors committed, re-runs only of executions a fault hit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from chaos import soak


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_minute_of_chaos_loses_and_repeats_nothing(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("the chaos soak needs redis-server on PATH (apt-get install redis-server)")
    figures = await soak(tmp_path, runs=None, seconds=60, seed=15)
    print(figures)
    assert figures["problem_count"] == 0, figures
    # Node code runs again only if an execution's commit was lost to a fault (README,
    # Reliability): none outside the fault windows.
    assert figures["unexplained_count"] == 0, figures
    assert figures["runs"] == figures["completed"] > 0
    assert sum(figures["faults"].values()) >= 10, figures  # the monkey really was at work
