"""``python -m benchmarks.table``: the table of BENCHMARKS.md, every configuration in one run
(so the ratios between them are measured on the same machine at the same time)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from typing import Any

from benchmarks.memory import bench as memory_bench
from benchmarks.redis import bench as redis_bench
from benchmarks.redis import bench_url

CONFIGS = [("chain", 20, 200), ("fanout", 20, 200), ("fanout", 500, 10), ("subflow-chain", 20, 50)]
#: The SQL backends make more round trips per node, each slower than Redis's: fewer runs.
SQL_CONFIGS = [("chain", 20, 50), ("fanout", 20, 50), ("fanout", 500, 2)]
POSTGRES = os.environ.get(
    "FLOWCRAFT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def sql_rows(workers: int) -> list[dict[str, Any]]:
    """Our ``sqlite:///`` (a file in a temporary directory) and ``postgresql://`` (tables of
    a fresh prefix, dropped afterwards) backends, W worker processes with 8 jobs each."""
    from benchmarks.peers.__main__ import _drop_sql

    rows: list[dict[str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="flowcraft-bench-sql-")
    try:
        for shape, size, runs in SQL_CONFIGS:
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            url = f"sqlite:///{tmp}/{prefix}.db?prefix={prefix}"
            rows.append(bench_url(url, shape, size, runs, workers, 8))
        for shape, size, runs in SQL_CONFIGS:
            prefix = f"bench{uuid.uuid4().hex[:8]}"
            url = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}prefix={prefix}"
            try:
                rows.append(bench_url(url, shape, size, runs, workers, 8))
            finally:
                asyncio.run(_drop_sql(url, prefix))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


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
    rows += sql_rows(workers)
    print("| driver | shape | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for row in rows:
        cells = [str(row.get(c, "n/a")) for c in COLUMNS]
        print(f"| {row['driver']} | {row['shape']}-{row['size']} | " + " | ".join(cells) + " |")
    by = {(r["driver"], r["shape"], r["size"]): r["nodes_per_s"] for r in rows}
    for driver in ("memory", "redis", "sqlite", "postgresql"):
        width = by[(driver, "fanout", 500)] / by[(driver, "fanout", 20)]
        print(f"\n{driver}: nodes/s fanout-500 / fanout-20 = {width:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
