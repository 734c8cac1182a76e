"""Where a read goes: the database (the primary), or a read replica a moment behind it.

The routes marked ``@replica_read`` only read and may answer a second late: items, the map's
and the board's figures, reports, analyses. With ``TWIN_REPLICA_URLS`` set, such a read by a
planner's or a commander's token (``ROLES``) goes to a replica that, at its last probe (every
``PROBE_S``):
- answered, as a standby of this database, at most ``TWIN_REPLICA_MAX_LAG_S`` behind it (its
  lag: how long ago the primary was where the replica's replay is now), and
- had replayed the token's last write: read your writes, by the WAL position the primary
  gave right after that write (``WriteMarks``, shared by the processes of `twin serve
  --workers N`). Replay only moves forward, so a probe a moment old errs towards the primary.
Any other read goes to the primary, and so does one whose replica fails it (its connection
lost, the replica stopped): a replica's trouble is never the client's. Each routed read says
where it was served (``Twin-Read-From``) and is counted (``twin_reads_total``). Without
replicas nothing here runs but one check per routed read: no probe, no file, no header.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import inspect
import logging
import mmap
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from prometheus_client import Counter
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import get_pool
from api.live import ChangeSignal
from twin.settings import Settings
from twin.store.db import libpq_conninfo, make_engine
from twin.users import User, token_digest

log = logging.getLogger("twin.api")

# Whose reads may go to a replica: they read everything and write little. Workers,
# dispatchers, departments and admins act on what they read, so they read the primary.
ROLES = frozenset({"planner", "commander"})
PROBE_S = 0.5
PROBE_NAME = "twin replica probe"  # its connections' application_name (pg_stat_activity)
_PROBE_TIMEOUT_S = 2.0  # a server that takes longer to say where it is counts as failed
_READ_FROM = "twin.read_from"  # the scope's key: the Source a routed read was given
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_UNKNOWN = 2**64 - 1  # a write whose position the primary did not give: read the primary

READS = Counter("twin_reads_total", "Reads of the routes that may use a read replica, by "
                "where they were served (primary or replica-N)", ["target"])

# WAL positions as numbers of bytes. After a write, where WAL is inserted (not where it is
# written out): that covers the write's commit record even under synchronous_commit = off.
_WRITTEN_SQL = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"
_PRIMARY_SQL = ("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
                "(SELECT system_identifier FROM pg_control_system())")
_REPLICA_SQL = ("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint, "
                "pg_is_in_recovery(), (SELECT system_identifier FROM pg_control_system())")


def connection_pool(url: str) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """The async pool the read routes use on a server (psycopg, autocommit, UTC); opened by
    its owner."""
    return AsyncConnectionPool(libpq_conninfo(url), min_size=2, max_size=10,
                               kwargs={"autocommit": True}, open=False)


@dataclass(eq=False)
class Source:
    """Somewhere a read can go: its name (``Twin-Read-From``) and its pools."""

    name: str
    pool: AsyncConnectionPool[AsyncConnection[Any]]
    engine: Engine


@dataclass(eq=False)
class Replica(Source):
    """A replica as this process's last probe found it."""

    probe: _Probe
    replayed: int = -1  # its replay's WAL position at the last probe that answered
    lag_s: float | None = None
    why: str | None = "not probed yet"  # why reads skip it; None: they may go to it


class _Probe:
    """A connection of its own to ask a server where it is: a busy pool must not hold the
    probe back, nor the probe take a reader's connection."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.conn: AsyncConnection[Any] | None = None

    async def ask(self, sql: str) -> tuple[Any, ...]:
        try:
            return await asyncio.wait_for(self._ask(sql), _PROBE_TIMEOUT_S)
        except (psycopg.Error, TimeoutError):
            await self.close()
            raise

    async def _ask(self, sql: str) -> tuple[Any, ...]:
        if self.conn is None or self.conn.closed:
            self.conn = await AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=int(_PROBE_TIMEOUT_S),
                application_name=PROBE_NAME)
        row = await (await self.conn.execute(sql)).fetchone()
        assert row is not None  # a SELECT without FROM: one row
        return tuple(row)

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self.conn.close()
            self.conn = None


_SLOT = struct.Struct("<QQ")  # a position and its check: two aligned 8-byte words
_MASK = 2**64 - 1


def _check(position: int) -> int:
    """splitmix64's finaliser: a torn slot (words or bytes of two writes) fails it, but for
    odds of 2**-64; an empty slot (zeros) passes it as position 0."""
    position = (position ^ (position >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
    position = (position ^ (position >> 27)) * 0x94D049BB133111EB & _MASK
    return position ^ (position >> 31)


class WriteMarks:
    """Each token's last write's WAL position, in a file every process of the server maps
    into memory (``run/read-marks`` in TWIN_DATA_DIR), so a write one process answered is
    known to all before the client hears of it.

    ``SLOTS`` slots of 16 bytes, one chosen by the token's digest, hold the highest position
    written by any token sharing it: a shared slot only sends reads to the primary sooner
    than needed. A writer holds a lock on its slot (fcntl, across processes) while it raises
    it; a reader takes none, so a slot torn by a write in progress is read again, and read as
    unknown (the primary) if it stays torn. The file is never emptied: positions only grow,
    so one kept from an earlier run only errs towards the primary.
    """

    SLOTS = 8192

    def __init__(self, path: Path) -> None:
        size = self.SLOTS * _SLOT.size
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < size:  # new: zeros, no write known (another
            os.ftruncate(self._fd, size)       # process doing the same changes nothing)
        self._map = mmap.mmap(self._fd, size)

    def _offset(self, digest: str) -> int:
        return int(digest[:16], 16) % self.SLOTS * _SLOT.size

    def _read(self, offset: int) -> int | None:
        for _ in range(3):
            position, check = _SLOT.unpack_from(self._map, offset)
            if check == _check(position):
                return int(position)
        return None

    def written(self, digest: str) -> int | None:
        """The position a replica must have replayed to serve this token (0: any); None
        when its slot cannot be read whole (then only the primary may)."""
        return self._read(self._offset(digest))

    def wrote(self, digest: str, position: int) -> None:
        """The token wrote, and the primary was at ``position`` after it."""
        offset = self._offset(digest)
        fcntl.lockf(self._fd, fcntl.LOCK_EX, _SLOT.size, offset)
        try:
            highest = max(position, self._read(offset) or 0)
            _SLOT.pack_into(self._map, offset, highest, _check(highest))
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT.size, offset)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _digest(scope: Scope) -> str | None:
    """The digest of the request's bearer token, if it carries one."""
    header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    return token_digest(token.strip()) if scheme.lower() == "bearer" and token.strip() else None


def _connection_lost(exc: BaseException | None) -> bool:
    """Whether ``exc`` is, or was raised over, a failed connection: psycopg's
    OperationalError (the pool's timeout is one; a query the standby cancelled too), under
    SQLAlchemy's wrapper or not."""
    while exc is not None:
        inner = exc.orig if isinstance(exc, DBAPIError) else exc
        if isinstance(inner, psycopg.OperationalError) or (
                isinstance(exc, DBAPIError) and exc.connection_invalidated):
            return True
        exc = exc.__cause__
    return False


@dataclass
class Replicas:
    """TWIN_REPLICA_URLS as this process sees them: probed every PROBE_S, and where each
    routed read goes."""

    primary: Source
    replicas: list[Replica]
    marks: WriteMarks
    max_lag_s: float
    signal: ChangeSignal  # the token roles this process remembers
    primary_probe: _Probe
    # (moment, the primary's WAL position then): enough to tell any lag up to the limit
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    system: int | None = None  # the primary's system identifier: its standbys share it
    turn: int = 0
    task: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, settings: Settings, primary: Source, conninfo: str, signal: ChangeSignal
           ) -> Replicas:
        """The replicas of ``settings`` (not yet opened) beside ``primary``, reached by
        ``conninfo``."""
        found = []
        for number, given in enumerate(settings.replica_urls, 1):
            url = make_url(given).set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False)
            found.append(Replica(f"replica-{number}", connection_pool(url), make_engine(url),
                                 _Probe(libpq_conninfo(url))))
        return cls(primary, found, WriteMarks(settings.data_dir / "run" / "read-marks"),
                   settings.replica_max_lag_s, signal, _Probe(conninfo),
                   deque(maxlen=int(settings.replica_max_lag_s / PROBE_S) + 3))

    async def start(self) -> None:
        for replica in self.replicas:
            await replica.pool.open()  # connects in the background, a stopped one too
        self.task = asyncio.get_running_loop().create_task(self._probe_forever())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.primary_probe.close()
        for replica in self.replicas:
            await replica.probe.close()
            await replica.pool.close()
            replica.engine.dispose()
        self.marks.close()

    async def _probe_forever(self) -> None:
        while True:
            began = time.monotonic()
            try:
                await self.probe()
            except Exception:  # whatever it was, the probe goes on (and it is logged)
                log.exception("probing the read replicas failed")
            await asyncio.sleep(max(PROBE_S - (time.monotonic() - began), 0.0))

    async def probe(self) -> None:
        """The primary's position, with the moment, then each replica's replay (after it, so
        that a replica keeping up is found to have replayed it)."""
        try:
            position, self.system = await self.primary_probe.ask(_PRIMARY_SQL)
            self.samples.append((time.monotonic(), position))
        except (psycopg.Error, TimeoutError):
            pass  # the replicas are judged by the samples held; the primary's own reads fail
        await asyncio.gather(*(self._probe_replica(replica) for replica in self.replicas))

    async def _probe_replica(self, replica: Replica) -> None:
        try:
            replayed, standby, system = await replica.probe.ask(_REPLICA_SQL)
        except (psycopg.Error, TimeoutError) as exc:
            self._skip(replica, f"its probe failed: {_first_line(exc)}")
            return
        if not standby:
            self._skip(replica, "not a standby (promoted, or a primary)")
            return
        lag = self._lag(replayed)
        why = ("the database has not answered a probe yet" if lag is None
               else "a standby of another database" if system != self.system
               else f"{lag:.2f} s behind, more than TWIN_REPLICA_MAX_LAG_S ({self.max_lag_s:g})"
               if lag > self.max_lag_s or replayed < self.samples[0][1] else None)
        if why is None and replica.why is not None:
            # back: its pool's idle connections may have died with it, look them over
            await replica.pool.check()
            log.info("%s is read from again (%.3f s behind)", replica.name, lag)
        replica.replayed, replica.lag_s = replayed, lag
        if why is None:
            replica.why = None  # last: a reader that sees it usable sees its new position
        else:
            self._skip(replica, why)

    def _lag(self, replayed: int) -> float | None:
        """Now less the moment of the newest sample at or before ``replayed`` (0 when it is
        the newest); behind every sample, at least the oldest one's age. None before any."""
        if not self.samples:
            return None
        if replayed >= self.samples[-1][1]:
            return 0.0
        now = time.monotonic()
        return next((now - at for at, position in reversed(self.samples)
                     if position <= replayed), now - self.samples[0][0])

    def _skip(self, replica: Replica, why: str) -> None:
        if replica.why is None:
            log.warning("%s skipped: %s", replica.name, why)
        replica.why = why

    def lost(self, replica: Replica, exc: BaseException) -> None:
        """A read failed on ``replica``'s connection: no reads go to it until a probe
        answers again."""
        self._skip(replica, f"a read failed: {_first_line(exc)}")

    def choose(self, scope: Scope, user: object) -> Source:
        """Where a routed read of ``scope`` goes (the module's docstring says when a
        replica); ``user``: the handler's signed-in user, when it has one."""
        digest = _digest(scope)
        if digest is None:
            return self.primary
        role = user.role if isinstance(user, User) else self.signal.role_of(digest)
        if role not in ROLES:
            return self.primary
        written = self.marks.written(digest)
        ready = [replica for replica in self.replicas if replica.why is None
                 and written is not None and replica.replayed >= written]
        if not ready:
            return self.primary
        self.turn += 1
        return ready[self.turn % len(ready)]

    async def wrote(self, digest: str) -> None:
        """The token of ``digest`` wrote: keep where the primary is now. A second try on
        another connection if the pool's died; if the primary still does not say, the
        token's slot only ever reads the primary from then on (a slot of SLOTS)."""
        for _ in range(2):
            try:
                async with self.primary.pool.connection(timeout=_PROBE_TIMEOUT_S) as conn:
                    row = await (await conn.execute(_WRITTEN_SQL)).fetchone()
                assert row is not None  # a SELECT without FROM: one row
                self.marks.wrote(digest, int(row[0]))
                return
            except psycopg.Error as exc:
                failure = exc
        log.warning("no WAL position after a write (%s): the token reads the primary",
                    _first_line(failure))
        self.marks.wrote(digest, _UNKNOWN)

    def view(self) -> list[dict[str, Any]]:
        """Each replica as this process sees it, for /ready."""
        return [{"name": r.name, "read_from": r.why is None, "lag_s": r.lag_s,
                 "why_not": r.why} for r in self.replicas]


Handler = TypeVar("Handler", bound=Callable[..., Any])


def replica_read(handler: Handler) -> Handler:
    """Mark a route that only reads and may answer a second late: with replicas, a read of
    it may go to one. The handler reads through ``read_pool(request)`` or its ``engine``
    argument, which are then the replica's; if the replica's connection fails it, it runs
    again on the primary's."""
    routed: Callable[..., Any]
    if inspect.iscoroutinefunction(handler):
        async def routed_async(*args: Any, **kwargs: Any) -> Any:
            read = _Read.of(args, kwargs)
            if read is None:
                return await handler(*args, **kwargs)
            try:
                return await handler(*read.args, **read.kwargs)
            except Exception as exc:
                if not read.again(exc):
                    raise
            return await handler(*read.args, **read.kwargs)

        routed = routed_async
    else:
        def routed_sync(*args: Any, **kwargs: Any) -> Any:  # in FastAPI's threads
            read = _Read.of(args, kwargs)
            if read is None:
                return handler(*args, **kwargs)
            try:
                return handler(*read.args, **read.kwargs)
            except Exception as exc:
                if not read.again(exc):
                    raise
            return handler(*read.args, **read.kwargs)

        routed = routed_sync
    functools.update_wrapper(routed, handler)
    setattr(routed, "twin_replica_read", True)  # noqa: B010  (a marker, as api.fastpath's)
    return routed  # type: ignore[return-value]


def read_pool(request: Request) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """The pool a ``@replica_read`` route reads with: its chosen replica's, else the
    primary's."""
    source: Source | None = request.scope.get(_READ_FROM)
    return source.pool if source is not None else get_pool(request)


class _Tape:
    """A request body's messages as the handler received them, for its second run."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.heard: list[Message] = []

    async def record(self) -> Message:
        message = await self.receive()
        self.heard.append(message)
        return message

    def replay(self) -> Receive:
        pending = list(self.heard)

        async def receive() -> Message:
            return pending.pop(0) if pending else await self.receive()

        return receive


@dataclass
class _Read:
    """One routed read: where it goes, and what its handler is called with."""

    replicas: Replicas
    request: Request
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    tape: _Tape | None

    @classmethod
    def of(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Read | None:
        """None without replicas (the handler runs as it is)."""
        request: Request = kwargs["request"] if "request" in kwargs else args[0]
        replicas: Replicas | None = request.app.state.replicas
        if replicas is None:
            return None
        # a body (POST /analysis/siting) is read once: kept for a second run
        tape = None if request.method in _READ_METHODS else _Tape(request.receive)
        read = cls(replicas, request, args, kwargs, tape)
        read.go(replicas.choose(request.scope, kwargs.get("user")))
        return read

    def go(self, source: Source) -> None:
        self.request.scope[_READ_FROM] = source
        if "engine" in self.kwargs:
            self.kwargs = self.kwargs | {"engine": source.engine}
        if self.tape is not None:
            self.kwargs = self.kwargs | {"request": Request(
                self.request.scope, self.tape.record if source is not self.replicas.primary
                else self.tape.replay())}

    def again(self, exc: Exception) -> bool:
        """Whether to run again on the primary: the replica's connection failed."""
        source = self.request.scope[_READ_FROM]
        if not isinstance(source, Replica) or not _connection_lost(exc):
            return False
        self.replicas.lost(source, exc)
        log.info("a read on %s failed (%s): read on the primary", source.name,
                 _first_line(exc))
        self.go(self.replicas.primary)
        return True


class ReadRouting:
    """Around the app when replicas are set: a routed read answers where it was served (and
    is counted); a write by a bearer token has the primary's WAL position kept for the token
    before its answer starts, so that the client's next read, by whichever process, finds
    its write."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        writer = None if scope["method"] in _READ_METHODS else _digest(scope)

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                source: Source | None = scope.get(_READ_FROM)
                replicas: Replicas | None = scope["app"].state.replicas
                if source is not None:
                    READS.labels(source.name).inc()
                    message["headers"] = [*message.get("headers", []),
                                          (b"twin-read-from", source.name.encode())]
                elif writer is not None and message["status"] < 400 and replicas is not None:
                    await replicas.wrote(writer)
            await send(message)

        await self.app(scope, receive, sending)
