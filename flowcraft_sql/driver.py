"""The SQL driver's plugins: one per database family, so each declares its own capabilities
(PostgreSQL wakes waiters by LISTEN/NOTIFY, SQLite and MySQL poll, a declared capability).

Registered through the ``flowcraft.drivers`` entry point, exactly as a third-party driver would
be (``sqlite = "flowcraft_sql.driver:sqlite"`` and so on). The stores and queue built from one
URL in one process share one :class:`~flowcraft_sql.database.Database`.
"""

from __future__ import annotations

from typing import Any

from flowcraft_core.hookspecs import DriverInfo, hookimpl
from flowcraft_sql.context import SQLContextStore
from flowcraft_sql.coordination import SQLCoordinationStore
from flowcraft_sql.queue import MAX_BACKOFF, SQLQueue
from flowcraft_sql.run_state import SQLRunState
from flowcraft_sql.url import FAMILIES, Family, SQLSettings, family_of, parse_url

_DEFAULTS = SQLSettings(url="", family="sqlite", driver="", display="")

_DESCRIPTIONS: dict[Family, str] = {
    "sqlite": (
        "SQLite file (embedded, no server; several worker processes share it): jobs table, "
        "context and coordination rows. sqlite:///PATH[?prefix=&lease=&poll=&signal_poll=]"
    ),
    "postgresql": (
        "PostgreSQL (asyncpg): SKIP LOCKED jobs table, context and coordination rows, "
        "LISTEN/NOTIFY wake-ups (or Dramatiq: ?queue=dramatiq). "
        "postgresql://user:pw@host:port/db[?prefix=&lease=&poll=&queue=]"
    ),
    "mysql": (
        "MariaDB/MySQL (asyncmy): SKIP LOCKED jobs table, context and coordination rows. "
        "mysql://user:pw@host:port/db[?prefix=&lease=&poll=&signal_poll=]"
    ),
}


class SQLDriver:
    """The hooks of one database family."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self.schemes = tuple(s for s, f in FAMILIES.items() if f == family)

    def _settings(self, url: str) -> SQLSettings | None:
        return parse_url(url) if family_of(url) == self.family else None

    @hookimpl
    def flowcraft_driver_info(self) -> DriverInfo:
        capabilities: dict[str, Any] = {
            "delays": True,
            "ttl": True,
            "redelivery_after_crash_s": round(_DEFAULTS.lease + _DEFAULTS.poll, 3),
            "redelivery_after_error_s": round(MAX_BACKOFF + _DEFAULTS.poll + 0.5, 3),
            "delay_tolerance_s": 1.0,
            "multi_process": True,
            "isolation": "query:ns",
            "fault_injection": False,
        }
        if self.family != "postgresql":
            capabilities["signal_poll_s"] = _DEFAULTS.signal_poll
        return DriverInfo(
            name=f"sql-{self.family}",
            schemes=self.schemes,
            capabilities=capabilities,
            description=_DESCRIPTIONS[self.family],
        )

    @hookimpl
    def flowcraft_make_queue(self, url: str) -> Any:
        settings = self._settings(url)
        if settings is not None and settings.queue == "dramatiq":
            return dramatiq_queue(settings)
        return None if settings is None else SQLQueue(settings)

    @hookimpl
    def flowcraft_make_context(self, url: str) -> SQLContextStore | None:
        settings = self._settings(url)
        return None if settings is None else SQLContextStore(settings)

    @hookimpl
    def flowcraft_make_coordination(self, url: str) -> SQLCoordinationStore | None:
        settings = self._settings(url)
        return None if settings is None else SQLCoordinationStore(settings)

    @hookimpl
    def flowcraft_make_run_state(
        self, context: Any, coordination: Any, ttl: float
    ) -> SQLRunState | None:
        # Fusing needs both stores in one database (and namespace): one transaction spans them.
        if not (
            isinstance(context, SQLContextStore)
            and isinstance(coordination, SQLCoordinationStore)
            and context.db is coordination.db
            and context.ns == coordination.ns
            and coordination.db.family == self.family
        ):
            return None
        return SQLRunState(context, coordination, ttl=ttl)


def dramatiq_queue(settings: SQLSettings) -> Any:
    """``?queue=dramatiq``: Dramatiq on dramatiq-postgres's broker, within this driver's
    declared bounds (its backoff stops at the jobs table's, its crash bound is shorter)."""
    from flowcraft_dramatiq_postgres import (
        PostgresDramatiqQueue,
        PostgresQueueSettings,
        libpq_url,
        queue_name,
    )

    return PostgresDramatiqQueue(
        PostgresQueueSettings(
            url=libpq_url(settings.url),
            queue=queue_name(settings.prefix, settings.ns),
            poll=settings.poll,
            max_backoff=MAX_BACKOFF,
        )
    )


sqlite = SQLDriver("sqlite")
postgresql = SQLDriver("postgresql")
mysql = SQLDriver("mysql")
