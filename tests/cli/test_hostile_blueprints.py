"""Blueprints built to exhaust the loader or the run: each is a validation error (exit 2) in
bounded time and memory, never a traceback, a hang or gigabytes."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import pytest

from flowcraft_core import Blueprint, BlueprintError
from flowcraft_core.blueprint import MAX_NESTING, MAX_RETRY_DELAY_MS
from flowcraft_core.builtins import MAX_SLEEP_MS
from flowcraft_core.validation import validate

from .test_cli import flowcraft

DEEP = 5000


def _deep_json() -> str:
    nested = "[" * DEEP + "]" * DEEP
    return f'{{"id": "deep", "nodes": [{{"id": "a", "uses": "x", "params": {{"p": {nested}}}}}]}}'


def _deep_yaml() -> str:
    return (
        "id: deep\nnodes:\n  - id: a\n    uses: x\n    params:\n      p: " + "[" * DEEP + "]" * DEEP
    )


def _bomb_yaml() -> str:
    # The classic "billion laughs": nine levels of nine aliases each, 9**9 leaves when expanded.
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    body = "\n".join("  " + line for line in lines)
    return f"id: bomb\nmetadata:\n{body}\nnodes:\n  - id: a\n    uses: x\n"


HOSTILE = {
    "deep.json": _deep_json(),
    "deep.yaml": _deep_yaml(),
    "bigint.json": '{"id": "big", "nodes": [{"id": "a", "uses": "x", "params": {"n": '
    + "9" * 5000
    + "}}]}",
    "bigint.yaml": "id: big\nnodes:\n  - id: a\n    uses: x\n    params:\n      n: " + "9" * 5000,
    "bomb.yaml": _bomb_yaml(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_a_validation_error(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(HOSTILE[name])
    started = time.monotonic()
    with pytest.raises(BlueprintError) as info:
        Blueprint.load(path)
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "Traceback" not in message
    if name == "deep.json":
        assert f"nested more than {MAX_NESTING} levels deep" in message
    elif name == "deep.yaml":  # libyaml's own bound, or ours with the pure-Python loader
        assert "nesting depth" in message or "levels deep" in message
    elif name.startswith("bigint"):
        assert "digits" in message
    else:
        assert "values" in message and "aliases" in message


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_exits_2_on_validate_and_run(name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    path.write_text(HOSTILE[name])
    for args in (
        ["validate", str(path)],
        ["run", str(path), "--registry", "examples.orders:registry"],
    ):
        proc = flowcraft(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr) < 5000


def test_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb_yaml())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BlueprintError):
        Blueprint.load(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000


def test_small_aliases_are_still_accepted(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "id: ok\nmetadata:\n  base: &cfg {maxRetries: 2}\n"
        "nodes:\n  - id: a\n    uses: x\n    config: *cfg\n"
    )
    assert Blueprint.load(path).node("a").config.max_retries == 2


def test_deep_data_from_python_is_refused() -> None:
    params: object = []
    for _ in range(MAX_NESTING + 5):
        params = [params]
    with pytest.raises(BlueprintError, match="levels deep"):
        Blueprint.from_dict(
            {"id": "d", "nodes": [{"id": "a", "uses": "x", "params": {"p": params}}]}
        )


def test_nesting_at_the_bound_is_accepted() -> None:
    params: object = 1
    for _ in range(MAX_NESTING - 4):  # blueprint, nodes, node, params: four levels above it
        params = [params]
    bp = Blueprint.from_dict(
        {"id": "d", "nodes": [{"id": "a", "uses": "x", "params": {"p": params}}]}
    )
    assert Blueprint.from_json(bp.to_json()) == bp


def test_deep_run_input_is_a_usage_error() -> None:
    proc = flowcraft(
        "run", "examples/order_fulfilment.json", "--registry", "examples.orders:registry",
        "--input", "[" * DEEP + "]" * DEEP,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--input" in proc.stderr and "Traceback" not in proc.stderr


def _node(config: dict[str, object] | None = None, **extra: object) -> dict[str, object]:
    return {"id": "a", "uses": "x", **({"config": config} if config else {}), **extra}


@pytest.mark.parametrize("delay", [MAX_RETRY_DELAY_MS + 1, 1e300, float("inf"), float("nan")])
def test_retry_delay_above_the_maximum_is_refused(delay: float) -> None:
    with pytest.raises(BlueprintError, match="retryDelay"):
        Blueprint.from_dict({"id": "r", "nodes": [_node({"retryDelay": delay, "maxRetries": 3})]})


def test_retry_delay_at_the_maximum_is_accepted() -> None:
    bp = Blueprint.from_dict({"id": "r", "nodes": [_node({"retryDelay": MAX_RETRY_DELAY_MS})]})
    assert bp.node("a").config.retry_delay == MAX_RETRY_DELAY_MS


@pytest.mark.parametrize("timeout", [float("inf"), float("nan")])
def test_timeout_must_be_finite(timeout: float) -> None:
    with pytest.raises(BlueprintError, match="timeout"):
        Blueprint.from_dict({"id": "t", "nodes": [_node({"timeout": timeout})]})


@pytest.mark.parametrize("duration", [MAX_SLEEP_MS + 1, 1e300, float("inf")])
def test_sleep_above_the_maximum_is_refused(duration: float) -> None:
    bp = Blueprint.from_dict(
        {"id": "s", "nodes": [{"id": "s", "uses": "sleep", "params": {"duration": duration}}]}
    )
    assert any("duration" in p.message for p in validate(bp))


def test_sleep_at_the_maximum_is_accepted() -> None:
    bp = Blueprint.from_dict(
        {"id": "s", "nodes": [{"id": "s", "uses": "sleep", "params": {"duration": MAX_SLEEP_MS}}]}
    )
    assert validate(bp) == []


def test_huge_sleep_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "sleep.json"
    path.write_text(
        json.dumps(
            {"id": "s", "nodes": [{"id": "s", "uses": "sleep", "params": {"duration": 1e12}}]}
        )
    )
    proc = flowcraft("validate", str(path))
    assert proc.returncode == 2 and "duration" in proc.stderr


@pytest.mark.parametrize("builtin", ["wait", "sleep"])
def test_fallback_to_a_builtin_is_refused(builtin: str) -> None:
    bp = Blueprint.from_dict(
        {
            "id": "f",
            "nodes": [
                _node({"fallback": "b"}),
                {"id": "b", "uses": builtin, "params": {"duration": 1}},
            ],
        }
    )
    problems = [p for p in validate(bp) if p.where == "node 'a'"]
    assert any("fallback" in p.message and builtin in p.message for p in problems), problems
