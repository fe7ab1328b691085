"""Nothing outside a RunState implementation writes (or names) a run's bookkeeping keys.

The check reads every module of the packages: a reference to the run's key names
(``run_keys``, ``RunKeys``, ``ACTIVE_RUNS``, ``blueprint_key``) or a hand-built ``Op`` batch
is allowed only in a run state, the key layout itself, the coordination stores (which
implement ``Op``) and the protocol that defines it. The conformance suite's store contracts test
``Op`` itself, so there only the run's key names are checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [*sorted(p for p in ROOT.glob("flowcraft_*") if p.is_dir()), ROOT / "conformance"]
RUN_KEYS = {"run_keys", "RunKeys", "ACTIVE_RUNS", "blueprint_key"}
BOOKKEEPING = RUN_KEYS | {"Op"}
OWNERS = {"run_state.py", "state.py", "keys.py", "coordination.py"}
# Not run bookkeeping: the CLI's reachability check reads one key that no run uses.
PING = ("flowcraft_core", "cli", "common.py")


def names_used(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in BOOKKEEPING:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in BOOKKEEPING:
            used.add(node.attr)
    return used


def test_only_run_states_touch_a_runs_bookkeeping() -> None:
    offenders = {}
    for package in PACKAGES:
        for path in package.rglob("*.py"):
            rel = path.relative_to(ROOT)
            if path.name in OWNERS or rel.parts == PING:
                continue
            used = names_used(path)
            if package.name == "conformance":
                used &= RUN_KEYS
            if used:
                offenders[str(rel)] = sorted(used)
    assert offenders == {}, f"run bookkeeping outside a RunState implementation: {offenders}"


def test_the_check_sees_a_hand_built_batch(tmp_path: Path) -> None:
    sample = tmp_path / "client.py"
    sample.write_text("from x import keys\nops = [Op.add_member(keys.run_keys(r).activated, j)]\n")
    assert names_used(sample) == {"Op", "run_keys"}
