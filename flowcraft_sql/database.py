"""One database of the SQL driver, shared by the stores and queues of a URL in a process.

It owns the SQLAlchemy engine (one per event loop: asyncio connections belong to the loop
that opened them), creates or migrates the schema on first use, runs transactions, takes the
coordination locks, and carries wake-ups: within a process at once, between processes by
LISTEN/NOTIFY on PostgreSQL and by polling elsewhere.

Transactions, per database:

* **SQLite**: one writer at a time. A write transaction starts with ``BEGIN IMMEDIATE`` (the
  write lock before anything is read, so two writers never deadlock upgrading a read lock), the
  writers of one process queue on an asyncio lock rather than on SQLite's busy handler, and the
  file is in WAL mode so readers never wait for writers. Another process holding the lock is
  waited for by SQLite's busy timeout, and a ``database is locked`` that still gets through is
  retried, never shown.
* **PostgreSQL, MariaDB/MySQL**: READ COMMITTED, with the coordination locks of
  :meth:`Database.lock` where a transaction reads before it writes. A deadlock or serialization
  failure is retried.

Lock order. A coordination key is locked through its lock slot, a row of ``{prefix}_locks``
(:func:`lock_slot`), held until the transaction ends. Two transactions that take slots in
different orders can each hold what the other waits for: a deadlock, which the server breaks by
aborting one, and the retry of the same steps meets the same cycle again (``make bench-peers``
once saw ``Client.start`` fail after retrying for :data:`RETRY_FOR` seconds: a start locked the
run index's "running" sets then ``runs:active`` in one sorted statement, while a finishing run
held ``runs:active`` and waited, in its next statement, for those index sets). Sorting the slots
of one statement is not enough when another transaction takes its slots in several. So slots
are in levels, each a range of its own, and every transaction follows one rule, which
:meth:`Database.lock` enforces (a breach raises :class:`LockOrderError`, on SQLite too, so any
test of a path that breaks it fails whatever the keys hash to):

1. **a run's keys** (``run:<id>:…``, one slot per run: slots ``0 … LOCK_SLOTS-1``), then
2. **shared keys** (``runs:active``, the run index, blueprints, any other key: slots
   ``LOCK_SLOTS … 2*LOCK_SLOTS-1``),

each level in at most one statement (its slots sorted), never a level after a higher one. Then
every transaction takes slots in ascending order (a run's finish locks its run, then
``runs:active`` and every index set it moves between together), and a wait for a slot is only
ever for a higher slot than any held, so no cycle can form. A statement may name slots the
transaction holds already: only the new ones are locked. The rows no slot guards (context,
expiry, signals) a slot holder writes are its run's, under its run's slot, which every other
slot holder writing them takes first; a transaction holding no slot never waits for one, so it
closes no cycle with them (which is why the sweep deletes expired signals in a transaction of
its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import weakref
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeVar

from sqlalchemy import event, or_, select, tuple_
from sqlalchemy.engine import Transaction
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from flowcraft_core.errors import BackendUnavailable, DriverError
from flowcraft_sql import schema
from flowcraft_sql.schema import LOCK_LEVELS, LOCK_SLOTS, Tables, advisory_lock_sql, migrate, tables
from flowcraft_sql.url import PACKAGES, SQLSettings

log = logging.getLogger("flowcraft.sql")
T = TypeVar("T")

#: Seconds SQLite waits for another process's write lock before raising "database is locked".
BUSY_TIMEOUT = 30.0
#: Seconds a transaction that keeps failing transiently (lock, deadlock) is retried before the
#: error is raised.
RETRY_FOR = 60.0
#: Seconds between sweeps of expired rows, per process.
SWEEP_EVERY = 30.0

_TRANSIENT = (
    "database is locked",
    "database table is locked",
    "deadlock",
    "could not serialize",
    "lock wait timeout",
    "try restarting transaction",
)


def lock_group(key: str) -> str:
    """What a coordination key is locked by: its run for ``run:<id>:…`` keys, so one run's
    bookkeeping is one lock, else the key itself. A pure function of the key: every path that
    touches a key takes the same lock."""
    if key.startswith("run:"):
        end = key.find(":", 4)
        if end > 0:
            return key[:end]
    return key


#: The lock levels, in the order a transaction takes them (see "Lock order" above).
RUN_LEVEL, SHARED_LEVEL = range(LOCK_LEVELS)


def lock_level(key: str) -> int:
    """A key's lock level: :data:`RUN_LEVEL` for a run's keys, else :data:`SHARED_LEVEL`."""
    return RUN_LEVEL if lock_group(key) != key else SHARED_LEVEL


def lock_slot(key: str) -> int:
    """A key's lock slot: ``crc32`` of its lock group, in its level's range of slots."""
    crc = zlib.crc32(lock_group(key).encode("utf-8")) % LOCK_SLOTS
    return lock_level(key) * LOCK_SLOTS + crc


class LockOrderError(DriverError):
    """A transaction asked for coordination locks against the lock order (a bug of the
    driver: see "Lock order" in :mod:`flowcraft_sql.database`)."""


class _Held:
    """The lock slots one transaction holds, and the highest level it has locked."""

    __slots__ = ("level", "slots")

    def __init__(self) -> None:
        self.slots: set[int] = set()
        self.level = -1


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lock conflict worth retrying (the transaction did nothing)."""
    message = str(getattr(exc, "orig", exc)).lower()
    return any(marker in message for marker in _TRANSIENT)


def one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return (text[0] if text else type(orig).__name__)[:300]


class Database:
    """Engines, schema, transactions and wake-ups for one URL (see the module docstring)."""

    def __init__(self, settings: SQLSettings) -> None:
        self.settings = settings
        self.family = settings.family
        self.tables: Tables = tables(settings.prefix)
        self._engines: dict[asyncio.AbstractEventLoop, AsyncEngine] = {}
        self._starting: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._write_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._listeners: dict[asyncio.AbstractEventLoop, Any] = {}
        self._listen_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._pollers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._users = 0
        self._last_sweep = time.monotonic()
        # Wake-ups inside this process: by (ns, signal key), and "jobs may be due" by ns.
        self._signal_waiters: dict[tuple[str, str], set[asyncio.Future[str]]] = {}
        self._job_events: dict[str, set[asyncio.Event]] = {}

    # -- users --------------------------------------------------------------------------------

    def acquire(self) -> Database:
        self._users += 1
        return self

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            await self.dispose()

    async def dispose(self) -> None:
        loop = asyncio.get_running_loop()
        poller = self._pollers.pop(loop, None)
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        listener = self._listeners.pop(loop, None)
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()
        engine = self._engines.pop(loop, None)
        self._starting.pop(loop, None)
        self._listen_locks.pop(loop, None)
        if engine is not None:
            await engine.dispose()

    # -- engine -------------------------------------------------------------------------------

    async def engine(self) -> AsyncEngine:
        """This loop's engine, created (and the schema brought up to date) on first use."""
        loop = asyncio.get_running_loop()
        engine = self._engines.get(loop)
        if engine is not None:
            return engine
        starting = self._starting.setdefault(loop, asyncio.Lock())
        async with starting:
            engine = self._engines.get(loop)
            if engine is None:
                engine = self._create_engine()
                try:
                    await self._prepare(engine)
                except BaseException:
                    await engine.dispose()
                    raise
                self._engines[loop] = engine
        return engine

    def _create_engine(self) -> AsyncEngine:
        s = self.settings
        kwargs: dict[str, Any] = {}
        if self.family == "sqlite":
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT, "check_same_thread": False}
            if s.memory:
                kwargs["poolclass"] = StaticPool  # one connection is the whole database
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_recycle=1800)
            kwargs["isolation_level"] = "READ COMMITTED"
            if self.family == "postgresql":
                kwargs["connect_args"] = {"timeout": 10}
            else:
                kwargs["connect_args"] = {"connect_timeout": 10}
        try:
            engine = create_async_engine(s.url, **kwargs)
        except ModuleNotFoundError as exc:
            package = PACKAGES.get(s.driver, exc.name or s.driver)
            raise DriverError(
                f"{s.display} needs the Python package {package!r}: "
                "pip install 'flowcraft[sql]'"
                + ("" if package in ("aiosqlite", "asyncpg", "asyncmy") else f" {package}")
            ) from None
        if self.family == "sqlite":
            memory = s.memory

            @event.listens_for(engine.sync_engine, "connect")
            def _connect(dbapi_connection: Any, record: Any) -> None:
                # SQLAlchemy, not the sqlite3 module, decides when transactions begin.
                dbapi_connection.isolation_level = None
                cursor = dbapi_connection.cursor()
                cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                if not memory:
                    cursor.execute("PRAGMA journal_mode = WAL")
                    # Durable against a crashed process (what matters here), not a power cut.
                    cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.close()

            @event.listens_for(engine.sync_engine, "begin")
            def _begin(conn: Any) -> None:
                read = conn.get_execution_options().get("flowcraft_read", False)
                conn.exec_driver_sql("BEGIN" if read else "BEGIN IMMEDIATE")

        return engine

    async def _prepare(self, engine: AsyncEngine) -> None:
        """Create or migrate the schema, under the database-wide migration lock (once per
        process and database: an engine made later finds it done)."""
        done = (self.settings.url, self.settings.prefix, schema.VERSION)
        if done in _prepared and not self.settings.memory:
            return
        try:
            # Retried like any transaction: two processes opening a new SQLite file at once
            # can meet "database is locked" here that SQLite's busy timeout does not absorb
            # (switching the file to WAL), and a worker must not exit on it.
            await self._retrying(lambda: self._migrate(engine))
        except DriverError:
            raise
        except (DBAPIError, OSError) as exc:
            raise self.unreachable(exc) from None
        _prepared.add(done)

    async def _migrate(self, engine: AsyncEngine) -> None:
        statements = advisory_lock_sql(self.family, self.settings.prefix)
        where = self.settings.display
        async with engine.connect() as conn:
            if self.family == "mysql" and statements is not None:
                # MySQL's DDL commits by itself: a named lock spans the whole migration.
                await conn.execute(statements[0])
                try:
                    await conn.commit()
                    await conn.run_sync(lambda c: migrate(c, self.tables, where=where))
                    await conn.commit()
                finally:
                    await conn.execute(statements[1])
                    await conn.commit()
                return
            async with conn.begin():
                if statements is not None:
                    await conn.execute(statements[0])
                await conn.run_sync(lambda c: migrate(c, self.tables, where=where))

    def unreachable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(f"cannot use {self.settings.display}: {one_line(exc)}")

    # -- transactions -------------------------------------------------------------------------

    def _write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._write_locks.get(loop)
        if lock is None:
            lock = self._write_locks[loop] = asyncio.Lock()
        return lock

    async def run(self, fn: Callable[[AsyncConnection], Awaitable[T]], *, write: bool = True) -> T:
        """``fn(conn)`` in one transaction, committed when it returns, rolled back if it
        raises. Lock conflicts are retried with backoff for up to :data:`RETRY_FOR` seconds;
        ``fn`` must therefore have no effect outside the transaction."""
        engine = await self.engine()

        async def once() -> T:
            if self.family == "sqlite" and (write or self.settings.memory):
                async with self._write_lock():
                    return await self._once(engine, fn, write)
            return await self._once(engine, fn, write)

        return await self._retrying(once)

    async def _retrying(self, once: Callable[[], Awaitable[T]]) -> T:
        """``once()``, again with backoff while it fails transiently (a lock, a deadlock) for
        up to :data:`RETRY_FOR` seconds; a lost connection or server raises
        :class:`BackendUnavailable` naming the URL."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await once()
            except DBAPIError as exc:
                if transient(exc) and time.monotonic() - started < RETRY_FOR:
                    await asyncio.sleep(min(0.5, 0.005 * 2**attempt) * random.uniform(0.5, 1.5))
                    continue
                if exc.connection_invalidated or isinstance(exc, OperationalError):
                    raise self.unreachable(exc) from exc
                raise
            except OSError as exc:
                raise self.unreachable(exc) from exc

    async def _once(
        self, engine: AsyncEngine, fn: Callable[[AsyncConnection], Awaitable[T]], write: bool
    ) -> T:
        async with engine.connect() as conn:
            if not write and self.family == "sqlite":
                await conn.execution_options(flowcraft_read=True)
            async with conn.begin():
                return await fn(conn)

    async def lock(self, conn: AsyncConnection, keys: Iterable[str]) -> None:
        """Serialise this transaction with every other touching the same coordination keys
        (their lock groups), until it ends, in one statement. Raises :class:`LockOrderError`
        if the keys' slots not held yet include one of a level this transaction has locked
        already, or of a lower one (the lock order of the module docstring: checked on every
        database, though SQLite needs no locks, its writers being serial)."""
        by_slot: dict[int, str] = {}
        for key in keys:
            by_slot.setdefault(lock_slot(key), key)
        held = self._held(conn)
        new = sorted(by_slot.keys() - held.slots)
        if not new:
            return
        if new[0] // LOCK_SLOTS <= held.level:
            late = [by_slot[s] for s in new if s // LOCK_SLOTS <= held.level]
            raise LockOrderError(
                f"coordination keys {late[:3]!r} locked after keys of their lock level or a "
                "higher one in the same transaction: a deadlock with a transaction taking "
                "them the other way round (lock order: flowcraft_sql.database)"
            )
        held.slots.update(new)
        held.level = new[-1] // LOCK_SLOTS
        if self.family == "sqlite":
            return
        locks = self.tables.locks
        # Ascending: PostgreSQL sorts before it locks (ORDER BY, then FOR UPDATE), InnoDB
        # locks as it walks the primary key.
        await conn.execute(
            select(locks.c.slot)
            .where(locks.c.slot.in_(new))
            .order_by(locks.c.slot)
            .with_for_update()
        )

    def _held(self, conn: AsyncConnection) -> _Held:
        """What ``conn``'s transaction has locked (nothing yet for a new transaction)."""
        transaction = conn.sync_connection.get_transaction() if conn.sync_connection else None
        if transaction is None:
            return _Held()  # no transaction: the locks end with the statement
        held = _held_by.get(transaction)
        if held is None:
            held = _held_by[transaction] = _Held()
        return held

    # -- wake-ups -----------------------------------------------------------------------------

    @property
    def push(self) -> bool:
        """Whether other processes' signals and jobs arrive by push (LISTEN/NOTIFY)."""
        return self.family == "postgresql"

    def channel(self, what: str) -> str:
        return f"{self.settings.prefix}_{what}"

    async def notify(self, conn: AsyncConnection, what: str, payload: str) -> None:
        """Tell other processes (on commit of ``conn``'s transaction) about ``payload``."""
        if self.push:
            await conn.exec_driver_sql(
                "SELECT pg_notify($1, $2)"
                if self.settings.driver == "asyncpg"
                else "SELECT pg_notify(%s, %s)",
                (self.channel(what), payload),
            )

    async def listen(self) -> None:
        """Start this loop's LISTEN connection (PostgreSQL), once; restarted after it dies.
        Returns only once it listens: a caller that went on while another was still starting
        it would look for its signal, then miss the NOTIFY sent before LISTEN took effect
        (woken only by the safety poll, a second later)."""
        if not self.push:
            return
        loop = asyncio.get_running_loop()
        if self._listeners.get(loop) is not None:
            return
        starting = self._listen_locks.setdefault(loop, asyncio.Lock())
        async with starting:
            if self._listeners.get(loop) is None:
                await self._start_listening(loop)

    async def _start_listening(self, loop: asyncio.AbstractEventLoop) -> None:
        engine = await self.engine()
        conn = await engine.connect()
        try:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None

            def on_signal(_c: Any, _pid: int, _channel: str, payload: str) -> None:
                ns, key = json.loads(payload)
                self.wake_signal(ns, key)

            def on_jobs(_c: Any, _pid: int, _channel: str, payload: str) -> None:
                self.wake_jobs(payload)

            def on_lost(_c: Any) -> None:
                if self._listeners.get(loop) is conn:
                    del self._listeners[loop]
                    # Give the dead connection back (invalidated): the next wait listens anew.
                    task = loop.create_task(conn.invalidate())
                    self._closing.add(task)
                    task.add_done_callback(self._closing.discard)

            await raw.add_listener(self.channel("signal"), on_signal)
            await raw.add_listener(self.channel("jobs"), on_jobs)
            raw.add_termination_listener(on_lost)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        self._listeners[loop] = conn

    def ensure_poller(self, every: float) -> None:
        """Look for signals from other processes every ``every`` seconds, for every waiter of
        this loop at once (one query, however many wait), while any waits."""
        loop = asyncio.get_running_loop()
        task = self._pollers.get(loop)
        if task is None or task.done():
            self._pollers[loop] = loop.create_task(self._poll(loop, every))

    async def _poll(self, loop: asyncio.AbstractEventLoop, every: float) -> None:
        s = self.tables.signals
        while True:
            await asyncio.sleep(every)
            wanted = [
                key
                for key, futures in list(self._signal_waiters.items())
                if any(f.get_loop() is loop and not f.done() for f in futures)
            ]
            if not wanted:
                self._pollers.pop(loop, None)
                return
            now = time.time()

            async def body(
                conn: AsyncConnection, wanted: list[tuple[str, str]] = wanted, now: float = now
            ) -> Any:
                return list(
                    await conn.execute(
                        select(s.c.ns, s.c.key).where(
                            tuple_(s.c.ns, s.c.key).in_(wanted),
                            or_(s.c.expires_at.is_(None), s.c.expires_at > now),
                        )
                    )
                )

            try:
                found = await self.run(body, write=False)
            except Exception as exc:  # waiters time out on their own; keep looking
                log.warning("looking for signals in %s failed: %s", self.settings.display, exc)
                continue
            for ns, key in found:
                self.wake_signal(ns, key)

    def wake_signal(self, ns: str, key: str) -> None:
        for fut in self._signal_waiters.pop((ns, key), ()):
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(_resolve, fut, key)

    def signal_waiter(self, ns: str, keys: Iterable[str]) -> asyncio.Future[str]:
        """A future resolved with the first of ``keys`` to be signalled (in this process, by
        NOTIFY or by the poller)."""
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        for key in keys:
            self._signal_waiters.setdefault((ns, key), set()).add(fut)
        return fut

    def forget_signal_waiter(self, ns: str, keys: Iterable[str], fut: asyncio.Future[str]) -> None:
        for key in keys:
            waiting = self._signal_waiters.get((ns, key))
            if waiting is not None:
                waiting.discard(fut)
                if not waiting:
                    del self._signal_waiters[(ns, key)]

    def wake_jobs(self, ns: str) -> None:
        for ev in self._job_events.get(ns, ()):
            ev.set()

    @contextlib.contextmanager
    def job_event(self, ns: str) -> Iterator[asyncio.Event]:
        ev = asyncio.Event()
        self._job_events.setdefault(ns, set()).add(ev)
        try:
            yield ev
        finally:
            self._job_events[ns].discard(ev)

    # -- sweeping -----------------------------------------------------------------------------

    def sweep_due(self) -> bool:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY:
            return False
        self._last_sweep = now
        return True


def _resolve(fut: asyncio.Future[str], key: str) -> None:
    if not fut.done():
        fut.set_result(key)


#: The locks of each open transaction (:meth:`Database.lock`), gone with it.
_held_by: weakref.WeakKeyDictionary[Transaction, _Held] = weakref.WeakKeyDictionary()
_databases: dict[tuple[str, str], Database] = {}
#: (URL, prefix, schema version) whose schema this process has brought up to date. SQLite's
#: in-memory databases are new with every engine, so they are never in it.
_prepared: set[tuple[str, str, int]] = set()


def shared(settings: SQLSettings) -> Database:
    """The process's :class:`Database` for these settings (one per URL and prefix, whatever
    the namespace; the stores and queues of a deployment share it, which is what lets a run
    state fuse their steps into one transaction)."""
    key = (settings.url, settings.prefix)
    db = _databases.get(key)
    if db is None:
        db = _databases[key] = Database(settings)
    return db


@contextlib.asynccontextmanager
async def connection(db: Database) -> AsyncIterator[AsyncConnection]:
    engine = await db.engine()
    async with engine.connect() as conn:
        yield conn
