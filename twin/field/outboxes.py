"""What tablets hold unsynced: each sync batch carries the device's count of the edits still
waiting in its outbox besides the batch (and the oldest one's device time). The server cannot
see into a tablet that is offline; this is what the device last said, kept per device and
user, and read as the board's "devices with pending edits, oldest unsynced edit".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from twin.users import User


@dataclass(frozen=True, slots=True)
class OutboxReport:
    """A device's own account of its outbox when it sent a batch."""

    device: str
    waiting: int
    oldest: datetime | None
    sent_at: datetime


_RECORD_SQL = """
INSERT INTO twin.device_outboxes AS o (device, actor, grid_codes, waiting, oldest, sent_at)
VALUES (:device, :actor, :grids, :waiting, :oldest, :sent_at)
ON CONFLICT (device, actor) DO UPDATE
   SET grid_codes = excluded.grid_codes, waiting = excluded.waiting, oldest = excluded.oldest,
       sent_at = excluded.sent_at, reported_at = now()
 WHERE o.sent_at <= excluded.sent_at
"""


def record(engine: Engine, user: User, report: OutboxReport) -> None:
    """Keep ``report`` unless the device already sent a newer one (a retry arriving late)."""
    with engine.begin() as conn:
        conn.execute(text(_RECORD_SQL), {
            "device": report.device, "actor": user.name, "grids": list(user.grids),
            "waiting": report.waiting, "oldest": report.oldest, "sent_at": report.sent_at})


_UNSYNCED_SQL = """
SELECT count(*) AS devices_unsynced, coalesce(sum(waiting), 0) AS edits_unsynced,
       min(oldest) AS oldest_unsynced, min(reported_at) AS stalest_report
  FROM twin.device_outboxes
 WHERE waiting > 0 AND (CAST(:grids AS text[]) IS NULL OR grid_codes && :grids)
"""


def unsynced(conn: Connection, grids: Sequence[str] | None = None) -> dict[str, Any]:
    """Devices whose last report had edits waiting, how many, the oldest one's device time and
    the earliest of those reports (how stale the picture may be); of ``grids`` when given."""
    row = conn.execute(text(_UNSYNCED_SQL), {
        "grids": list(grids) if grids is not None else None}).one()._mapping
    return dict(row)
