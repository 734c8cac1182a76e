"""One LISTEN connection per server process, waking the live streams when changes commit.

PostgreSQL sends ``twin_changes`` at each commit that wrote to the log (a trigger on
twin.changes). Streams never trust the notification's content: woken, they read the log from
their own cursor, so a lost notification costs at most one poll interval, never a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg

log = logging.getLogger("twin.api")
CHANNEL = "twin_changes"


class ChangeSignal:
    """Wakes every waiter when a change commits; reconnects when the database goes away."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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

    def _wake(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake()  # anything committed while we were away
                    async for _ in conn.notifies():
                        self._wake()
            except psycopg.OperationalError as exc:
                log.warning("change listener lost the database (%s); retrying", exc)
                self._wake()
                await asyncio.sleep(1)
