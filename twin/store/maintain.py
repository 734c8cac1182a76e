"""Routine upkeep of the history's storage: `twin db maintain`, monthly or nightly from cron.

Versions live in a partition per month they closed in (migration 0010). Maintenance makes
this month's and next month's partitions (versions of a month without one wait in a default
partition, correct but unsorted) and sorts each month that is over by place, once, so an
``asOf`` box reads a few neighbouring pages. Nothing here changes what any query answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text


@dataclass(frozen=True)
class Maintained:
    partitions_made: int
    months_sorted: list[str]


def make_partitions(conn: Connection, since: datetime | None = None,
                    upto: datetime | None = None) -> int:
    """Partitions for the months from ``since``'s to ``upto``'s (default: this month and the
    next), holding the versions of those months that waited in the default partition."""
    return int(conn.execute(text(
        "SELECT twin.version_partitions(coalesce(CAST(:since AS timestamptz), now()), "
        "coalesce(CAST(:upto AS timestamptz), now() + interval '1 month'))"),
        {"since": since, "upto": upto}).scalar_one())


def unsorted_months(engine: Engine) -> list[str]:
    """The partitions of months that are over and not yet sorted by place."""
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(
            text("SELECT part::text FROM twin.unsorted_version_months"))]


def maintain(engine: Engine, months: list[str],
             progress: Callable[[int], None] = lambda _: None) -> Maintained:
    """Make the coming partitions, then sort ``months`` (from :func:`unsorted_months`), each
    in its own transaction so a long run keeps what it finished."""
    with engine.begin() as conn:
        made = make_partitions(conn)
    for part in months:
        with engine.begin() as conn:
            conn.execute(text("SELECT twin.sort_versions(CAST(:part AS regclass))"),
                         {"part": part})
        progress(1)
    return Maintained(made, months)
