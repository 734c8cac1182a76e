"""Deadlines in working time: the calendar's holidays and make-up working days (调休) and
its working periods, as data; the limits counted by twin.add_work in SQL."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from tests.conftest import Database


def _due(db: Database, start: str, limit: str) -> str:
    value: datetime = db.scalar("SELECT twin.add_work(CAST(:t AS timestamptz), :l)",
                                t=start, l=limit)
    return value.astimezone(ZoneInfo("Asia/Shanghai")).isoformat()


@pytest.mark.parametrize(("start", "limit", "due"), [
    # 4 working hours from 08:30: 3 in the morning, 1 after lunch (11:30-13:30)
    ("2026-03-03T08:30:00+08:00", "4h", "2026-03-03T14:30:00+08:00"),
    # the day's end carries over to the next working day's start
    ("2026-03-03T16:30:00+08:00", "2h", "2026-03-04T10:00:00+08:00"),
    # a Friday evening: the weekend does not count
    ("2026-03-06T18:00:00+08:00", "1h", "2026-03-09T09:30:00+08:00"),
    # across National Day 2026 (10-01..10-07 off): from Wednesday 09-30 16:00
    ("2026-09-30T16:00:00+08:00", "2h", "2026-10-08T09:30:00+08:00"),
    # Saturday 2026-10-10 is a make-up working day (调休): it counts
    ("2026-10-09T16:30:00+08:00", "1h", "2026-10-10T09:00:00+08:00"),
    # working days are counted from the next day and end when its working hours end
    ("2026-03-03T10:00:00+08:00", "1d", "2026-03-04T17:00:00+08:00"),
    # Friday 02-13 before the Spring Festival: Saturday 02-14 is a make-up working day
    ("2026-02-13T10:00:00+08:00", "1d", "2026-02-14T17:00:00+08:00"),
    # ... and the next one after it is 02-24 (02-15..02-23 off)
    ("2026-02-13T10:00:00+08:00", "2d", "2026-02-24T17:00:00+08:00"),
    # 20 working days of a demolition over Labour Day 2026 (05-01..05-05 off, 05-09 worked)
    ("2026-04-20T10:00:00+08:00", "20d", "2026-05-20T17:00:00+08:00"),
])
def test_due_across_holidays_and_make_up_days(sample_db: Database, start: str, limit: str,
                                              due: str) -> None:
    assert _due(sample_db, start, limit) == due


def test_working_time_between_counts_only_working_periods(sample_db: Database) -> None:
    hours = sample_db.scalar(
        "SELECT extract(epoch FROM twin.work_between('2026-09-30T16:00:00+08:00', "
        "'2026-10-08T10:00:00+08:00')) / 3600")
    assert float(hours) == pytest.approx(1.0 + 1.5)  # 16:00-17:00, then 08:30-10:00


def test_the_calendar_is_data_and_its_changes_are_logged(sample_db: Database) -> None:
    before = sample_db.scalar("SELECT count(*) FROM twin.rule_changes")
    with sample_db.admin.begin() as conn:
        conn.execute(text(
            "INSERT INTO twin.calendar_days (day, working, source) "
            "VALUES ('2026-03-04', false, 'a typhoon day off')"))
    assert _due(sample_db, "2026-03-03T16:30:00+08:00", "2h") == "2026-03-05T10:00:00+08:00"
    logged = sample_db.one("SELECT rule_table, operation, new_values ->> 'source' "
                           "FROM twin.rule_changes ORDER BY id DESC LIMIT 1")
    assert tuple(logged) == ("calendar_days", "insert", "a typhoon day off")
    assert sample_db.scalar("SELECT count(*) FROM twin.rule_changes") == before + 1
