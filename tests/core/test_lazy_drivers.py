"""Drivers are imported when a URL of theirs is used, not at start-up: a ``memory://`` run (the
CLI's, in a process of its own) imports neither SQLAlchemy nor redis-py nor Dramatiq, and a
driver whose extra is missing still names it. Each check runs in a fresh interpreter, as what a
process has imported is the point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from flowcraft_core.plugins import default_manager, new_manager
from flowcraft_memory import MemoryCoordinationStore
from flowcraft_sql import SQLQueue

REPO = Path(__file__).resolve().parents[2]

# What drivers other than memory bring: their modules and their dependencies.
HEAVY = (
    "sqlalchemy",
    "aiosqlite",
    "asyncpg",
    "asyncmy",
    "redis",
    "hiredis",
    "dramatiq",
    "pika",
    "psycopg",
    "dramatiq_postgres",
    "prometheus_client",
    "flowcraft_redis",
    "flowcraft_sql",
    "flowcraft_amqp",
    "flowcraft_dramatiq",
    "flowcraft_dramatiq_postgres",
)

REPORT = f"""
import json, sys
def heavy():
    return sorted({{m.partition(".")[0] for m in sys.modules}} & set({HEAVY!r}))
"""


def python(code: str) -> Any:
    """Run ``code`` (after :data:`REPORT`) in a fresh interpreter in the repository; its last
    stdout line, as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", REPORT + code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_memory_run_of_the_cli_imports_no_other_driver() -> None:
    order = (REPO / "examples" / "order.json").read_text()
    args = [
        "run", "examples/order_fulfilment.json", "--registry", "examples.orders:registry",
        "--input", order, "--json",
    ]  # fmt: skip
    out = python(
        "from flowcraft_core.cli.main import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
        "print()\n"
        "print(json.dumps([code, heavy()]))\n"
    )
    assert out == [0, []]


def test_a_url_imports_its_own_driver_only() -> None:
    out = python(
        "from flowcraft_core.drivers import driver_for, open_backends\n"
        "open_backends('memory://')\n"
        "seen = [heavy()]\n"
        "driver_for('rediss://cache.example:6380/0')\n"
        "seen.append(heavy())\n"
        "print(json.dumps(seen))\n"
    )
    assert out[0] == []
    assert "flowcraft_redis" in out[1] and "redis" in out[1]
    assert not {"sqlalchemy", "flowcraft_sql", "pika", "flowcraft_amqp"} & set(out[1])


def test_listing_the_drivers_imports_them_all() -> None:
    out = python(
        "from flowcraft_core.drivers import installed_drivers\n"
        "names = [i.name for i in installed_drivers()]\n"
        "print(json.dumps([names, heavy()]))\n"
    )
    names, heavy = out
    assert {"memory", "redis", "amqp", "sql-sqlite", "sql-postgresql"} <= set(names)
    assert {"flowcraft_redis", "flowcraft_sql", "flowcraft_amqp"} <= set(heavy)


def test_a_driver_without_its_module_still_names_its_extra() -> None:
    # redis-py cannot be imported in this interpreter, as without the redis extra.
    out = python(
        "import logging\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "sys.modules['redis'] = None\n"
        "from flowcraft_core.drivers import driver_for, open_backends, unavailable_drivers\n"
        "from flowcraft_core.errors import DriverError\n"
        "open_backends('memory://')\n"
        "said = []\n"
        "for url in ('redis://127.0.0.1/0', 'rediss://:pw@h/0', 'memroy://'):\n"
        "    try:\n"
        "        driver_for(url)\n"
        "    except DriverError as exc:\n"
        "        said.append(str(exc))\n"
        "gone = [(d.name, list(d.schemes), d.reason) for d in unavailable_drivers()]\n"
        "print(json.dumps([said, gone]))\n"
    )
    said, gone = out
    needs = "the redis driver needs the 'redis' extra: pip install 'flowcraft[redis]'"
    assert said[:2] == [needs, needs]
    assert said[2].startswith("no installed driver handles memroy:// (from 'memroy://').")
    assert "Did you mean memory://?" in said[2]
    assert "memory (memory://)" in said[2] and "redis (" not in said[2]
    assert "sql-sqlite (sqlite://)" in said[2]
    assert gone == [["redis", ["redis", "rediss"], needs]]


def test_the_hooks_reach_a_driver_not_imported_yet() -> None:
    """The driver hooks called directly, as the conformance suite's child processes do: a
    URL of a driver's scheme imports it, another's leaves it alone."""
    from flowcraft_core.plugins import LazyDriver

    pm = new_manager()
    lazy = {name: plugin for name, plugin in pm.list_name_plugin()}
    assert isinstance(lazy["redis"], LazyDriver) and lazy["redis"].schemes == {"redis", "rediss"}
    sql = lazy["sqlite"]
    assert isinstance(sql, LazyDriver) and not sql.loaded
    assert isinstance(
        pm.hook.flowcraft_make_coordination(url="memory://lazy"), MemoryCoordinationStore
    )
    assert not sql.loaded and not lazy["redis"].loaded
    queue = pm.hook.flowcraft_make_queue(url="sqlite:///:memory:")
    assert isinstance(queue, SQLQueue)
    assert sql.loaded and not lazy["redis"].loaded
    assert default_manager().hook.flowcraft_discard(url="memory://lazy") is True
