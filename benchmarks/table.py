"""``python -m benchmarks.table``: the table of BENCHMARKS.md, every configuration in one run
(so the ratios between them are measured on the same machine at the same time)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from benchmarks.memory import bench as memory_bench
from benchmarks.redis import bench as redis_bench

CONFIGS = [("chain", 20, 200), ("fanout", 20, 200), ("fanout", 500, 10), ("subflow-chain", 20, 50)]
COLUMNS = [
    "nodes_per_s",
    "p50_ms",
    "p95_ms",
    "peak_rss_mb",
    "messages_per_node",
    "round_trips_per_node",
    "bare_dramatiq_msgs_per_s",
    "ratio_to_bare",
]


def main(workers: int = 2) -> None:
    rows: list[dict[str, Any]] = []
    for shape, size, runs in CONFIGS:
        rows.append(asyncio.run(memory_bench(shape, size, runs)))
    for shape, size, runs in CONFIGS:
        rows.append(redis_bench(shape, size, runs, workers, 8, None))
    print("| driver | shape | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for row in rows:
        cells = [str(row.get(c, "n/a")) for c in COLUMNS]
        print(f"| {row['driver']} | {row['shape']}-{row['size']} | " + " | ".join(cells) + " |")
    by = {(r["driver"], r["shape"], r["size"]): r["nodes_per_s"] for r in rows}
    for driver in ("memory", "redis"):
        width = by[(driver, "fanout", 500)] / by[(driver, "fanout", 20)]
        print(f"\n{driver}: nodes/s fanout-500 / fanout-20 = {width:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
