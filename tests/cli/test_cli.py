"""The ``flowcraft`` console script, run as a real subprocess from the repository root."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/order_fulfilment.json"
REGISTRY = "examples.orders:registry"


def _flowcraft() -> str:
    beside = Path(sys.executable).parent / "flowcraft"
    if beside.exists():
        return str(beside)
    found = shutil.which("flowcraft")
    assert found, "the flowcraft console script is not installed"
    return found


FLOWCRAFT = _flowcraft()


def flowcraft(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWCRAFT_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run(
        [FLOWCRAFT, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def last_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no stdout; stderr: {proc.stderr}"
    data = json.loads(lines[-1])
    assert set(data) == {"run_id", "status", "outputs", "error", "context"}, data
    return data


# -- the example ----------------------------------------------------------------------------


def test_run_the_example_order() -> None:
    order = (REPO / "examples" / "order.json").read_text()
    proc = flowcraft("run", EXAMPLE, "--registry", REGISTRY, "--input", order, "--json")
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc)
    assert result["status"] == "completed"
    assert result["error"] is None
    assert isinstance(result["run_id"], str) and result["run_id"]
    items = [
        {"sku": "book", "qty": 2, "price": 12.5},
        {"sku": "lamp", "qty": 1, "price": 30},
    ]
    assert json.loads(order)["items"] == items
    # total = 2 * 12.5 + 1 * 30; shipping = 4.5 + 0.5 * (2 + 1); charge succeeds on attempt 2.
    assert result["outputs"] == {
        "validate": {"order_id": "A-1001", "items": items, "total": 55.0},
        "reserve": {"reserved": {"book": 2, "lamp": 1}},
        "charge": {"charged": 55.0, "attempt": 2},
        "shipping": {"carrier": "parcel", "cost": 6.0},
        "pack": {"reserved": {"book": 2, "lamp": 1}, "charged": 55.0, "shipping": 6.0},
        "auto_approve": {"approved_by": "policy", "total": 55.0},
        "ship": {"status": "shipped", "approved_by": "policy"},
    }


def test_run_a_large_order_awaits_a_manager() -> None:
    order = {"order_id": "B-2", "items": [{"sku": "desk", "qty": 2, "price": 350}]}
    proc = flowcraft("run", EXAMPLE, "--registry", REGISTRY, "--input", json.dumps(order), "--json")
    assert proc.returncode == 1, proc.stderr
    result = last_json(proc)
    assert result["status"] == "awaiting"
    assert result["error"] is None
    assert result["outputs"] == {
        "validate": {"order_id": "B-2", "items": order["items"], "total": 700},
        "reserve": {"reserved": {"desk": 2}},
        "charge": {"charged": 700, "attempt": 2},
        "shipping": {"carrier": "parcel", "cost": 5.5},
        "pack": {"reserved": {"desk": 2}, "charged": 700, "shipping": 5.5},
    }


def test_run_an_invalid_order_takes_the_reject_branch() -> None:
    order = {"order_id": "C-3", "items": [{"sku": "piano", "qty": 1, "price": 1}]}
    proc = flowcraft("run", EXAMPLE, "--registry", REGISTRY, "--input", json.dumps(order), "--json")
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc)
    assert result["status"] == "completed"
    assert result["outputs"]["reject"] == {"order_id": "C-3", "rejected": ["unknown sku 'piano'"]}
    assert set(result["outputs"]) == {"validate", "reject"}


def test_run_without_json_prints_a_human_summary() -> None:
    order = (REPO / "examples" / "order.json").read_text()
    proc = flowcraft("run", EXAMPLE, "--registry", REGISTRY, "--input", order)
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout
    assert "shipped" in proc.stdout


# -- a registry of our own ------------------------------------------------------------------

NODES_MODULE = """
from flowcraft_core import Result


async def score(ctx):
    value = ctx.input["score"]
    return Result(output=ctx.input, action="high" if value >= 50 else "low")


def label(ctx):  # a sync node
    return {"label": ctx.params["label"], "got": ctx.input}


async def merge(ctx):
    return ctx.input


async def boom(ctx):
    raise RuntimeError("kaboom in " + ctx.node_id)


registry = {"score": score, "label": label, "merge": merge, "boom": boom}
"""

TS_BLUEPRINT: dict[str, Any] = {
    "id": "ts-form",
    "metadata": {"version": "1.0", "description": "written as Flowcraft (TypeScript) JSON"},
    "nodes": [
        {"id": "score", "uses": "score"},
        {"id": "high", "uses": "label", "params": {"label": "high"}},
        {"id": "low", "uses": "label", "params": {"label": "low"}},
        {"id": "bonus", "uses": "label", "params": {"label": "bonus"}},
        {"id": "first", "uses": "merge", "config": {"joinStrategy": "any"}},
        {
            "id": "every",
            "uses": "merge",
            "config": {"joinStrategy": "all", "maxRetries": 2, "retryDelay": 1, "timeout": 5000},
        },
    ],
    "edges": [
        {"source": "score", "target": "high", "action": "high", "transform": "input.score * 2"},
        {"source": "score", "target": "low", "action": "low"},
        {
            "source": "score",
            "target": "bonus",
            "action": "high",
            "condition": "result.output.score > 90",
        },
        {"source": "high", "target": "first", "transform": "input.label"},
        {"source": "low", "target": "first", "transform": "input.label"},
        {"source": "high", "target": "every"},
        {"source": "bonus", "target": "every", "transform": "input.got.name"},
        {"source": "low", "target": "every"},
    ],
}


def _expected(score: int) -> dict[str, Any]:
    scored = {"score": score, "name": "x"}
    if score < 50:
        low = {"label": "low", "got": scored}
        return {"score": scored, "low": low, "first": "low", "every": {"low": low}}
    high = {"label": "high", "got": score * 2}
    out: dict[str, Any] = {"score": scored, "high": high, "first": "high"}
    if score > 90:
        out["bonus"] = {"label": "bonus", "got": scored}
        out["every"] = {"high": high, "bonus": "x"}
    else:
        out["every"] = {"high": high}
    return out


@pytest.fixture
def nodes_dir(tmp_path: Path) -> Path:
    (tmp_path / "fc_cli_nodes.py").write_text(textwrap.dedent(NODES_MODULE))
    return tmp_path


def _write(path: Path, data: dict[str, Any]) -> str:
    if path.suffix in (".yaml", ".yml"):
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    else:
        path.write_text(json.dumps(data, indent=2))
    return str(path)


@pytest.mark.parametrize("score", [95, 60, 10])
def test_run_a_typescript_form_blueprint(nodes_dir: Path, score: int) -> None:
    blueprint = _write(nodes_dir / "ts.json", TS_BLUEPRINT)
    proc = flowcraft(
        "run",
        blueprint,
        "--registry",
        "fc_cli_nodes:registry",
        "--input",
        json.dumps({"score": score, "name": "x"}),
        "--json",
        pythonpath=nodes_dir,
    )
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc)
    assert result["status"] == "completed", result["error"]
    assert result["outputs"] == _expected(score)


def test_run_a_yaml_blueprint(nodes_dir: Path) -> None:
    blueprint = _write(nodes_dir / "ts.yaml", TS_BLUEPRINT)
    assert "joinStrategy: any" in Path(blueprint).read_text()
    proc = flowcraft(
        "run",
        blueprint,
        "--registry",
        "fc_cli_nodes:registry",
        "--input",
        '{"score": 95, "name": "x"}',
        "--json",
        pythonpath=nodes_dir,
    )
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc)["outputs"] == _expected(95)


def test_run_a_failing_blueprint(nodes_dir: Path) -> None:
    blueprint = _write(
        nodes_dir / "fails.json",
        {
            "id": "fails",
            "nodes": [
                {"id": "a", "uses": "merge"},
                {"id": "explode", "uses": "boom"},
                {"id": "never", "uses": "merge"},
            ],
            "edges": [
                {"source": "a", "target": "explode"},
                {"source": "explode", "target": "never"},
            ],
        },
    )
    proc = flowcraft(
        "run",
        blueprint,
        "--registry",
        "fc_cli_nodes:registry",
        "--input",
        '"in"',
        "--json",
        pythonpath=nodes_dir,
    )
    assert proc.returncode == 1, proc.stderr
    result = last_json(proc)
    assert result["status"] == "failed"
    assert result["outputs"] == {"a": "in"}
    error = result["error"]
    assert error["node"] == "explode"
    assert error["type"] == "RuntimeError"
    assert error["message"] == "kaboom in explode"
    assert "Traceback" in error["traceback"]


# -- usage errors (exit 2) ------------------------------------------------------------------

INVALID: dict[str, Any] = {
    "id": "invalid",
    "nodes": [
        {"id": "a", "uses": "merge"},
        {"id": "a", "uses": "merge"},
        {"id": "b", "uses": "merge"},
    ],
    "edges": [
        {"source": "a", "target": "ghost"},
        {"source": "a", "target": "b", "condition": "result.output >"},
    ],
}


def _assert_names_every_problem(stderr: str) -> None:
    assert "node 'a': duplicate node id" in stderr
    assert "edge a -> ghost: target 'ghost' is not a node" in stderr
    assert "edge a -> b: condition" in stderr
    assert "'result.output >'" in stderr


def test_run_an_invalid_blueprint_names_every_problem(nodes_dir: Path) -> None:
    blueprint = _write(nodes_dir / "invalid.json", INVALID)
    proc = flowcraft(
        "run", blueprint, "--registry", "fc_cli_nodes:registry", "--json", pythonpath=nodes_dir
    )
    assert proc.returncode == 2
    _assert_names_every_problem(proc.stderr)
    assert proc.stdout == ""


def test_validate_good_and_bad(nodes_dir: Path) -> None:
    good = flowcraft("validate", EXAMPLE)
    assert good.returncode == 0, good.stderr
    assert "'order-fulfilment' is valid (9 nodes, 11 edges)" in good.stdout
    with_registry = flowcraft("validate", EXAMPLE, "--registry", REGISTRY)
    assert with_registry.returncode == 0, with_registry.stderr

    bad = flowcraft("validate", _write(nodes_dir / "invalid.json", INVALID))
    assert bad.returncode == 2
    _assert_names_every_problem(bad.stderr)

    unknown_uses = flowcraft(
        "validate",
        _write(nodes_dir / "ts.json", TS_BLUEPRINT),
        "--registry",
        REGISTRY,  # the order registry lacks this blueprint's nodes
    )
    assert unknown_uses.returncode == 2
    assert "node 'score': unknown uses 'score'" in unknown_uses.stderr

    missing = flowcraft("validate", "no/such/file.json")
    assert missing.returncode == 2
    assert "no/such/file.json" in missing.stderr


def test_validate_reports_reader_and_structural_problems_together(nodes_dir: Path) -> None:
    data = json.loads(json.dumps(INVALID))
    data["nodes"][2]["config"] = {"joinStrategy": "most"}
    proc = flowcraft("validate", _write(nodes_dir / "mixed.json", data))
    assert proc.returncode == 2
    assert "node 'b': config.joinStrategy must be 'all' or 'any'" in proc.stderr
    _assert_names_every_problem(proc.stderr)


def test_unknown_uses_are_reported_with_the_reader_problems(nodes_dir: Path) -> None:
    """A blueprint that cannot be read whole still has its unknown ``uses`` named, by run and
    by validate --registry (every problem at once), and the webhook built-in, which this
    runtime does not provide, is explained."""
    data = json.loads(json.dumps(INVALID))
    data["nodes"][2]["config"] = {"joinStrategy": "most"}  # a reader problem
    data["nodes"] += [{"id": "n", "uses": "nope"}, {"id": "hook", "uses": "webhook"}]
    data["edges"] += [{"source": "b", "target": "n"}, {"source": "n", "target": "hook"}]
    path = _write(nodes_dir / "unknown.json", data)
    for command in ("run", "validate"):
        proc = flowcraft(command, path, "--registry", "fc_cli_nodes:registry", pythonpath=nodes_dir)
        assert proc.returncode == 2, proc.stderr
        assert "node 'b': config.joinStrategy must be 'all' or 'any'" in proc.stderr
        _assert_names_every_problem(proc.stderr)
        assert "node 'n': unknown uses 'nope'" in proc.stderr
        assert (
            "node 'hook': unknown uses 'webhook': Flowcraft's webhook built-in needs an HTTP "
            "endpoint" in proc.stderr
        )
        assert "use a 'wait' node and resume it from your HTTP handler" in proc.stderr


def test_bad_input_json_is_a_usage_error() -> None:
    proc = flowcraft("run", EXAMPLE, "--registry", REGISTRY, "--input", "{not json", "--json")
    assert proc.returncode == 2
    assert "--input is not valid JSON" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_fc:registry", "cannot import registry module 'no_such_module_fc'"),
        ("examples.orders", "--registry must look like MODULE:ATTR"),
        ("examples.orders:nothing_here", "has no attribute 'nothing_here'"),
        ("examples.orders:STOCK", "is not callable"),
    ],
)
def test_bad_registry_is_a_usage_error(spec: str, message: str) -> None:
    proc = flowcraft("run", EXAMPLE, "--registry", spec, "--json")
    assert proc.returncode == 2
    assert message in proc.stderr


def test_unknown_backend_is_a_usage_error() -> None:
    order = (REPO / "examples" / "order.json").read_text()
    proc = flowcraft(
        "run", EXAMPLE, "--registry", REGISTRY, "--input", order, "--backend", "memroy://"
    )
    assert proc.returncode == 2
    assert "Did you mean memory://?" in proc.stderr


# -- graph, drivers -------------------------------------------------------------------------


def test_graph_prints_a_mermaid_flowchart() -> None:
    proc = flowcraft("graph", EXAMPLE)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("flowchart")
    assert any("manager_approval" in line for line in lines)
    assert any("-->" in line for line in lines)


def test_graph_draws_a_loop_around_a_batch(tmp_path: Path) -> None:
    """Flowcraft's builder's JSON (the parity golden) drawn as what it means."""
    goldens = json.loads(Path("tests/builder_parity/goldens.json").read_text(encoding="utf-8"))
    path = tmp_path / "pages.json"
    path.write_text(json.dumps(goldens["blueprints"]["batch-in-loop"]), encoding="utf-8")
    proc = flowcraft("graph", str(path))
    assert proc.returncode == 0, proc.stderr
    assert '    n7{"pages<br/>loop-controller"}' in proc.stdout
    assert '    n7 ==>|"continue if save.hasMore === true"| n1' in proc.stdout
    assert '    n3@{ shape: procs, label: "Process<br/>per item" }' in proc.stdout


def test_drivers_lists_memory_and_redis() -> None:
    table = flowcraft("drivers")
    assert table.returncode == 0, table.stderr
    assert "memory://" in table.stdout
    assert "redis://" in table.stdout

    as_json = flowcraft("drivers", "--json")
    assert as_json.returncode == 0, as_json.stderr
    infos = {d["name"]: d for d in json.loads(as_json.stdout.strip().splitlines()[-1])}
    assert {"memory", "redis"} <= set(infos)
    assert infos["memory"]["schemes"] == ["memory"]
    assert "redis" in infos["redis"]["schemes"]
    assert set(infos["memory"]["provides"]) == {"queue", "context", "coordination"}
    assert isinstance(infos["memory"]["capabilities"], dict)


SLOW_MODULE = """
import asyncio
import pathlib
import threading
import time


def mark(what):  # when a node began or was cancelled (wall clock, read by the test process)
    with open(pathlib.Path(__file__).with_name(what), "a") as out:
        out.write(f"{time.time()}\\n")


async def slow(ctx):
    mark("started")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        mark("cancelled")
        raise
    return "late"


async def forever(ctx):
    mark("started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        mark("cancelled")
        raise


def forever_sync(ctx):  # a thread Python cannot stop
    mark("started")
    threading.Event().wait()


async def quick(ctx):
    return "now"


registry = {"slow": slow, "forever": forever, "forever_sync": forever_sync, "quick": quick}
"""


def run_timed(tmp_path: Path, uses: str, *args: str) -> tuple[float, Any]:
    (tmp_path / "fc_cli_slow.py").write_text(textwrap.dedent(SLOW_MODULE))
    blueprint = _write(
        tmp_path / f"{uses}.json",
        {"id": uses, "nodes": [{"id": "a", "uses": uses}, {"id": "b", "uses": uses}]},
    )
    started = time.monotonic()
    proc = flowcraft(
        "run",
        blueprint,
        "--registry",
        "fc_cli_slow:registry",
        "--json",
        *args,
        pythonpath=tmp_path,
    )
    return time.monotonic() - started, proc


#: Seconds a timed-out run may take, past its timeout, from its first node starting to the
#: process having exited (cancelling, reporting, interpreter exit). Generous, as a loaded CI
#: machine is slow to tear a process down; still far below what the nodes would take (30 s, or
#: forever, which the subprocess timeout of 60 s turns into a failure).
TIMEOUT_SLACK = 10.0


def test_run_without_timeout_leaves_nothing(tmp_path: Path) -> None:
    _, quick = run_timed(tmp_path, "quick")
    assert quick.returncode == 0, quick.stderr
    assert last_json(quick)["outputs"] == {"a": "now", "b": "now"}
    assert "leaving" not in quick.stderr


def stored_run(url: str, run_id: str) -> tuple[str, dict[str, str], int]:
    """What a durable backend holds of a run once its process has gone: the run's status,
    each node's status, and the jobs left in the queue."""
    from flowcraft_core import Client, open_backends

    async def look() -> tuple[str, dict[str, str], int]:
        client = Client(open_backends(url))
        try:
            history = await client.history(run_id)
            jobs = await client.backends.queue.size()
            return history.status, {n.node: n.status for n in history.nodes}, jobs
        finally:
            await client.close()

    return asyncio.run(look())


@pytest.mark.parametrize(
    ("uses", "timeout", "backend"),
    [
        ("slow", "1.0", "memory"),
        ("forever", "1.0", "memory"),
        ("forever_sync", "1.5", "memory"),
        ("forever", "1.0", "sqlite"),
        ("forever_sync", "1.5", "sqlite"),
    ],
)
def test_run_timeout_returns_on_time(tmp_path: Path, uses: str, timeout: str, backend: str) -> None:
    # The contract: a run that outlives --timeout returns about then, its nodes cancelled and
    # nothing of theirs committed. The nodes would take 30 s or forever; the bound (timeout +
    # TIMEOUT_SLACK) is timed from the first node's start (the nodes write it down), not from
    # the launch: the interpreter's start-up and imports are no part of the timeout, and under
    # load they vary by seconds.
    url = f"sqlite:///{tmp_path / 'runs.db'}" if backend == "sqlite" else "memory://"
    _, proc = run_timed(tmp_path, uses, "--timeout", timeout, "--backend", url)
    exited = time.time()
    stamps = [float(t) for t in (tmp_path / "started").read_text().split()]
    assert len(stamps) == 2, stamps  # both nodes were running when the timeout struck
    elapsed = exited - min(stamps)
    assert elapsed < float(timeout) + TIMEOUT_SLACK, (elapsed, proc.stderr)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"did not finish within {timeout} s; nodes still running were cancelled" in (proc.stderr)
    result = last_json(proc)
    assert result["status"] == "running"
    assert result["outputs"] == {}
    assert result["error"]["type"] == "Timeout"
    # Async nodes see their cancellation; only sync nodes' threads can be left behind (Python
    # cannot stop them): both, named.
    cancelled = tmp_path / "cancelled"
    if uses == "forever_sync":
        assert not cancelled.exists()
    else:
        assert len(cancelled.read_text().split()) == 2, "a node was not cancelled"
    left = "leaving 2 thread(s) of sync node code still running (abandoned)"
    assert (left in proc.stderr) == (uses == "forever_sync"), proc.stderr
    if backend == "sqlite":
        # What the file holds once the process has gone: nothing committed, nothing finished,
        # both jobs handed back to the queue for a worker to take up.
        assert stored_run(url, result["run_id"]) == ("running", {"a": "pending", "b": "pending"}, 2)
