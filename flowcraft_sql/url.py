"""SQL driver settings, parsed from a ``sqlite://``, ``postgresql://``, ``mysql://`` or
``mariadb://`` URL, with SQLAlchemy's conventions (``+driver`` allowed).

``sqlite:///PATH`` (``sqlite:///:memory:`` for tests), ``postgresql://user:pw@host:port/db``,
``mysql://user:pw@host:port/db``; plain schemes use the asyncio driver of each database
(:data:`ASYNC_DRIVERS`). flowcraft's own options go in the query string (see
:class:`SQLSettings`); anything else in the query is passed to SQLAlchemy's dialect.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from flowcraft_core.errors import DriverError

Family = Literal["sqlite", "postgresql", "mysql"]

#: URL scheme (before any ``+driver``) → database family.
FAMILIES: dict[str, Family] = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
}
#: The asyncio drivers each family accepts; the first is used for a plain scheme and is the
#: one the ``sql`` extra installs.
ASYNC_DRIVERS: dict[Family, tuple[str, ...]] = {
    "sqlite": ("aiosqlite",),
    "postgresql": ("asyncpg",),
    "mysql": ("asyncmy", "aiomysql"),
}
#: Python package of each driver, for "install X" errors.
PACKAGES = {
    "aiosqlite": "aiosqlite",
    "asyncpg": "asyncpg",
    "asyncmy": "asyncmy",
    "aiomysql": "aiomysql",
}

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*$")


def duration(text: str) -> float:
    """Seconds from ``"2"``, ``"250ms"``, ``"5s"`` or ``"1m"``; positive and finite."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration such as 2, 250ms, 5s or 1m, got {text!r}")
    value = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive duration, got {text!r}")
    return value


def _name(text: str) -> str:
    if not _NAME.match(text):
        raise ValueError(f"expected 1-40 letters, digits, '_' or '-', got {text!r}")
    return text


def _queue_kind(text: str) -> str:
    if text not in ("table", "dramatiq"):
        raise ValueError(f"expected 'table' or 'dramatiq', got {text!r}")
    return text


_OPTIONS = {
    "queue": _queue_kind,
    "prefix": _name,
    "ns": _name,
    "lease": duration,
    "poll": duration,
    "signal_poll": duration,
}


@dataclass(frozen=True, slots=True)
class SQLSettings:
    """Everything the SQL driver needs to know about one deployment. Every process of a
    deployment should use the same URL."""

    url: str
    """The SQLAlchemy URL, with the asyncio driver and without flowcraft's options."""
    family: Family
    driver: str
    display: str
    """The URL as shown in messages (password hidden)."""
    prefix: str = "flowcraft"
    """Table names start with ``{prefix}_``: several deployments can share one database."""
    ns: str = ""
    """A namespace inside the tables (the conformance suite isolates its tests with it)."""
    lease: float = 10.0
    """Seconds a claimed job stays invisible to other consumers without a heartbeat (renewed
    every third of it): a dead worker's jobs come back within this."""
    poll: float = 0.1
    """Longest sleep of an idle consumer between looks at the jobs table. PostgreSQL wakes
    consumers by NOTIFY; this still bounds the pickup of delayed jobs."""
    signal_poll: float = 0.05
    """Seconds between looks at the signals table for signals from other processes, on
    databases without LISTEN/NOTIFY (signals within one process wake at once)."""
    queue: str = "table"
    """``table``: the driver's own jobs table; ``dramatiq`` (PostgreSQL only): Dramatiq on
    dramatiq-postgres's broker (:mod:`flowcraft_dramatiq_postgres`)."""

    @property
    def memory(self) -> bool:
        """An SQLite in-memory database (one per process: nothing is shared between them)."""
        database = make_url(self.url).database
        return self.family == "sqlite" and database in (None, "", ":memory:")


def family_of(url: str) -> Family | None:
    """The family whose scheme ``url`` has, or None if it is not a SQL URL."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    return FAMILIES.get(scheme.split("+", 1)[0])


def parse_url(text: str) -> SQLSettings:
    """Settings from ``text``; a :class:`DriverError` naming the URL and the problem if bad."""
    family = family_of(text)
    shown = _hide_password(text)
    if family is None:
        raise DriverError(
            f"{shown}: not a SQL URL (sqlite://, postgresql://, mysql://, mariadb://)"
        )
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise DriverError(f"{shown}: not a valid database URL ({exc})") from None
    scheme, _, driver = url.drivername.partition("+")
    accepted = ASYNC_DRIVERS[family]
    if not driver:
        driver = accepted[0]
    elif driver not in accepted:
        raise DriverError(
            f"{shown}: flowcraft's SQL driver needs an asyncio driver for {scheme}, one of "
            + ", ".join(f"{scheme}+{d}" for d in accepted)
            + f", not {scheme}+{driver}"
        )
    options: dict[str, object] = {}
    query = dict(url.query)
    for key in list(query):
        parse = _OPTIONS.get(key)
        if parse is None:
            continue
        raw = query.pop(key)
        value = raw[-1] if isinstance(raw, tuple) else raw
        try:
            options[key] = parse(value)
        except ValueError as exc:
            raise DriverError(f"{shown}: bad value for {key!r}: {exc}") from None
    if options.get("queue") == "dramatiq" and family != "postgresql":
        raise DriverError(f"{shown}: queue=dramatiq needs postgresql:// (dramatiq-postgres)")
    if family == "sqlite":
        if url.host or url.port:
            raise DriverError(
                f"{shown}: an SQLite URL has no host; use sqlite:///relative/path.db, "
                "sqlite:////absolute/path.db or sqlite:///:memory:"
            )
    elif not url.database:
        raise DriverError(f"{shown}: the URL names no database (…/DATABASE at the end)")
    if family == "mysql":
        query.setdefault("charset", "utf8mb4")  # values are unicode; MariaDB's default is not
    sa_url: URL = url.set(drivername=f"{scheme}+{driver}", query=query)
    return SQLSettings(
        url=sa_url.render_as_string(hide_password=False),
        family=family,
        driver=driver,
        display=shown,
        **options,  # type: ignore[arg-type]
    )


def _hide_password(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", text)
