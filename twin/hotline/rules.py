"""The hotline's rules as data: order types (kinds) with their handling limits, the
responsibility rules (duties: 首办, 兜底, 指定) with their own clocks, and how repeat calls
are merged. Loaded from ``data/hotline_rules.toml`` (its sources cited there); every change
is logged by the database (twin.log_rules), as the cases' rules are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from twin.cases.rules import LIMIT, read_toml
from twin.errors import InvalidInput, Problem

KIND_FIELDS = ("code", "name_zh", "name_en", "handle_limit")
DUTY_FIELDS = ("code", "name_zh", "name_en", "about_zh", "about_en", "accept_limit",
               "contact_limit", "handle_limit", "rehandle_limit", "visit_limit")
RULE_FIELDS = ("repeat_distance_m", "repeat_days", "max_extension")


def read_hotline_rules(path: Path) -> dict[str, Any]:
    """Kinds, duties and the merge rules from a file like data/hotline_rules.toml, checked."""
    raw = read_toml(path)
    problems: list[Problem] = []
    for table, fields, required in (("kind", KIND_FIELDS, KIND_FIELDS),
                                    ("duty", DUTY_FIELDS, ("code", "name_zh", "name_en",
                                                           "accept_limit", "contact_limit",
                                                           "rehandle_limit", "visit_limit"))):
        rows = raw.get(table, [])
        if not rows:
            problems.append(Problem(table, None, f"at least one [[{table}]]", "至少一项"))
        for n, row in enumerate(rows, 1):
            where = f"{table}[{n}]"
            problems.extend(Problem(f"{where}.{name}", row.get(name), "required text", "必填")
                            for name in required if not isinstance(row.get(name), str))
            problems.extend(Problem(f"{where}.{name}", row[name], f"not a {table} field",
                                    "未知字段") for name in sorted(set(row) - set(fields)))
            problems.extend(
                Problem(f"{where}.{name}", row[name], "<n>h working hours or <n>d working days",
                        "时限格式为<n>h(工作时)或<n>d(工作日)")
                for name in fields if name.endswith("_limit") and isinstance(row.get(name), str)
                and row[name] != "" and not LIMIT.fullmatch(row[name]))
    rules = raw.get("rules", {})
    if not isinstance(rules.get("repeat_distance_m", 50), int | float) \
            or rules.get("repeat_distance_m", 50) <= 0:
        problems.append(Problem("rules.repeat_distance_m", rules.get("repeat_distance_m"),
                                "a positive number of metres", "须为正数(米)"))
    if not isinstance(rules.get("repeat_days", 30), int) or rules.get("repeat_days", 30) <= 0:
        problems.append(Problem("rules.repeat_days", rules.get("repeat_days"),
                                "a positive number of days", "须为正整数(天)"))
    if not LIMIT.fullmatch(str(rules.get("max_extension", "15d"))):
        problems.append(Problem("rules.max_extension", rules.get("max_extension"),
                                "<n>h or <n>d", "时限格式为<n>h或<n>d"))
    if problems:
        raise InvalidInput(f"{path}: {len(problems)} problem(s) in the hotline rules", problems)
    return {"kinds": raw["kind"], "duties": raw["duty"],
            "rules": {"repeat_distance_m": rules.get("repeat_distance_m", 50),
                      "repeat_days": rules.get("repeat_days", 30),
                      "max_extension": str(rules.get("max_extension", "15d"))},
            "channels": raw.get("channel", []), "verdicts": raw.get("verdict", []),
            "rates": raw.get("rates", {})}


def _upsert(conn: Connection, table: str, fields: tuple[str, ...], rows: list[dict[str, Any]]
            ) -> None:
    """Make ``table`` hold exactly ``rows`` (a code that orders use stays: it is referenced)."""
    columns = ", ".join(fields)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in fields[1:])
    for row in rows:
        values = {f: (row.get(f) or None) if f == "handle_limit" and table == "order_duties"
                  else row.get(f, "") for f in fields}
        conn.execute(text(
            f"INSERT INTO twin.{table} ({columns}) VALUES "  # noqa: S608
            f"({', '.join(':' + f for f in fields)}) ON CONFLICT (code) DO UPDATE SET {updates} "
            f"WHERE (twin.{table}.*) IS DISTINCT FROM (EXCLUDED.*)"), values)
    column = "kind" if table == "order_kinds" else "duty"
    conn.execute(text(f"DELETE FROM twin.{table} WHERE code <> ALL(:codes) AND code NOT IN "  # noqa: S608
                      f"(SELECT {column} FROM twin.orders)"),
                 {"codes": [r["code"] for r in rows]})


def load_hotline_rules(conn: Connection, path: Path) -> dict[str, int]:
    """Make the twin's hotline rules those of the file; each change logged under the
    transaction's context. Counts of what is now there."""
    rules = read_hotline_rules(path)
    _upsert(conn, "order_kinds", KIND_FIELDS, rules["kinds"])
    _upsert(conn, "order_duties", DUTY_FIELDS, rules["duties"])
    conn.execute(text(
        "UPDATE twin.hotline_rules SET repeat_distance_m = :repeat_distance_m, "
        "repeat_days = :repeat_days, max_extension = :max_extension WHERE (repeat_distance_m, "
        "repeat_days, max_extension) IS DISTINCT FROM (:repeat_distance_m, :repeat_days, "
        ":max_extension)"), rules["rules"])
    return {"kinds": len(rules["kinds"]), "duties": len(rules["duties"])}


def hotline_rules(conn: Connection) -> dict[str, Any]:
    """The rules in force: kinds, duties, the merge rule and the hotline's steps."""
    return {
        "kinds": [dict(r) for r in conn.execute(text(
            "SELECT * FROM twin.order_kinds ORDER BY code")).mappings()],
        "duties": [dict(r) for r in conn.execute(text(
            "SELECT * FROM twin.order_duties ORDER BY code")).mappings()],
        "rules": dict(conn.execute(text(
            "SELECT repeat_distance_m, repeat_days, max_extension FROM twin.hotline_rules"))
            .mappings().one()),
        "transitions": [dict(r) for r in conn.execute(text(
            "SELECT from_state AS \"from\", to_state AS \"to\", name_zh, name_en, roles, needs "
            "FROM twin.order_transitions ORDER BY from_state, to_state")).mappings()],
    }


def hotline_rules_loaded(conn: Connection) -> bool:
    return bool(conn.execute(text("SELECT EXISTS (SELECT FROM twin.order_duties)")).scalar())
