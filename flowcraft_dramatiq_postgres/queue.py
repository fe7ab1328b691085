"""The shared Dramatiq queue on dramatiq-postgres's ``PostgresBroker`` (psycopg 3).

Jobs are JSONB rows of one table (``{schema}.queue``, created on first use), claimed with
``FOR UPDATE SKIP LOCKED``; a delayed job is a row whose ``available_at`` lies ahead, so nothing
holds it until it is due; a worker's claimed rows go back to the queue once its heartbeat row is
``heartbeat_ttl`` seconds old, at the next maintenance of a surviving consumer (every
``maintenance`` seconds). LISTEN/NOTIFY wakes consumers on enqueue; they also look every
``poll`` seconds, which bounds how late a delayed job is. Deployments on one database are kept
apart by the queue name.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from dramatiq.middleware import Middleware

from flowcraft_core.drivers import mask
from flowcraft_core.errors import DriverError
from flowcraft_core.protocols.queue import Handler
from flowcraft_dramatiq import DramatiqConsumer, DramatiqQueue
from flowcraft_dramatiq_postgres.consumer import PostgresConsumer

T = TypeVar("T")

#: Seconds to establish the first connection, so an unreachable server fails fast.
CONNECT_TIMEOUT = 5
#: dramatiq-postgres names a NOTIFY channel ``dramatiq.<queue>.DQ.enqueue``: PostgreSQL's
#: identifiers stop at 63 bytes.
MAX_QUEUE_NAME = 40

_schemas: set[str] = set()
_schemas_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class PostgresQueueSettings:
    """One deployment's Dramatiq queue on PostgreSQL. ``url`` is a libpq URL
    (``postgresql://user:password@host:port/db``)."""

    url: str
    queue: str = "flowcraft"
    schema: str = "flowcraft_dramatiq"
    poll: float = 0.1
    heartbeat: float = 1.0
    heartbeat_ttl: float = 5.0
    maintenance: float = 1.0
    max_backoff: float = 5.0
    """Longest backoff before a job whose handler raised is delivered again (seconds)."""

    @property
    def redelivery_bound(self) -> float:
        """Seconds within which a job is delivered again after its worker died: the heartbeat
        ages past ``heartbeat_ttl`` (one beat late at most), the next maintenance (jittered up
        to 1.5x its interval) requeues it, a poll claims it. A cancelled handler is redelivered
        like one that raised, which is sooner."""
        return self.heartbeat_ttl + self.heartbeat + 1.5 * self.maintenance + 2 * self.poll

    @property
    def redelivery_after_error(self) -> float:
        """A handler that raised has its job back after the longest backoff plus two polls."""
        return self.max_backoff + 2 * self.poll

    @property
    def masked(self) -> str:
        return mask(self.url)


class PostgresDramatiqQueue(DramatiqQueue):
    """Jobs delivered at least once, with delays, through dramatiq-postgres's broker (see the
    module docstring and :class:`~flowcraft_dramatiq.DramatiqQueue`). A database that refuses
    the connection is a :class:`DriverError` naming it, on first use."""

    driver = "postgresql"
    consumer_class = PostgresConsumer

    def __init__(self, settings: PostgresQueueSettings, *, threads: int = 4) -> None:
        try:
            from dramatiq_postgres.utils import make_pool
        except ImportError as exc:
            raise DriverError(
                f"Dramatiq queues on PostgreSQL need dramatiq-postgres ({exc}): "
                "pip install 'flowcraft[dramatiq-postgres]'"
            ) from None
        scheme, sep, _ = settings.url.partition("://")
        if not sep or scheme.lower() not in ("postgresql", "postgres"):
            raise DriverError(f"expected a postgresql:// URL, got {settings.masked!r}")
        if not 0 < len(settings.queue.encode()) <= MAX_QUEUE_NAME:
            raise DriverError(
                f"queue name {settings.queue!r} must be 1 to {MAX_QUEUE_NAME} bytes long"
            )
        # dramatiq-postgres keeps its SQL in one module-level object, built for one schema.
        with _schemas_lock:
            if _schemas and settings.schema not in _schemas:
                raise DriverError(
                    f"dramatiq-postgres serves one schema per process: {min(_schemas)!r} is in "
                    f"use, {settings.schema!r} was asked for"
                )
            _schemas.add(settings.schema)
        self.settings = settings
        self.pool = make_pool(settings.url)
        self._initialised = False
        super().__init__(
            queue_name=settings.queue,
            poll=settings.poll,
            max_backoff=settings.max_backoff,
            threads=threads,
        )

    def new_broker(self, middleware: list[Middleware]) -> Any:
        from dramatiq_postgres import PostgresBroker

        s = self.settings
        return PostgresBroker(
            pool=self.pool,
            results=False,
            schema=s.schema,
            poll_interval=s.poll,
            heartbeat_interval=s.heartbeat,
            heartbeat_ttl=s.heartbeat_ttl,
            maintenance_interval=s.maintenance,
            middleware=middleware,
        )

    def _init_schema(self) -> None:
        import psycopg
        from dramatiq_postgres.schema import init
        from dramatiq_postgres.utils import transaction

        # One plain connection first: the pool would retry a refused one for minutes.
        try:
            psycopg.connect(self.settings.url, connect_timeout=CONNECT_TIMEOUT).close()
        except psycopg.Error as exc:
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise DriverError(
                f"cannot reach PostgreSQL at {self.settings.masked}: {first}"
            ) from None
        with transaction(self.pool) as curs:
            init(curs, schema=self.settings.schema)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if not self._initialised:
            await super()._call(self._init_schema)
            self._initialised = True
        return await super()._call(fn, *args, **kwargs)

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> DramatiqConsumer:
        await self._call(lambda: None)  # the schema exists before consumers query it
        return await super().consume(handler, concurrency=concurrency)

    async def size(self) -> int:
        """Jobs of this deployment not yet acknowledged: waiting, delayed or claimed."""
        from dramatiq_postgres.utils import transaction
        from psycopg import sql

        query = sql.SQL(
            "SELECT count(*) FROM {}.queue WHERE queue_name IN (%s, %s) AND state <> 'rejected'"
        ).format(sql.Identifier(self.settings.schema))

        def count() -> int:
            with transaction(self.pool) as curs:
                curs.execute(query, (self.queue_name, f"{self.queue_name}.DQ"))
                row = curs.fetchone()
            return int(row[0]) if row else 0

        return await self._call(count)

    async def purge(self) -> None:
        """Delete every row of this deployment's queues (tests)."""
        from dramatiq_postgres.utils import transaction
        from psycopg import sql

        query = sql.SQL("DELETE FROM {}.queue WHERE queue_name IN (%s, %s, %s)").format(
            sql.Identifier(self.settings.schema)
        )

        def purge() -> None:
            with transaction(self.pool) as curs:
                curs.execute(query, [self.queue_name + s for s in ("", ".DQ", ".XQ")])

        await self._call(purge)

    async def close(self) -> None:
        await super().close()
        self.pool.close()


def queue_name(*parts: str) -> str:
    """A deployment's queue name from its parts (``prefix``, namespace), joined by ``-``;
    shortened with a digest of the whole when longer than :data:`MAX_QUEUE_NAME` bytes, so
    distinct deployments keep distinct names."""
    name = "-".join(p for p in parts if p)
    if len(name.encode()) <= MAX_QUEUE_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return name.encode()[: MAX_QUEUE_NAME - 13].decode(errors="ignore") + "-" + digest


def libpq_url(url: str) -> str:
    """``url`` (a SQLAlchemy URL, ``postgresql+asyncpg://...?options``) as psycopg takes it:
    the plain scheme, user, password, host, port and database; dialect options dropped."""
    parts = urlsplit(url)
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))
