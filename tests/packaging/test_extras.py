"""``pip install flowcraft`` without extras, for real: a fresh virtual environment with this
checkout (no dependencies) plus only pluggy, click, rich and PyYAML. The memory driver runs the
example; every driver and command whose extra is missing says which one to install."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE_ONLY = ["pluggy>=1.5", "click>=8.1", "rich>=13", "pyyaml>=6"]
OPTIONAL = ("redis", "hiredis", "dramatiq", "pika", "hypothesis", "pytest", "sqlalchemy")

# One xdist worker builds the bare venv once for the whole module (module-scoped fixture).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("bare-venv")]


def _env() -> dict[str, str]:
    # Nothing of this test process's environment may lend the child a module.
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("FLOWCRAFT")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(*args: str, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        args, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check:
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The bin directory of a virtual environment with flowcraft and its four dependencies."""
    root = tmp_path_factory.mktemp("bare-venv")
    venv.create(root, with_pip=True)
    bin_dir = root / "bin"
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    _run(*pip, "--no-deps", "-e", str(REPO), check=True)
    _run(*pip, *CORE_ONLY, check=True)
    yield bin_dir


def flowcraft(bare: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(str(bare / "flowcraft"), *args, timeout=60)


def test_the_environment_lacks_every_extra(bare: Path) -> None:
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    proc = _run(str(bare / "python"), "-c", probe, *OPTIONAL, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_core_and_memory_import_nothing_optional(bare: Path) -> None:
    code = (
        "import sys, flowcraft_core, flowcraft_core.cli.main, flowcraft_core.engine, "
        "flowcraft_memory, flowcraft_memory.driver\n"
        "from flowcraft_core.drivers import installed_drivers\n"
        "installed_drivers()\n"
        f"print(sorted(m for m in sys.modules if m.partition('.')[0] in {OPTIONAL!r}))"
    )
    proc = _run(str(bare / "python"), "-c", code, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout


def test_the_example_runs_on_memory(bare: Path) -> None:
    order = (REPO / "examples" / "order.json").read_text()
    proc = flowcraft(
        bare, "run", "examples/order_fulfilment.json", "--registry", "examples.orders:registry",
        "--input", order, "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no warning about the drivers it cannot load
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "completed"
    assert result["outputs"]["ship"] == {"status": "shipped", "approved_by": "policy"}


REDIS = "the redis driver needs the 'redis' extra: pip install 'flowcraft[redis]'"
AMQP = "the amqp driver needs the 'amqp' extra: pip install 'flowcraft[amqp]'"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/15", REDIS),
        ("rediss://:secret@cache.example:6380/0", REDIS),
        ("amqp://guest:guest@127.0.0.1:5672/", AMQP),
    ],
)
def test_a_driver_without_its_extra_names_it(bare: Path, url: str, message: str) -> None:
    proc = flowcraft(
        bare, "run", "examples/order_fulfilment.json", "--registry", "examples.orders:registry",
        "--backend", url,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"error: {message}\n"


def test_drivers_lists_what_is_missing(bare: Path) -> None:
    proc = flowcraft(bare, "drivers")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("│ memory") for line in lines), proc.stdout
    assert f"not available: redis (redis:// rediss://): {REDIS}" in lines, proc.stdout
    listed = json.loads(flowcraft(bare, "drivers", "--json").stdout)
    # The amqp driver imports without its extra (it defers pika), so it lists itself.
    assert {d["name"] for d in listed} <= {"memory", "amqp"}
    assert "memory" in {d["name"] for d in listed}


def test_conformance_without_its_extra_names_it(bare: Path) -> None:
    proc = flowcraft(bare, "conformance", "memory://")
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: flowcraft conformance needs the 'conformance' extra: "
        "pip install 'flowcraft[conformance]'\n"
    )
    helped = flowcraft(bare, "--help")
    assert helped.returncode == 0, helped.stderr
    assert "conformance" in helped.stdout


def test_ui_and_metrics_without_their_extras_name_them(bare: Path) -> None:
    proc = flowcraft(bare, "ui", "--backend", "memory://")
    assert proc.returncode != 0
    assert "pip install 'flowcraft[ui]'" in proc.stderr, proc.stderr
    proc = flowcraft(
        bare, "worker", "--registry", "examples.orders:registry", "--backend", "memory://",
        "--metrics-port", "9",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "pip install 'flowcraft[metrics]'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
