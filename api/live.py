"""One LISTEN connection per server process: it wakes the live streams when changes commit,
and it is what lets the process trust the token roles it remembers.

PostgreSQL sends ``twin_changes`` at each commit that wrote to the log (a trigger on
twin.changes). Streams never trust the notification's content: woken, they read the log from
their own cursor, so a lost notification costs at most one poll interval, never a change.

``twin_tokens`` comes at each commit that could end a token or change its user's role
(migration 0008); the process then forgets every role it remembered. Roles are remembered only
while the connection listens, so a message missed while it was away cannot leave a revoked
token accepted: after a reconnect the memory starts empty. A revocation is seen as soon as the
message arrives (a revocation through this process at once, see ``forget_tokens``).

``twin_layers`` comes when an admin declared or changed a layer (twin.put_layer_spec): the
process reads the layers again (``on_layers``), as it does each time it starts listening, so
a layer added while it was away is served too.

Listening again after the database was away (a restart, a crash) is also the moment to look
over the read pool (``on_back``): its idle connections died with the old server, and each
would otherwise fail one request with a 503 after the database was back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import psycopg

log = logging.getLogger("twin.api")
CHANNEL = "twin_changes"
TOKENS = "twin_tokens"
LAYERS = "twin_layers"
_MAX_TOKENS = 10_000  # remembered at once; beyond that the memory starts again


class ChangeSignal:
    """Wakes every waiter when a change commits; remembers token roles while it listens;
    reconnects when the database goes away."""

    def __init__(self, conninfo: str, on_layers: Callable[[], object],
                 on_back: Callable[[], Awaitable[None]] | None = None) -> None:
        self._conninfo = conninfo
        self._on_layers = on_layers
        self._on_back = on_back
        self._lost = False  # the database went away since the listener last listened
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listening = False
        self._roles: dict[str, tuple[str, datetime]] = {}
        self._forgotten = 0  # bumped at each forgetting: a check that straddles one is not kept

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def current(self) -> asyncio.Event:
        """Take this before reading the log, then ``wait`` on it: no commit falls between."""
        return self._event

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def role_of(self, digest: str) -> str | None:
        """The remembered role of a live token (None: ask the database)."""
        known = self._roles.get(digest)
        if known is None or known[1] <= datetime.now(UTC):
            return None
        return known[0]

    def checkpoint(self) -> int:
        """Take this before asking the database about a token, and give it to ``remember``."""
        return self._forgotten

    def remember(self, checkpoint: int, digest: str, role: str, expires: datetime) -> None:
        """Keep a role the database gave, unless tokens changed since ``checkpoint``."""
        if not self._listening or checkpoint != self._forgotten:
            return
        if len(self._roles) >= _MAX_TOKENS:
            self._roles.clear()
        self._roles[digest] = (role, expires)

    def forget_tokens(self) -> None:
        self._roles.clear()
        self._forgotten += 1

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def _layers(self) -> None:
        """Read the layers again; a failure is logged and leaves the ones served (the next
        message, or reconnect, reads them again), never the listener stopped."""
        try:
            await asyncio.to_thread(self._on_layers)
        except Exception as exc:  # whatever it was, the listener lives on
            log.warning("could not read the layers again (%s)", exc)

    async def _back(self) -> None:
        """The database is back after being away: ``on_back`` (a failure is logged)."""
        if not self._lost or self._on_back is None:
            return
        self._lost = False
        try:
            await self._on_back()
        except Exception as exc:  # whatever it was, the listener lives on
            log.warning("could not look over the connections (%s)", exc)

    async def _listen(self) -> None:
        while True:
            try:
                await self._listen_once()
            except psycopg.OperationalError as exc:
                log.warning("change listener lost the database (%s); retrying", exc)
                self._lost = True
                self._wake()
                await asyncio.sleep(1)

    async def _listen_once(self) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                await conn.execute(f"LISTEN {TOKENS}")
                await conn.execute(f"LISTEN {LAYERS}")
                self.forget_tokens()
                self._listening = True
                await self._back()
                await self._layers()  # any declared while we were away
                self._wake()  # anything committed while we were away
                async for notice in conn.notifies():
                    if notice.channel == TOKENS:
                        self.forget_tokens()
                    elif notice.channel == LAYERS:
                        await self._layers()
                    else:
                        self._wake()
        finally:  # not listening: nothing remembered can be trusted
            self._listening = False
            self.forget_tokens()
