"""`flowcraft run|start --context JSON`: the run's initial context, as Flowcraft's initialState."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from .test_cli import flowcraft, last_json

NODES = textwrap.dedent(
    """
    from flowcraft_core import Registry

    registry = Registry()

    @registry.node("fetch")
    async def fetch(ctx):
        return await ctx.context.get("user")

    @registry.node("hello")
    def hello(ctx):
        return f"hello {ctx.input['name']}"
    """
)

# The example of docs/flowcraft.md, as flow.toBlueprint() prints it.
BLUEPRINT = {
    "id": "greet",
    "nodes": [
        {"id": "fetch", "uses": "fetch", "_sourceLocation": {"file": "greet.ts", "line": 2}},
        {"id": "hello", "uses": "hello"},
    ],
    "edges": [
        {
            "source": "fetch",
            "target": "hello",
            "condition": "fetch.name !== undefined && fetch.name.length > 0",
        }
    ],
}


def _setup(tmp_path: Path) -> str:
    (tmp_path / "greet_nodes.py").write_text(NODES)
    path = tmp_path / "greet.json"
    path.write_text(json.dumps(BLUEPRINT))
    return str(path)


def test_run_with_a_context(tmp_path: Path) -> None:
    blueprint = _setup(tmp_path)
    proc = flowcraft(
        "run",
        blueprint,
        "--registry",
        "greet_nodes:registry",
        "--context",
        '{"user": {"name": "Ada"}}',
        "--json",
        pythonpath=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc)
    assert result["outputs"] == {"fetch": {"name": "Ada"}, "hello": "hello Ada"}
    assert result["context"] == {"user": {"name": "Ada"}}


def test_run_with_an_empty_name_takes_no_edge(tmp_path: Path) -> None:
    blueprint = _setup(tmp_path)
    proc = flowcraft(
        "run",
        blueprint,
        "--registry",
        "greet_nodes:registry",
        "--context",
        '{"user": {"name": ""}}',
        "--json",
        pythonpath=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc)["outputs"] == {"fetch": {"name": ""}}


def test_a_context_that_is_not_an_object_is_a_usage_error(tmp_path: Path) -> None:
    blueprint = _setup(tmp_path)
    for bad, fragment in (("[1]", "must be a JSON object"), ("{", "not valid JSON")):
        proc = flowcraft(
            "run",
            blueprint,
            "--registry",
            "greet_nodes:registry",
            "--context",
            bad,
            pythonpath=tmp_path,
        )
        assert proc.returncode == 2, proc.stderr
        assert "--context" in proc.stderr and fragment in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_context_key_of_the_engine_is_refused(tmp_path: Path) -> None:
    blueprint = _setup(tmp_path)
    proc = flowcraft(
        "run",
        blueprint,
        "--registry",
        "greet_nodes:registry",
        "--context",
        '{"_outputs.hello": "forged"}',
        pythonpath=tmp_path,
    )
    assert proc.returncode != 0
    assert "not starting with '_'" in proc.stderr and "'_outputs.hello'" in proc.stderr
    assert "Traceback" not in proc.stderr
