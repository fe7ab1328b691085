"""``--blueprints DIR`` on ``flowcraft run``: the catalog a run's subflows name, and its errors
(each naming the file), as a real subprocess."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .test_cli import REPO, flowcraft, last_json

INVOICE = "examples/subflows/invoice.json"
CATALOG = "examples/subflows"
NODES = "examples.subflow_nodes:registry"


def test_run_with_a_catalog() -> None:
    proc = flowcraft(
        "run",
        INVOICE,
        "--registry",
        NODES,
        "--blueprints",
        CATALOG,
        "--input",
        "[10, 20]",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    data = last_json(proc)
    assert data["outputs"]["grand"] == 36.0
    assert data["context"] == {"vat": 6.0}


def test_run_without_the_catalog_fails_naming_the_blueprint() -> None:
    proc = flowcraft("run", INVOICE, "--registry", NODES, "--input", "[1]", "--json")
    assert proc.returncode == 1
    error = last_json(proc)["error"]
    assert error["node"] == "tax" and "Sub-blueprint 'vat' not found" in error["message"]


def test_bad_catalogs_name_the_file(tmp_path: Path) -> None:
    shutil.copy(REPO / CATALOG / "vat.yaml", tmp_path / "a.yaml")
    shutil.copy(REPO / CATALOG / "vat.yaml", tmp_path / "b.yml")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("ignored: not a blueprint suffix")
    proc = flowcraft("run", INVOICE, "--registry", NODES, "--blueprints", str(tmp_path))
    assert proc.returncode == 2
    assert f"blueprint catalog {tmp_path} is invalid (2 problem(s))" in proc.stderr
    assert f"{tmp_path / 'b.yml'}: blueprint id 'vat' is also declared by " in proc.stderr
    assert f"{tmp_path / 'broken.json'}:" in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = flowcraft("run", INVOICE, "--registry", NODES, "--blueprints", str(tmp_path / "no"))
    assert missing.returncode == 2 and "--blueprints must name a directory" in missing.stderr


def test_a_catalog_without_the_named_blueprint_is_refused_up_front(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text(
        json.dumps({"id": "other", "nodes": [{"id": "x", "uses": "sum"}], "edges": []})
    )
    proc = flowcraft("run", INVOICE, "--registry", NODES, "--blueprints", str(tmp_path))
    assert proc.returncode == 2
    assert "node 'tax'" in proc.stderr
    assert "subflow names blueprint 'vat', which is not in the catalog (known: other)" in (
        proc.stderr
    )


def test_validate_with_a_catalog(tmp_path: Path) -> None:
    ok = flowcraft("validate", INVOICE, "--blueprints", CATALOG)
    assert ok.returncode == 0, ok.stderr
    assert "blueprint 'invoice' is valid" in ok.stdout
    (tmp_path / "loop.json").write_text(
        json.dumps(
            {
                "id": "loop",
                "nodes": [{"id": "again", "uses": "subflow", "params": {"blueprintId": "loop"}}],
                "edges": [],
            }
        )
    )
    bad = flowcraft("validate", str(tmp_path / "loop.json"), "--blueprints", str(tmp_path))
    assert bad.returncode == 2
    assert (
        "node 'again'" in bad.stderr and "includes itself (blueprints loop -> loop)" in bad.stderr
    )
    missing = flowcraft("validate", INVOICE, "--blueprints", str(tmp_path))
    assert missing.returncode == 2 and "names blueprint 'vat', which is not in" in missing.stderr
