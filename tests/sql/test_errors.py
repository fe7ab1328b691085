"""Bad URLs, a missing driver package and an unreachable database: one line naming the
problem, from the API and from the CLI."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowcraft_core.errors import DriverError
from flowcraft_sql import SQLContextStore, SQLCoordinationStore, SQLQueue, parse_url

FLOWCRAFT = str(Path(sys.executable).parent / "flowcraft")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg"),
        ("mysql+pymysql://u@h/db", "mysql+asyncmy"),
        ("sqlite://host/runs.db", "has no host"),
        ("postgresql://u@h:5432", "names no database"),
        ("sqlite:///runs.db?lease=soon", "'lease'"),
        ("sqlite:///runs.db?prefix=a%20b", "'prefix'"),
        ("postgresql://u:secret@h:port/db", "not a valid database URL"),
    ],
)
def test_a_bad_url_is_one_line_naming_it(url: str, named: str) -> None:
    with pytest.raises(DriverError) as caught:
        parse_url(url)
    message = str(caught.value)
    assert "\n" not in message and named in message, message
    assert "secret" not in message  # passwords are never shown


async def test_a_missing_driver_package_names_it() -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import aiomysql  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("aiomysql is installed here")
    store = SQLContextStore("mysql+aiomysql://root@127.0.0.1:3306/test")
    with pytest.raises(DriverError) as caught:
        await store.get("r", "k")
    message = str(caught.value)
    assert "\n" not in message and "'aiomysql'" in message and "pip install" in message
    await store.close()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_a_refused_connection_is_one_line(scheme: str) -> None:
    url = f"{scheme}://root:pw@127.0.0.1:{closed_port()}/test"
    for component in (SQLContextStore(url), SQLCoordinationStore(url), SQLQueue(url)):
        with pytest.raises(DriverError) as caught:
            if isinstance(component, SQLQueue):
                await component.size()
            elif isinstance(component, SQLContextStore):
                await component.get("r", "k")
            else:
                await component.get("k")
        message = str(caught.value)
        assert "\n" not in message, message
        assert f"cannot use {scheme}://root:***@127.0.0.1" in message, message
        assert "pw@" not in message
        await component.close()


def test_the_cli_shows_an_unreachable_database_in_one_line() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    result = subprocess.run(
        [FLOWCRAFT, "status", "some-run", "--backend", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "cannot use postgresql://postgres@127.0.0.1" in lines[0], lines


async def test_a_schema_creation_that_meets_a_lock_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two workers opening a new SQLite file at once: one can meet "database is locked" while
    # the schema is created, which SQLite's busy timeout does not always absorb (CI saw a
    # worker exit on it). It is retried like any transaction, not shown.
    from sqlalchemy.exc import OperationalError

    from flowcraft_sql import schema

    calls = 0
    real = schema.migrate

    def locked_once(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("PRAGMA journal_mode", {}, Exception("database is locked"))
        return real(*args, **kwargs)

    monkeypatch.setattr("flowcraft_sql.database.migrate", locked_once)
    store = SQLContextStore(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        await store.set("run", "k", 1)
        assert await store.get("run", "k") == 1
    finally:
        await store.close()
    assert calls == 2


async def test_a_schema_creation_locked_for_good_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from flowcraft_sql import database

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("CREATE TABLE", {}, Exception("database is locked"))

    monkeypatch.setattr("flowcraft_sql.database.migrate", locked)
    monkeypatch.setattr(database, "RETRY_FOR", 0.2)
    store = SQLContextStore(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        with pytest.raises(DriverError) as caught:
            await store.get("run", "k")
    finally:
        await store.close()
    message = str(caught.value)
    assert "\n" not in message and "runs.db" in message and "database is locked" in message
