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
    # Open finding (README, Reliability): a few re-executions per 10,000 that the fault windows
    # do not explain; `make chaos` fails on any, this minute tolerates one in a hundred.
    assert figures["unexplained_count"] <= figures["executions"] / 100, figures
    assert figures["runs"] == figures["completed"] > 0
    assert sum(figures["faults"].values()) >= 10, figures  # the monkey really was at work
