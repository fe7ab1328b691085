"""Write the Mermaid chart (``flowcraft graph``) of every blueprint ``make mermaid-check`` parses
with Mermaid's own parser: Flowcraft's builder goldens (loops, nested loops, batches, a batch in a
loop, subflows), the examples, and a blueprint whose every text needs escaping.

usage: python tests/builder_parity/mermaid_charts.py OUTDIR   (prints the files written)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.builder import Flow
from flowcraft_core.graph import to_mermaid

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def hostile() -> Blueprint:
    odd = 'a "b" | <c> & `d` #e; {f} [g] (h) é/ü'
    return (
        Flow(odd)
        .node(odd, f"uses {odd}", fallback="fb")
        .node("fb", odd)
        .wait("w")
        .sleep("s", duration="1s")
        .batch(f"batch {odd}", f"worker {odd}", input_key=odd, output_key=odd, chunk_size=3)
        .subflow("sub", f"child {odd}")
        .edge(odd, f"batch {odd}", action=odd, condition=f"x === '{odd}'")
        .edge(f"batch {odd}", "w")
        .edge("w", "s")
        .edge("s", "sub")
        .loop(f"loop {odd}", start_node_id="w", end_node_id="sub", condition=f"n < 3 && '{odd}'")
        .edge(f"loop {odd}", "ghost")
        .to_blueprint()
    )


def charts() -> dict[str, Blueprint]:
    goldens = json.loads((HERE / "goldens.json").read_text(encoding="utf-8"))
    out = {f"golden-{name}": Blueprint.from_dict(bp) for name, bp in goldens["blueprints"].items()}
    for path in sorted((ROOT / "examples").rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "nodes" in data:
            out[f"example-{path.stem}"] = Blueprint.from_dict(data)
    out["hostile"] = hostile()
    return out


def main(outdir: str) -> None:
    target = Path(outdir)
    target.mkdir(parents=True, exist_ok=True)
    for name, bp in charts().items():
        path = target / f"{name}.mmd"
        path.write_text(to_mermaid(bp), encoding="utf-8")
        print(path)


if __name__ == "__main__":
    main(sys.argv[1])
