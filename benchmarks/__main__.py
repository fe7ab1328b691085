"""``python -m benchmarks``: see the package docstring."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--driver", choices=("memory", "redis", "sql"), required=True)
    parser.add_argument(
        "--shape", choices=("chain", "fanout", "subflow-chain", "loop", "batch"), required=True
    )
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (redis)")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at a time per worker")
    parser.add_argument(
        "--url", default=None, help="backend URL (redis: default the test Redis; sql: required)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object as last line")
    args = parser.parse_args(argv)
    result: dict[str, Any]
    if args.driver == "memory":
        from benchmarks.memory import bench

        result = asyncio.run(bench(args.shape, args.size, args.runs))
    elif args.driver == "sql":
        from benchmarks.redis import bench_url

        if not args.url:
            parser.error("--driver sql needs --url sqlite:///PATH or postgresql://...")
        result = bench_url(
            args.url, args.shape, args.size, args.runs, args.workers, args.concurrency
        )
    else:
        from benchmarks.redis import bench as redis_bench

        result = redis_bench(
            args.shape, args.size, args.runs, args.workers, args.concurrency, args.url
        )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
