"""`twin cases`: the rules cases follow, and cases themselves, for admins and scripts; and
`twin report --cases` (the figures with their formulas)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from twin.cli.common import app, app_engine, domain_errors, err, load_settings, out
from twin.settings import Settings

cases_app = typer.Typer(help="Cases (一网统管): rules, lists, moves.", no_args_is_help=True)
app.add_typer(cases_app, name="cases")
rules_app = typer.Typer(help="The rules cases follow: categories, departments, calendar.",
                        no_args_is_help=True)
cases_app.add_typer(rules_app, name="rules")

STATE_ZH = {"reported": "上报", "filed": "立案", "not_filed": "不予立案", "dispatched": "派遣",
            "handled": "处置", "closed": "结案", "parked": "挂账", "void": "作废"}


def _shipped(name: str) -> Path:
    from twin.sample.spec import spec_path

    return spec_path(name)


@rules_app.command("load")
def rules_load(
    categories: Annotated[Path, typer.Option(
        help="Categories with their stage limits and departments (TOML).")] = Path(
        "case_categories.toml"),
    calendar: Annotated[Path, typer.Option(
        help="Working calendar: working periods, holidays, make-up days (TOML).")] = Path(
        "working_calendar.toml"),
    reason: Annotated[str, typer.Option(help="Why, for the rules' log.")] = "rules loaded",
) -> None:
    """Make the twin's case rules those of the files (default: Shanghai's, shipped with
    Twin). Every row added, changed or removed is logged; a category in use is deactivated,
    never removed."""
    from twin.cases.rules import load_rules
    from twin.store.db import EditContext, editing

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        actor = os.environ.get("USER", "twin")
        with editing(engine, EditContext(actor, "admin", "twin cases rules load",
                                         reason)) as conn:
            counts = load_rules(conn, _shipped(str(categories)), _shipped(str(calendar)))
    out.print(", ".join(f"{n} {what}" for what, n in counts.items()))


@rules_app.command("show")
def rules_show() -> None:
    """The categories with their stage limits (working hours h, working days d)."""
    from twin.cases.rules import categories

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        with engine.connect() as conn:
            found = categories(conn)
    table = Table("code", "类别 category", "handler", "部门 department", "立案 file",
                  "派遣 dispatch", "处置 handle", "核查 verify")
    for c in found:
        table.add_row(c["code"], f"{c['name_zh']} {c['name_en']}", c["handler"],
                      c["department"]["name_zh"], *c["limits"].values())
    out.print(table)


@cases_app.command("list")
def cases_list(
    state: Annotated[str | None, typer.Option(help="States, comma-separated.")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue open cases.")] = False,
    grid: Annotated[str | None, typer.Option(help="A micro-grid's code.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print GeoJSON.")] = False,
) -> None:
    """Cases, oldest first, with who has them and their deadlines."""
    from twin.cases.reads import CaseQuery, list_cases
    from twin.users import User

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        query = CaseQuery(states=tuple((state or "").split(",")) if state else (),
                          overdue=True if overdue else None, micro_grid=grid, limit=limit)
        found = list_cases(engine, User(0, "twin", "admin", ()), query)
    if as_json:
        out.print_json(json.dumps(found, ensure_ascii=False, default=str))
        return
    table = Table("id", "状态 state", "类别 category", "grid", "assignee / department",
                  "due", "overdue h", title=f"{found['numberMatched']:,} cases")
    for f in found["features"]:
        p = f["properties"]
        table.add_row(str(f["id"]), f"{STATE_ZH[p['state']]} {p['state']}", p["category_zh"],
                      p["micro_grid"] or "-", p["assignee"] or p["department"] or "-",
                      str(p["due"]["case"] or p["due"]["stage"] or "-")[:16],
                      str(p["overdue_hours"] or ""))
    out.print(table)


@cases_app.command("show")
def cases_show(case_id: Annotated[int, typer.Argument(help="The case's id.")]) -> None:
    """One case and its events, as JSON."""
    from twin.cases.reads import case_events, get_case
    from twin.users import User

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        staff = User(0, "twin", "admin", ())
        case = get_case(engine, staff, case_id)
        case["events"] = case_events(engine, staff, case_id)
    out.print_json(json.dumps(case, ensure_ascii=False, default=str))


@cases_app.command("move")
def cases_move(
    case_id: Annotated[int, typer.Argument(help="The case's id.")],
    to: Annotated[str, typer.Argument(help="The state to go to: filed, dispatched, ...")],
    as_user: Annotated[str, typer.Option("--as", help="Who acts (a user's name): the move "
                                         "is theirs, with their role's rights.")],
    reason: Annotated[str | None, typer.Option(help="Why (some moves need it).")] = None,
    assignee: Annotated[str | None, typer.Option(help="Dispatch to this user.")] = None,
    department: Annotated[str | None, typer.Option(help="Dispatch to this department.")
                          ] = None,
    approver: Annotated[str | None, typer.Option(help="Who approved (parking).")] = None,
) -> None:
    """Move a case along its lifecycle as a user would over HTTP (verification needs a
    photo and a position: use the API or the field page for it)."""
    from twin.cases.loop import Move, transition
    from twin.users import user_named

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        user = user_named(engine, as_user)
        outcome = transition(engine, user, case_id, Move(to, reason, assignee, department,
                                                         approver), None, False)
        if outcome.refusal is not None:
            raise outcome.refusal
    p = (outcome.feature or {}).get("properties", {})
    out.print(f"case {case_id}: {STATE_ZH.get(p.get('state', ''), '')} {p.get('state')} "
              f"(version {p.get('version')}), due {p.get('due', {}).get('stage')}")


def case_report(settings: Settings, start: str, end: str, by: str | None,
                as_json: bool) -> None:
    """`twin report --cases`: the figures of [start, end) with their formulas."""
    from twin.cases.kpis import FIGURES, RATES, check_period, kpis
    from twin.times import parse_day_or_time
    from twin.users import User

    with domain_errors():
        begin = parse_day_or_time("from", start, settings.time_zone)
        finish = parse_day_or_time("to", end, settings.time_zone)
        assert begin is not None and finish is not None
        engine = app_engine(settings)
        answer = kpis(engine, User(0, "twin", "admin", ()), check_period(begin, finish), by)
    if as_json:
        out.print_json(json.dumps(answer, ensure_ascii=False, default=str))
        return
    as_of = answer["period"]["as_of"][:16].replace("T", " ")
    table = Table(title=f"案件 Cases {start} .. {end} (as of {as_of})")
    table.add_column(by or "", no_wrap=True)
    names = [*FIGURES, *RATES]
    for name in names:
        label = FIGURES[name][2] if name in FIGURES else RATES[name][2].split(" =")[0]
        table.add_column(f"{label}\n{name}", justify="right")

    def cells(group: dict[str, Any]) -> list[str]:
        return [f"{group[n]:.1%}" if n in RATES and group[n] is not None else
                "-" if group[n] is None else f"{group[n]:,}" for n in names]

    for group in answer["groups"]:
        table.add_row(group["key"] or "-", *cells(group))
    table.add_section()
    table.add_row("合计 total", *cells(answer["total"]), style="bold")
    out.print(table)
    for name, formula in answer["formulas"].items():
        if name in RATES:
            out.print(f"  {name}: {formula}")
    stages = ", ".join(f"{s} {h}h" for s, h in answer["stage_hours"].items() if h is not None)
    if stages:
        out.print(f"  median working hours in each stage: {stages}")
    if not answer["total"]["filed"]:
        err.print("note: no case was filed in this period")
