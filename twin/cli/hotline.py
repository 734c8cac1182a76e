"""`twin hotline`: 12345 hotline work orders for dispatchers' scripts and IT staff: the
rules, importing the city system's export, the queue and lists, the rates, erasing callers'
contacts after the retention period, Open311 client keys."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from twin.cli.common import (
    app,
    app_engine,
    bars,
    domain_errors,
    err,
    load_settings,
    out,
    staff,
)

hotline_app = typer.Typer(help="12345 hotline work orders (热线工单): rules, import, lists, "
                          "rates, callers' data.", no_args_is_help=True)
app.add_typer(hotline_app, name="hotline")
rules_app = typer.Typer(help="The hotline's rules: kinds, duties (首办, 兜底, 指定), repeats.",
                        no_args_is_help=True)
hotline_app.add_typer(rules_app, name="rules")
client_app = typer.Typer(help="Outside systems filing and reading through Open311.",
                         no_args_is_help=True)
hotline_app.add_typer(client_app, name="client")

STATE_ZH = {"received": "受理", "accepted": "签收", "contacted": "已联系", "replied": "已答复",
            "closed": "办结", "reopened": "重办", "returned": "退单"}
BATCH = 500


@rules_app.command("load")
def rules_load(
    file: Annotated[Path, typer.Option(help="The rules (TOML); default: the Shanghai rules "
                                       "shipped with Twin, sources cited in it.")] = Path(
        "hotline_rules.toml"),
    reason: Annotated[str, typer.Option(help="Why, for the rules' log.")] = "rules loaded",
) -> None:
    """Make the twin's hotline rules those of the file; every change is logged."""
    from twin.hotline.rules import load_hotline_rules
    from twin.sample.spec import spec_path
    from twin.store.db import EditContext, editing

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        with editing(engine, EditContext(staff().name, "admin", "twin hotline rules load",
                                         reason)) as conn:
            counts = load_hotline_rules(conn, spec_path(str(file)))
    out.print(", ".join(f"{n} {what}" for what, n in counts.items()))


@rules_app.command("show")
def rules_show() -> None:
    """Kinds with their handling limits, duties with their clocks (h working hours, d days)."""
    from twin.hotline.rules import hotline_rules

    settings = load_settings()
    with domain_errors(), app_engine(settings).connect() as conn:
        rules = hotline_rules(conn)
    kinds = Table("code", "类型 kind", "办结 handle")
    for k in rules["kinds"]:
        kinds.add_row(k["code"], f"{k['name_zh']} {k['name_en']}", k["handle_limit"])
    duties = Table("code", "规则 duty", "签收 accept", "先行联系 contact", "办结 handle",
                   "重办 re-handle", "回访 visit")
    for d in rules["duties"]:
        duties.add_row(d["code"], f"{d['name_zh']} {d['name_en']}", d["accept_limit"],
                       d["contact_limit"], d["handle_limit"] or "(kind's)", d["rehandle_limit"],
                       d["visit_limit"])
    out.print(kinds, duties)
    r = rules["rules"]
    out.print(f"repeat calls: same kind and category within {r['repeat_distance_m']:g} m and "
              f"{r['repeat_days']} days share one case; extensions up to {r['max_extension']}")


@hotline_app.command("import")
def import_orders(
    file: Annotated[Path, typer.Argument(help="The city system's export: CSV or Excel (.xlsx), "
                                         "columns 工单编号, 受理时间, 诉求类型, 责任规则, "
                                         "诉求地址, 诉求内容, 来电人, 联系电话 (or English).")],
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Import the good rows of a file "
                                           "with bad ones (else nothing is imported).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and place, write nothing."
                                          )] = False,
) -> None:
    """Receive each order of the export, placed from its address (or queued for a person);
    idempotent by order number: importing the same file again changes nothing, a changed row
    updates its order and logs what changed."""
    from twin.hotline.imports import read_orders
    from twin.hotline.loop import receive_orders

    settings = load_settings()
    counts = {"created": 0, "updated": 0, "unchanged": 0, "queued": 0}
    bad: list[tuple[int, Any]] = []
    refused: list[tuple[str, Any]] = []
    with domain_errors():
        engine = app_engine(settings)
        with engine.begin() as conn:
            rows = list(read_orders(conn, file, settings.time_zone))
            bad = [(r.number, p) for r in rows for p in r.problems]
            good = [r.order for r in rows if r.order is not None]
            if bad and not (skip_bad or dry_run):
                _print_bad(bad)
                err.print(f"nothing imported: {len(bad)} problem(s) in "
                          f"{len({n for n, _ in bad})} row(s); fix them or use --skip-bad")
                raise typer.Exit(1)
            with bars() as stage:
                advance = stage("orders 工单", len(good))
                for start in range(0, len(good), BATCH):
                    for got in receive_orders(conn, staff(), good[start:start + BATCH]):
                        counts[got.status] += 1
                        placement = got.placement
                        counts["queued"] += placement is not None and not placement.placed
                        refused.extend((str(got.id), p) for p in got.problems)
                    advance(len(good[start:start + BATCH]))
            if dry_run:
                conn.rollback()
    if bad:
        _print_bad(bad)
        err.print(f"skipped {len({n for n, _ in bad})} bad row(s)")
    for order_id, p in refused:
        err.print(f"order {order_id}: {p.field}: {p.reason} ({p.reason_zh})")
    verb = "would be" if dry_run else "were"
    out.print(f"{counts['created']:,} created, {counts['updated']:,} updated, "
              f"{counts['unchanged']:,} unchanged ({verb} written); {counts['queued']:,} "
              "could not be placed from their address and wait in the queue (twin hotline "
              "list --queue)")


def _print_bad(bad: list[tuple[int, Any]]) -> None:
    table = Table("row 行", "field 字段", "value 值", "reason 原因", title="bad rows 错误行")
    for number, p in bad[:50]:
        table.add_row(str(number), p.field, str(p.value)[:40], f"{p.reason} / {p.reason_zh}")
    err.print(table)
    if len(bad) > 50:
        err.print(f"... and {len(bad) - 50} more")


@hotline_app.command("list")
def list_orders_command(
    queue: Annotated[bool, typer.Option("--queue", help="Only orders not placed yet.")] = False,
    waiting: Annotated[str | None, typer.Option(help="accept, contact, reply or visit.")
                       ] = None,
    warning: Annotated[bool, typer.Option("--warning", help="Only warned orders (a "
                                          "dissatisfied caller).")] = False,
    state: Annotated[str | None, typer.Option(help="States, comma-separated.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print GeoJSON.")] = False,
) -> None:
    """Orders, newest first, with their state and handling deadline (callers masked)."""
    from twin.hotline.reads import OrderQuery, list_orders

    settings = load_settings()
    query = OrderQuery(state=tuple((state or "").split(",")) if state else (),
                       queued=True if queue else None, warning=True if warning else None,
                       waiting=waiting, limit=limit)
    with domain_errors(), app_engine(settings).connect() as conn:
        found = list_orders(conn, staff(), query)
    if as_json:
        out.print_json(json.dumps(found, ensure_ascii=False, default=str))
        return
    table = Table("id", "工单编号 number", "状态 state", "类型 kind", "规则 duty",
                  "地址 address", "grid", "办结时限 due",
                  title=f"{found['numberMatched']:,} orders")
    for f in found["features"]:
        p = f["properties"]
        table.add_row(str(f["id"]), p["order_number"], f"{STATE_ZH[p['state']]} {p['state']}",
                      p["kind_zh"], p["duty_zh"], p["address"][:30],
                      p["micro_grid"] or ("待定位 queue" if p["queued"] else "-"),
                      str(p["due"]["handle"])[:16])
    out.print(table)


@hotline_app.command("rates")
def rates(
    start: Annotated[str, typer.Option("--from", help="First day (or RFC 3339 time).")],
    end: Annotated[str, typer.Option("--to", help="Day after the last (or a time).")],
    by: Annotated[str | None, typer.Option(help="grid, area, department, kind or duty.")
                  ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The hotline's figures and rates of [from, to), with their formulas."""
    from twin.hotline.kpis import FIGURES, RATES, kpis
    from twin.times import parse_day_or_time

    settings = load_settings()
    with domain_errors():
        begin = parse_day_or_time("from", start, settings.time_zone)
        finish = parse_day_or_time("to", end, settings.time_zone)
        assert begin is not None and finish is not None
        with app_engine(settings).connect() as conn:
            answer = kpis(conn, begin, finish, by)
    if as_json:
        out.print_json(json.dumps(answer, ensure_ascii=False, default=str))
        return
    # one column per rate, each cell the rate over its count and what it divides by (every
    # figure's count is in --json); printed 100 wide even into a pipe or a narrow terminal
    table = Table(title=f"热线工单 Hotline orders {start} .. {end}", box=box.SIMPLE_HEAD)
    table.add_column(by or "", no_wrap=True)
    table.add_column(f"{FIGURES['received'][1]}\nreceived", justify="right")
    for _num, _den, zh, en in RATES.values():
        table.add_column(f"{zh}\n{en}", justify="right")

    def cells(group: dict[str, Any]) -> list[str]:
        return [f"{group['received']:,}", *(
            "-" if group[rate] is None else f"{group[rate]:.1%}\n{group[num]}/{group[den]}"
            for rate, (num, den, _zh, _en) in RATES.items())]

    for group in answer["groups"]:
        table.add_row(group["key"] or "-", *cells(group))
    table.add_section()
    table.add_row("合计 total", *cells(answer["total"]), style="bold")
    Console(width=max(out.width, 100)).print(table)
    for name, (num, den, zh, _) in RATES.items():
        out.print(f"  {zh} {name} = {num} / {den}")


@hotline_app.command("erase")
def erase(
    days: Annotated[int | None, typer.Option(min=1, help="Erase contacts of orders ended more "
                                             "than this many days ago (default: "
                                             "TWIN_CALLER_RETENTION_DAYS).")] = None,
) -> None:
    """Erase callers' names and phones after the retention period (run it daily from cron or
    a systemd timer); each erasure is logged, the orders and their history remain."""
    from twin.hotline.loop import erase_callers

    settings = load_settings()
    keep = days or settings.caller_retention_days
    before = datetime.now(UTC) - timedelta(days=keep)
    with domain_errors():
        n = erase_callers(app_engine(settings), staff(), before)
    out.print(f"erased the contacts of {n:,} order(s) ended before {before:%Y-%m-%d %H:%M} UTC "
              f"({keep} days kept)")


@client_app.command("add")
def client_add(name: Annotated[str, typer.Argument(help="The outside system's name, e.g. "
                                                   "resident-app (2-40 letters, digits, . _ -).")]
               ) -> None:
    """Give an outside system an API key for POST /open311/v2/requests.json (printed once;
    only its hash is kept)."""
    from twin.hotline.clients import add_client

    settings = load_settings()
    with domain_errors(), app_engine(settings).begin() as conn:
        key = add_client(conn, name)
    out.print(f"api_key for {name} (shown once): {key}")


@client_app.command("list")
def client_list() -> None:
    """The outside systems with keys, and whether each is active."""
    from twin.hotline.clients import list_clients

    settings = load_settings()
    with domain_errors(), app_engine(settings).connect() as conn:
        found = list_clients(conn)
    table = Table("name", "active", "created")
    for c in found:
        table.add_row(c["name"], str(c["active"]), str(c["created_at"])[:16])
    out.print(table)


@client_app.command("deactivate")
def client_deactivate(name: Annotated[str, typer.Argument(help="The client's name.")]) -> None:
    """Refuse the client's key from now on."""
    from twin.hotline.clients import deactivate_client

    settings = load_settings()
    with domain_errors(), app_engine(settings).begin() as conn:
        deactivate_client(conn, name)
    out.print(f"{name}: deactivated")
