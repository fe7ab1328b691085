"""flowcraft's SQL driver on SQLAlchemy's asyncio layer: SQLite (embedded, durable, several
worker processes on one file), PostgreSQL and MariaDB/MySQL, with the same tables on all."""

from flowcraft_sql.context import SQLContextStore
from flowcraft_sql.coordination import SQLCoordinationStore
from flowcraft_sql.queue import SQLQueue
from flowcraft_sql.url import SQLSettings, parse_url

__all__ = ["SQLContextStore", "SQLCoordinationStore", "SQLQueue", "SQLSettings", "parse_url"]
