"""Redis clients for the driver, configured so that no command is ever sent twice by accident.

redis-py 8 retries a command up to ten times when it times out or its connection drops. For a
read that is harmless; for ``INCRBY``, ``RPUSH`` or a commit script it is not: the first attempt
may well have been applied before the reply was lost, and the retry applies it again. Every
client here therefore has ``Retry(NoBackoff(), 0)`` (which also covers connection set-up), so an
ambiguous failure surfaces as an exception. The engine above already survives those: the job is
not acknowledged and is delivered again, and every step it replays is idempotent.

What must not be ambiguous is a connection that a fault broke while it sat idle in the pool (a
Redis restart, ``CLIENT KILL``): used seconds later, it would fail a command that never reached
Redis, and a failed commit means the node's code runs again on redelivery, long after the fault.
So a pooled connection idle for longer than :data:`HEALTH_CHECK_INTERVAL` is PINGed before it
carries a command, and if the PING finds it dead it is replaced by a fresh connection (a PING
is safe to send twice). Only commands in flight at a fault, or within that interval after it,
can fail ambiguously.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, TypeVar

import hiredis
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowcraft_core.engine import keys, rules
from flowcraft_core.engine.state import ended_record, final_record
from flowcraft_core.errors import BackendUnavailable
from flowcraft_redis.url import RedisSettings, settings_of

#: Seconds a command may take before the client gives up on the connection.
SOCKET_TIMEOUT = 10.0
#: Seconds to establish a connection, so an unreachable server fails fast.
CONNECT_TIMEOUT = 5.0
#: Connections per pool (``?max_connections=`` overrides). A caller that finds them all busy
#: waits for one (up to POOL_TIMEOUT) rather than failing, as redis-py's default pool would.
MAX_CONNECTIONS = 100
POOL_TIMEOUT = 20.0
#: Seconds a pooled connection may sit idle before it is checked (PING) on its next use
#: (``?health_check_interval=`` overrides; 0 turns the check off).
HEALTH_CHECK_INTERVAL = 1


async def _check_health(conn: aredis.connection.AbstractConnection) -> None:
    """redis-py's health check, except that a connection found dead is reconnected and checked
    once more rather than failing the command it was about to send (which was not sent)."""
    if not conn.health_check_interval:
        return
    if asyncio.get_running_loop().time() <= conn.next_health_check:
        return
    try:
        await conn._send_ping()  # type: ignore[no-untyped-call]
    except (redis.ConnectionError, OSError):
        await conn.disconnect(nowait=True)
        await conn._send_ping()  # type: ignore[no-untyped-call]  # on a new connection: raises if Redis really is away


def _hiredis_pack(args: tuple[Any, ...]) -> list[bytes]:
    """One command in the Redis protocol, packed by hiredis in C: the same bytes as redis-py's
    asyncio ``pack_command`` (str as UTF-8, int and float as their repr), which encodes each
    argument in Python and was the largest share of a worker's own CPU in a fanout-20 profile.
    redis-py's blocking clients already pack this way; its asyncio ones do not."""
    first = args[0]
    if isinstance(first, str):
        if " " in first:  # a command name with a literal argument in it, e.g. 'CONFIG GET'
            args = (*first.split(), *args[1:])
    elif b" " in first:
        args = (*first.split(), *args[1:])
    try:
        return [hiredis.pack_command(args)]
    except TypeError:
        pass
    args = tuple(bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args)
    try:
        return [hiredis.pack_command(args)]
    except TypeError as exc:  # as redis-py's encoder: a bool, None or object is refused
        raise redis.DataError(f"cannot send {exc}") from None


async def _send(
    conn: aredis.connection.AbstractConnection, command: Any, check_health: bool
) -> None:
    """redis-py's ``send_packed_command``, without its ``asyncio.wait_for`` around every send.

    That wait_for made a task, a timer and one more turn of the event loop per command, and on
    Python 3.11 it returns normally when a cancellation arrives just as the send completes,
    dropping it (CPython gh-86296): the caller then waited for a reply it was told to stop
    waiting for (a cancelled BLMOVE wait went on forever). Here the bytes are written at once;
    only when the transport's buffer is over its high-water mark (the socket is not taking
    them) does the send wait, under ``asyncio.timeout`` (which keeps a cancellation). As in
    redis-py, a send that fails or is interrupted gives the connection up, since the reply of
    what it sent would never be read, and a failure is a ``ConnectionError`` or, past the
    socket timeout, a ``TimeoutError``.
    """
    if not conn.is_connected:
        await conn.connect_check_health(check_health=False)
    if check_health:
        await _check_health(conn)
    task = asyncio.current_task()
    requested = task.cancelling() if task is not None else 0
    try:
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        writer = conn._writer
        assert writer is not None, "connected"
        writer.writelines(command)
        transport = writer.transport
        if transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1]:
            async with asyncio.timeout(conn.socket_timeout):
                await writer.drain()
        else:
            await writer.drain()  # returns at once, raising what a lost connection raised
    except TimeoutError:
        await conn.disconnect(nowait=True)
        raise redis.TimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        await conn.disconnect(nowait=True)
        raise redis.ConnectionError(f"Error while writing to socket: {exc}") from exc
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    if task is not None and task.cancelling() > requested:
        # Defensive: a cancellation requested during the send that no await delivered. The
        # reply will not be read, so the connection is given up.
        await conn.disconnect(nowait=True)
        raise asyncio.CancelledError


class _Checked:
    """What every asyncio connection of the driver adds to redis-py's: the idle health check,
    hiredis packing, and a send without a task and a timer that never drops a cancellation."""

    async def check_health(self) -> None:
        await _check_health(self)  # type: ignore[arg-type]

    def pack_command(self, *args: Any) -> list[bytes]:
        return _hiredis_pack(args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await _send(self, command, check_health)  # type: ignore[arg-type]


class _Connection(_Checked, aredis.Connection):
    pass


class _SSLConnection(_Checked, aredis.SSLConnection):
    pass


class _UnixConnection(_Checked, aredis.UnixDomainSocketConnection):
    pass


def _sync_check_health(conn: redis.connection.AbstractConnection) -> None:
    """:func:`_check_health` for the blocking clients Dramatiq uses."""
    if not conn.health_check_interval or time.monotonic() <= conn.next_health_check:
        return
    try:
        conn._send_ping()  # type: ignore[no-untyped-call]
    except (redis.ConnectionError, OSError):
        conn.disconnect()  # type: ignore[no-untyped-call]
        conn._send_ping()  # type: ignore[no-untyped-call]


class _SyncConnection(redis.Connection):
    def check_health(self) -> None:
        _sync_check_health(self)


class _SyncSSLConnection(redis.SSLConnection):
    def check_health(self) -> None:
        _sync_check_health(self)


class _SyncUnixConnection(redis.UnixDomainSocketConnection):
    def check_health(self) -> None:
        _sync_check_health(self)


_CHECKED: dict[type[Any], type[Any]] = {
    aredis.Connection: _Connection,
    aredis.SSLConnection: _SSLConnection,
    aredis.UnixDomainSocketConnection: _UnixConnection,
    redis.Connection: _SyncConnection,
    redis.SSLConnection: _SyncSSLConnection,
    redis.UnixDomainSocketConnection: _SyncUnixConnection,
}


class _Pool(aredis.ConnectionPool):
    """redis-py's asyncio pool, bounded like its ``BlockingConnectionPool`` (a caller that finds
    every connection busy waits up to ``timeout`` for one), but without what that costs on
    every command: an ``asyncio.Condition``, an ``asyncio.timeout`` timer, a lock and four
    observability records per get and release (5.3 s cumulative over 4,246 commands in a
    fanout-20 worker profile). Here a get that finds a connection takes it with no await
    but the connection check, and only a get that must wait makes a future and a timer.

    One event loop uses a pool (see :class:`Connections`), so the pool's lists change only
    between awaits and need no lock. Connection-release events are not dispatched: they serve
    re-authentication with streaming credential providers, which this driver does not use.
    """

    def __init__(self, *, timeout: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.batches = _Batches(self)

    def _free(self) -> bool:
        return bool(self._available_connections) or (
            len(self._in_use_connections) < self.max_connections
        )

    def _wake(self) -> None:
        """Hand a free slot to the first waiter still waiting."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _wait(self) -> None:
        """Wait (up to ``timeout``) until a connection is free for this caller."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        taken = False
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    await waiter
                    if self._free():
                        taken = True
                        return
                    # A caller that did not wait took the slot first: wait again, at the front.
                    waiter = loop.create_future()
                    self._waiters.appendleft(waiter)
        except TimeoutError as err:
            raise redis.ConnectionError("No connection available.") from err
        finally:
            if not taken:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled or timed out: pass the slot on
                else:
                    waiter.cancel()  # left in the queue, where _wake skips it

    async def get_connection(
        self, command_name: Any = None, *keys: Any, **options: Any
    ) -> aredis.connection.AbstractConnection:
        if self._waiters or not self._free():  # first come, first served
            await self._wait()
        connection: aredis.connection.AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: aredis.connection.AbstractConnection) -> None:
        self._in_use_connections.remove(connection)
        try:
            if connection.should_reconnect():  # type: ignore[no-untyped-call]
                await connection.disconnect()
        finally:
            self._available_connections.append(connection)
            self._wake()


P = TypeVar("P", aredis.ConnectionPool, redis.ConnectionPool)


def _rechecked(pool: P) -> P:
    """``pool``, making connections whose health check replaces a dead connection."""
    pool.connection_class = _CHECKED.get(pool.connection_class, pool.connection_class)
    return pool


def _kwargs(settings: RedisSettings) -> dict[str, Any]:
    return {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "max_connections": MAX_CONNECTIONS,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        **settings.connection_kwargs(),
    }


def async_client(settings: RedisSettings) -> aredis.Redis:
    """A pooled asyncio client returning ``str``."""
    pool = _Pool.from_url(
        settings.url,
        timeout=POOL_TIMEOUT,
        decode_responses=True,
        retry=AsyncRetry(NoBackoff(), 0),
        **_kwargs(settings),
    )
    return aredis.Redis.from_pool(_rechecked(pool))


def blocking_client(settings: RedisSettings) -> aredis.Redis:
    """An asyncio client for blocking commands (``BLMOVE``): no socket timeout, since the wait
    itself may be long, and no pool limit, since every waiter holds a connection."""
    kwargs = _kwargs(settings)
    kwargs["socket_timeout"] = None
    kwargs["max_connections"] = 2**31 - 1
    pool = aredis.ConnectionPool.from_url(
        settings.url, decode_responses=True, retry=AsyncRetry(NoBackoff(), 0), **kwargs
    )
    return aredis.Redis.from_pool(_rechecked(pool))


def sync_client(settings: RedisSettings) -> redis.Redis:
    """A thread-safe pooled client returning ``bytes``, as Dramatiq's broker expects."""
    pool = redis.BlockingConnectionPool.from_url(
        settings.url,
        timeout=POOL_TIMEOUT,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
        **_kwargs(settings),
    )
    return redis.Redis.from_pool(_rechecked(pool))


def _lua(value: str | tuple[str, ...]) -> str:
    """``value`` as a Lua literal (a string, or a table of strings)."""
    if isinstance(value, tuple):
        return "{" + ", ".join(_lua(v) for v in value) + "}"
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _snippet(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


_RUN_BASE_HEAD, _RUN_BASE_TAIL = keys.RUN_BASE.split("{run_id}")
# ended_record("completed", at) is this head, repr(at), this tail: json.dumps writes a float
# as its repr, so the script joins the same text around the time it is given.
_ENDED_HEAD, _ENDED_TAIL = ended_record("completed", 0.5).rsplit("0.5", 1)

SCRIPT_CONSTANTS: dict[str, str] = {
    # What the scripts must agree on with flowcraft_core, from there alone.
    **{
        name: _lua(getattr(keys, name))
        for name in (
            "ACTIVATED",
            "FINISHED",
            "WAITING",
            "RESUMED",
            "PROGRESS",
            "FINAL",
            "ENDED",
            "SIGNAL_DONE",
            "RUN_WIDE",
            "JOB_KEY_KINDS",
            "LEASE",
            "ARRIVED",
            "LIVE",
            "FIRST",
            "FAILURES",
            "HISTORY",
            "JOIN_ANY",
            "RUN",
            "ACTIVE_RUNS",
            "BLUEPRINT_BASE",
            "INDEX_BASE",
            "INDEX_STATUS",
            "INDEX_FLOW",
            "RUNNING",
        )
    },
    "RUN_BASE_HEAD": _lua(_RUN_BASE_HEAD),
    "RUN_BASE_TAIL": _lua(_RUN_BASE_TAIL),
    "INDEX_BUCKET_SECONDS": str(keys.INDEX_BUCKET_SECONDS),
    "COMPLETED": _lua("completed"),
    "FINAL_COMPLETED": _lua(final_record("completed", None)),
    "ENDED_HEAD": _lua(_ENDED_HEAD),
    "ENDED_TAIL": _lua(_ENDED_TAIL),
    # The rules, as Lua generated from their one statement (flowcraft_core.engine.rules).
    "DECIDE": rules.lua_decide(),
    "RUN_DONE": rules.RUN_DONE,
    # Lua shared by several scripts, inlined where they name it (their own placeholders too).
    "RUN_KEYS": _snippet("run_keys.lua"),
    "INDEX_MOVE": _snippet("index_move.lua"),
    "FINALIZE": _snippet("run_finalize_shared.lua"),
    "LOAD": _snippet("run_load_shared.lua"),
}
#: The placeholders of a connection's keyspace, which the scripts that derive key names use:
#: the prefixes of context keys, coordination keys and signals (see RedisRunState).
KEYSPACE = ("CTX", "CO", "SIG")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def load_script(name: str, keyspace: Mapping[str, str] | None = None) -> str:
    """The text of the Lua script ``name`` shipped beside this module, with every ``{{NAME}}``
    replaced by :data:`SCRIPT_CONSTANTS`' Lua, or by ``keyspace``'s prefix (as a Lua string)
    for the :data:`KEYSPACE` names, until none is left (an unknown name is a KeyError)."""
    constants = {**SCRIPT_CONSTANTS, **{k: _lua(v) for k, v in (keyspace or {}).items()}}
    text = _snippet(name)
    for _ in range(4):  # a snippet's own placeholders are rendered on the next pass
        if _PLACEHOLDER.search(text) is None:
            break
        text = _PLACEHOLDER.sub(lambda m: constants[m.group(1)], text)
    return text


def unreachable(settings: RedisSettings, exc: BaseException) -> BackendUnavailable:
    return BackendUnavailable(
        f"cannot reach Redis at {settings.masked}: {type(exc).__name__}: {exc}"
    )


class Script:
    """A Lua script run by ``EVALSHA`` on a connection of ``client``'s pool (and loaded on
    first use), as redis-py's ``AsyncScript`` would, without going through
    ``Redis.execute_command``: that adds, per call, a retry wrapper (which never retries
    here, see the module's docstring), observability records and response-callback look-ups,
    about as much Python as the rest of the call. What is left is what makes a command safe:
    the pool's checked connection (idle health check, a send that honours cancellation), one
    send, one read under the socket timeout. A connection error, a timeout or a cancellation
    during the read disconnects the connection (redis-py's ``read_response`` does), so no
    reply is ever left for the next user; an error reply (``ResponseError``) is read whole.
    """

    def __init__(self, client: aredis.Redis, text: str) -> None:
        pool = client.connection_pool
        assert isinstance(pool, _Pool), "a client of async_client()"
        self._pool = pool
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def submit(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> asyncio.Future[Any]:
        """Send this call with the rest of this loop turn's; the future is its reply."""
        return self._pool.batches.submit(self, ("EVALSHA", self.sha, len(keys), *keys, *args))

    async def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return await self.submit(keys, args)


@dataclass(slots=True)
class _Call:
    script: Script
    packed: list[bytes]
    future: asyncio.Future[Any]


def _settle(
    future: asyncio.Future[Any], reply: Any = None, exc: BaseException | None = None
) -> None:
    if future.done():  # its caller was cancelled: nobody waits for this reply
        return
    if exc is None:
        future.set_result(reply)
    elif isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)


class _Batches:
    """How a pool's script calls reach Redis: every call made in one turn of the event loop
    goes out in one write on one connection, and the replies are read back in order — a
    pipeline without MULTI, batched by time as ioredis's auto-pipelining is.

    Why: a worker's cost per node was not its commands but the sends and reads around them,
    each waking redis-server and then the worker again (a fanout-20 worker profile on 2 shared
    cores: ``socket.send`` 155 µs per call, ``recv`` 60 µs, more than the engine's Python). The
    jobs of a worker run concurrently on one loop, so their calls meet in a turn: k of them
    cost one send and about one read, and one connection instead of k.

    What a call keeps, batched or not:

    - it is its own ``EVALSHA``, atomic on its own: a batch is not a transaction, and needs not
      be, since calls of one turn come from concurrent jobs (a job's next call waits for the
      reply of its last);
    - its caller gets exactly its own reply; an error reply fails that call only and is read
      whole, so the connection stays in step;
    - a script this server does not have (NOSCRIPT: it did not run) is loaded and its call sent
      again; a bad argument fails its call before anything is sent;
    - a connection failure, a timeout or a cancellation of the batch fails every call whose
      reply was not read, and gives the connection up (``read_response`` disconnects): each
      may or may not have run, exactly as for a call on its own, and the engine's redelivery
      covers both;
    - a caller cancelled while its call is in flight stops waiting, and the batch reads its
      reply anyway, for the calls behind it.
    """

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._pending: list[_Call] = []
        self._flushes: set[asyncio.Task[None]] = set()

    def submit(self, script: Script, command: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Send ``command`` (an EVALSHA of ``script``) with the rest of this turn's calls; the
        future is its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        try:
            packed = _hiredis_pack(command)
        except redis.DataError as exc:
            future.set_exception(exc)
            return future
        self._pending.append(_Call(script, packed, future))
        if len(self._pending) == 1:
            # A task's first step runs on the loop's next turn, after every callback ready in
            # this one: the calls they make join this batch.
            flush = loop.create_task(self._flush())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        return future

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        batch = [call for call in batch if not call.future.done()]  # cancelled before sending
        if not batch:
            return
        try:
            conn = await self._pool.get_connection()
        except BaseException as exc:
            for call in batch:
                _settle(call.future, exc=exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        try:
            while batch:
                batch = await self._exchange(conn, batch)
        except Exception:  # settled in _exchange; the task has nobody else to report to
            return
        finally:
            await self._pool.release(conn)

    @staticmethod
    async def _exchange(
        conn: aredis.connection.AbstractConnection, batch: list[_Call]
    ) -> list[_Call]:
        """One write of ``batch``, then its replies in order: the calls to send again once
        their scripts are loaded (NOSCRIPT)."""
        again: list[_Call] = []
        done = 0
        try:
            await conn.send_packed_command([part for call in batch for part in call.packed])
            for call in batch:
                try:
                    reply = await conn.read_response()
                except redis.exceptions.NoScriptError:
                    again.append(call)
                except redis.ResponseError as exc:
                    _settle(call.future, exc=exc)
                else:
                    _settle(call.future, reply)
                done += 1
            # Not loaded on this server yet (or it restarted, or SCRIPT FLUSH): load each.
            for script in {id(call.script): call.script for call in again}.values():
                await conn.send_packed_command(_hiredis_pack(("SCRIPT", "LOAD", script.text)))
                await conn.read_response()
        except BaseException as exc:
            for call in (*batch[done:], *again):
                _settle(call.future, exc=exc)
            raise
        return again


@dataclass
class _Clients:
    client: aredis.Redis
    blocking: aredis.Redis
    scripts: dict[tuple[str, tuple[tuple[str, str], ...]], Script] = field(default_factory=dict)


class Connections:
    """The asyncio clients of one Redis database, shared by the stores built from one URL.

    redis.asyncio connections belong to the event loop that opened them, so clients are made
    lazily inside the running loop, one set per loop. Users :meth:`acquire` and
    :meth:`release`; the running loop's clients are closed when the last user releases.
    """

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self._loops: dict[asyncio.AbstractEventLoop, _Clients] = {}
        self._users = 0

    def _clients(self) -> _Clients:
        loop = asyncio.get_running_loop()
        clients = self._loops.get(loop)
        if clients is None:
            # Clients of loops that have since closed hold only dead sockets: drop them.
            for old in [other for other in self._loops if other.is_closed()]:
                del self._loops[old]
            clients = _Clients(async_client(self.settings), blocking_client(self.settings))
            self._loops[loop] = clients
        return clients

    @property
    def client(self) -> aredis.Redis:
        """The pooled client of the running loop."""
        return self._clients().client

    @property
    def blocking(self) -> aredis.Redis:
        """The client for blocking commands of the running loop."""
        return self._clients().blocking

    def script(
        self, name: str, keyspace: tuple[tuple[str, str], ...] = (), *, text: str | None = None
    ) -> Script:
        """The Lua script ``name`` (rendered with ``keyspace``'s prefixes, see
        :func:`load_script`; or ``text``, a script not shipped beside this module, such as
        Dramatiq's dispatch) registered on the running loop's client (run by EVALSHA, loaded
        on first use)."""
        clients = self._clients()
        script = clients.scripts.get((name, keyspace))
        if script is None:
            if text is None:
                text = load_script(name, dict(keyspace))
            script = clients.scripts[(name, keyspace)] = Script(clients.client, text)
        return script

    def acquire(self) -> Connections:
        self._users += 1
        return self

    async def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0:
            await self.close()

    async def ping(self) -> None:
        """Raise :class:`DriverError` naming the URL if Redis does not answer."""
        try:
            await self.client.ping()
        except (redis.RedisError, OSError) as exc:
            raise unreachable(self.settings, exc) from None

    async def close(self) -> None:
        """Close the running loop's clients."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - close() is awaited, so a loop runs
            return
        clients = self._loops.pop(loop, None)
        if clients is not None:
            await clients.client.aclose()
            await clients.blocking.aclose()


async def check_connection(url: str | RedisSettings) -> None:
    """Prove that Redis answers at ``url``, or raise :class:`DriverError` naming it (password
    masked). For start-up checks: one connection, one PING."""
    settings = settings_of(url)
    client = async_client(settings)
    try:
        await client.ping()
    except (redis.RedisError, OSError) as exc:
        raise unreachable(settings, exc) from None
    finally:
        await client.aclose()
