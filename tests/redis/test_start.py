"""A start never overwrites a run that exists, with the fused and the composed run state."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flowcraft_conformance.scenarios import SCENARIOS_BY_NAME, registry

from flowcraft_core import Client, EngineSettings, Worker, open_backends
from flowcraft_core.errors import RunExists


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "composed"])
async def test_a_second_start_of_a_run_id_is_refused(
    make_url: Callable[..., str], fused: bool
) -> None:
    settings = EngineSettings(fused_state=fused)
    backends = open_backends(make_url())
    client = Client(backends, settings=settings)
    scenario = SCENARIOS_BY_NAME["chain"]
    try:
        await client.start(scenario.flow, scenario.input, run_id="taken")
        with pytest.raises(RunExists, match="'taken' already exists"):
            await client.start(scenario.flow, {"other": "input"}, run_id="taken")
        async with Worker(registry(), backends, settings=settings):
            result = await client.result("taken", 20)
        assert result.status == scenario.status
        assert result.outputs == scenario.outputs  # from the first start's input
        assert await backends.context.get("taken", "_input") == scenario.input
    finally:
        await backends.close()
