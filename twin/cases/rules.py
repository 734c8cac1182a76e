"""The rules cases follow, as data: departments, categories with their stage limits, the
working-time calendar (holidays and make-up working days 调休) and the loop's distances.
Loaded from TOML files (``data/case_categories.toml``, ``data/working_calendar.toml`` for
Shanghai), edited by admins; the database logs every change of them (twin.log_rules)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, text

from twin.errors import InvalidInput, Problem

LIMIT = re.compile(r"([0-9]+(\.[0-9]+)?h|[0-9]+d)")
STAGES = ("file", "dispatch", "handle", "verify")
CATEGORY_FIELDS = ("code", "kind", "major_zh", "major_en", "name_zh", "name_en", "handler",
                   "department", "layer", "file_limit", "dispatch_limit", "handle_limit",
                   "verify_limit", "file_when_zh", "file_when_en", "close_when_zh",
                   "close_when_en")


@dataclass(frozen=True)
class Calendar:
    """Working periods of a day and the days that differ from Monday to Friday."""

    time_zone: str
    hours: list[tuple[time, time]]
    days: dict[date, tuple[bool, str]]  # day -> (working, source)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file of rules; unreadable or broken, an InvalidInput naming the file."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}",
                           [Problem("file", str(path), exc.strerror or "unreadable", "无法读取")]
                           ) from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{path} is not TOML: {exc}",
                           [Problem("file", str(path), str(exc), "不是有效的TOML")]) from None


def read_categories(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Departments and categories from a file like data/case_categories.toml, checked."""
    raw = read_toml(path)
    departments = raw.get("department", [])
    categories = raw.get("category", [])
    problems: list[Problem] = []
    known = {d.get("code") for d in departments}
    for n, cat in enumerate(categories, 1):
        where = f"category[{n}]"
        for name in ("code", "kind", "name_zh", "name_en", "handler", "department",
                     *(f"{s}_limit" for s in STAGES)):
            if not isinstance(cat.get(name), str):
                problems.append(Problem(f"{where}.{name}", cat.get(name), "required text",
                                        "必填"))
        if cat.get("department") not in known:
            problems.append(Problem(f"{where}.department", cat.get("department"),
                                    "no [[department]] has this code", "无此部门"))
        for stage in STAGES:
            value = cat.get(f"{stage}_limit")
            if isinstance(value, str) and not LIMIT.fullmatch(value):
                problems.append(Problem(f"{where}.{stage}_limit", value,
                                        "<n>h working hours or <n>d working days",
                                        "时限格式为<n>h(工作时)或<n>d(工作日)"))
        unknown = set(cat) - set(CATEGORY_FIELDS)
        problems.extend(Problem(f"{where}.{name}", cat[name], "not a category field",
                                "未知字段") for name in sorted(unknown))
    if problems:
        raise InvalidInput(f"{path}: {len(problems)} problem(s) in the categories", problems)
    return departments, categories


def read_calendar(path: Path) -> Calendar:
    """The calendar from a file like data/working_calendar.toml, checked."""
    raw = read_toml(path)
    problems: list[Problem] = []
    zone = raw.get("time_zone", "Asia/Shanghai")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(Problem("time_zone", zone, "not an IANA time zone", "时区无效"))
    hours: list[tuple[time, time]] = []
    for n, pair in enumerate(raw.get("hours", []), 1):
        try:
            start, end = (time.fromisoformat(p) for p in pair)
        except (TypeError, ValueError):
            problems.append(Problem(f"hours[{n}]", pair, '["HH:MM", "HH:MM"]', "格式错误"))
            continue
        if end <= start:
            problems.append(Problem(f"hours[{n}]", pair, "ends after it starts", "须先始后终"))
        hours.append((start, end))
    if not hours and not problems:
        problems.append(Problem("hours", [], "at least one working period", "至少一个工作时段"))
    days: dict[date, tuple[bool, str]] = {}
    for year in raw.get("year", []):
        source = str(year.get("source", ""))
        for working, key in ((False, "off"), (True, "work")):
            for item in year.get(key, []):
                try:
                    first, _, last = str(item).partition("..")
                    day, end_day = date.fromisoformat(first), date.fromisoformat(last or first)
                except ValueError:
                    problems.append(Problem(f"year {year.get('year')}.{key}", item,
                                            "YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD", "日期格式错误"))
                    continue
                while day <= end_day:
                    days[day] = (working, source)
                    day += timedelta(days=1)
    if problems:
        raise InvalidInput(f"{path}: {len(problems)} problem(s) in the calendar", problems)
    return Calendar(zone, hours, days)


def load_rules(conn: Connection, categories: Path, calendar: Path) -> dict[str, int]:
    """Make the twin's rules those of the files: rows added, changed or removed (each change
    logged under the transaction's context). A category that cases use is deactivated, not
    removed. Returns counts of what is now there."""
    departments, cats = read_categories(categories)
    cal = read_calendar(calendar)
    for d in departments:
        conn.execute(text(
            "INSERT INTO twin.departments (code, name_zh, name_en) VALUES (:code, :zh, :en) "
            "ON CONFLICT (code) DO UPDATE SET name_zh = EXCLUDED.name_zh, "
            "name_en = EXCLUDED.name_en WHERE (twin.departments.name_zh, "
            "twin.departments.name_en) IS DISTINCT FROM (EXCLUDED.name_zh, EXCLUDED.name_en)"),
            {"code": d["code"], "zh": d["name_zh"], "en": d["name_en"]})
    columns = ", ".join(CATEGORY_FIELDS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in CATEGORY_FIELDS[1:])
    for cat in cats:
        row = {c: cat.get(c, "" if c.endswith(("_zh", "_en")) and "when" in c else None)
               for c in CATEGORY_FIELDS}
        conn.execute(text(
            f"INSERT INTO twin.case_categories ({columns}, active) VALUES "  # noqa: S608
            f"({', '.join(':' + c for c in CATEGORY_FIELDS)}, true) ON CONFLICT (code) DO UPDATE "
            f"SET {updates}, active = true WHERE (twin.case_categories.*) IS DISTINCT FROM "
            f"(EXCLUDED.*)"), row)
    codes = [c["code"] for c in cats]
    conn.execute(text("UPDATE twin.case_categories SET active = false WHERE active "
                      "AND code <> ALL(:codes) AND code IN (SELECT category FROM twin.cases)"),
                 {"codes": codes})
    conn.execute(text("DELETE FROM twin.case_categories WHERE code <> ALL(:codes) "
                      "AND code NOT IN (SELECT category FROM twin.cases)"), {"codes": codes})
    conn.execute(text("UPDATE twin.case_rules SET time_zone = :z WHERE time_zone <> :z"),
                 {"z": cal.time_zone})
    conn.execute(text("DELETE FROM twin.work_periods WHERE (starts, ends) NOT IN "
                      "(SELECT * FROM unnest(CAST(:s AS time[]), CAST(:e AS time[])))"),
                 {"s": [h[0] for h in cal.hours], "e": [h[1] for h in cal.hours]})
    conn.execute(text("INSERT INTO twin.work_periods SELECT * FROM unnest(CAST(:s AS time[]), "
                      "CAST(:e AS time[])) ON CONFLICT (starts) DO UPDATE SET ends = "
                      "EXCLUDED.ends WHERE twin.work_periods.ends <> EXCLUDED.ends"),
                 {"s": [h[0] for h in cal.hours], "e": [h[1] for h in cal.hours]})
    days = sorted(cal.days)
    conn.execute(text("DELETE FROM twin.calendar_days WHERE day <> ALL(:d)"), {"d": days})
    conn.execute(text(
        "INSERT INTO twin.calendar_days (day, working, source) SELECT * FROM "
        "unnest(CAST(:d AS date[]), CAST(:w AS boolean[]), CAST(:s AS text[])) "
        "ON CONFLICT (day) DO UPDATE SET working = EXCLUDED.working, source = EXCLUDED.source "
        "WHERE (twin.calendar_days.working, twin.calendar_days.source) IS DISTINCT FROM "
        "(EXCLUDED.working, EXCLUDED.source)"),
        {"d": days, "w": [cal.days[d][0] for d in days], "s": [cal.days[d][1] for d in days]})
    conn.execute(text("DELETE FROM twin.departments WHERE code NOT IN (SELECT department "
                      "FROM twin.case_categories) AND code <> ALL(:codes) AND code NOT IN "
                      "(SELECT department FROM twin.users WHERE department IS NOT NULL) "
                      "AND code NOT IN (SELECT department FROM twin.cases WHERE department "
                      "IS NOT NULL)"), {"codes": [d["code"] for d in departments]})
    return {"departments": len(departments), "categories": len(cats),
            "calendar_days": len(days), "work_periods": len(cal.hours)}


def rules_loaded(conn: Connection) -> bool:
    return bool(conn.execute(text("SELECT EXISTS (SELECT FROM twin.case_categories)")).scalar())


def categories(conn: Connection) -> list[dict[str, Any]]:
    """Every active category with its stage limits and department, by code."""
    rows = conn.execute(text(
        "SELECT c.*, d.name_zh AS department_zh, d.name_en AS department_en "
        "FROM twin.case_categories c JOIN twin.departments d ON d.code = c.department "
        "WHERE c.active ORDER BY c.code")).mappings()
    out = []
    for r in rows:
        item = {k: r[k] for k in CATEGORY_FIELDS if k not in (
            *(f"{s}_limit" for s in STAGES), "department")}
        item["limits"] = {s: r[f"{s}_limit"] for s in STAGES}
        item["department"] = {"code": r["department"], "name_zh": r["department_zh"],
                              "name_en": r["department_en"]}
        out.append(item)
    return out


def transitions(conn: Connection) -> list[dict[str, Any]]:
    """The lifecycle's table: every allowed move, who may make it and what it needs."""
    return [dict(r) for r in conn.execute(text(
        "SELECT from_state AS \"from\", to_state AS \"to\", name_zh, name_en, roles, needs "
        "FROM twin.case_transitions ORDER BY from_state, to_state")).mappings()]
