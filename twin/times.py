"""RFC 3339 instants as every caller takes them (query parameters, `--as-of`, `--from`),
and the plain dates a period report may begin and end on.

One parser, so the API and the command line accept and refuse the same spellings.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from twin.errors import InvalidInput, Problem

# An unencoded "+08:00" in a URL arrives as " 08:00": take it as the offset it was meant to be.
_LOST_PLUS = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})$")
EXAMPLE = "e.g. 2026-06-30T18:00:00+08:00"


def _bad(name: str, value: str, reason: str, reason_zh: str) -> InvalidInput:
    return InvalidInput(f"{name}={value}: {reason}", [Problem(name, value, reason, reason_zh)])


def instant(raw: str, name: str, whole: str | None = None,
            expected: str = f"is not an RFC 3339 time, {EXAMPLE}") -> datetime:
    """``raw`` as an aware datetime; ``whole`` is what to quote when ``raw`` is part of it."""
    quoted = raw if whole is None else whole
    try:
        value = datetime.fromisoformat(_LOST_PLUS.sub(r"\1+\2", raw).replace("Z", "+00:00"))
    except ValueError:
        raise _bad(name, quoted, expected, "时间格式无效") from None
    if value.tzinfo is None:
        raise _bad(name, quoted, "is not an RFC 3339 time with an offset (Z or +08:00)",
                   "时间须带时区")
    return value


def parse_time(name: str, raw: str | None) -> datetime | None:
    """One instant (``asOf``, ``from``, ``to``, ``--as-of``), or None when not given."""
    return None if raw is None else instant(raw, name)


def parse_day_or_time(name: str, raw: str | None, zone: str) -> datetime | None:
    """A report's bound: an RFC 3339 time, or a plain date (``2026-01-01``) meaning that
    day's first moment in the subdistrict's time zone ``zone`` (where its days are counted)."""
    if raw is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw.strip()):
        try:
            day = date.fromisoformat(raw.strip())
        except ValueError:
            raise _bad(name, raw, "is not a date (YYYY-MM-DD) nor an RFC 3339 time",
                       "日期无效") from None
        return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone))
    return parse_time(name, raw)
