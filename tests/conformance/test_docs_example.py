"""The worked example of docs/writing-a-driver.md is a driver that passes the suite."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from flowcraft_conformance.runner import run_conformance
from flowcraft_conformance.target import Target

from flowcraft_core.plugins import new_manager

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-driver.md"


def _example(name: str) -> str:
    match = re.search(
        rf"<!-- example: {re.escape(name)} -->\n```python\n(.*?)\n```", DOC.read_text(), re.S
    )
    assert match, f"no example {name} in {DOC}"
    return match.group(1)


def test_the_sqlite_context_example_conforms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "flowcraft_sqlite_context.py"
    source.write_text(_example("flowcraft_sqlite_context.py"))
    spec = importlib.util.spec_from_file_location("flowcraft_sqlite_context", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "flowcraft_sqlite_context", module)
    spec.loader.exec_module(module)

    pm = new_manager(load_entry_points=False)
    pm.register(module, name="sqlite-context")
    # Not installed as an entry point, so child processes could not load it.
    target = Target.from_url(
        f"sqlitectx://{tmp_path}/runs.db", capabilities={"multi_process": False}, pm=pm
    )
    report = run_conformance(target)
    assert report.ok, report.output
    context = report.by_contract()["context store"]
    assert {o.outcome for o in context} == {"passed"}, context
    assert all(
        "does not provide" in o.reason
        for contract, outcomes in report.by_contract().items()
        if contract.startswith(("queue", "coordination", "signals"))
        for o in outcomes
    )
