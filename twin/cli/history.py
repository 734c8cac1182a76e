"""`twin report`: what changed in a period."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

if TYPE_CHECKING:
    from twin.history.reports import Counts
from twin.cli.common import (
    GROUP_LABELS,
    app,
    app_engine,
    domain_errors,
    err,
    load_settings,
    out,
)


def _count_cells(counts: Counts) -> list[str]:
    return [f"{n:,}" for n in (counts.inserts, counts.updates, counts.deletes,
                               counts.transitions, counts.changes)]


@app.command("report")
def report_command(
    start: Annotated[str, typer.Option("--from", help="Start (inclusive): a date, e.g. "
                                       "2026-01-01 (that day's start in TWIN_TIME_ZONE), or "
                                       "RFC 3339 with its offset, 2026-01-01T00:00:00+08:00.")],
    end: Annotated[str, typer.Option("--to", help="End (exclusive): a date or RFC 3339.")],
    by: Annotated[str | None, typer.Option(
        help="Group by layer (the default), grid, area, subdistrict or actor; with --cases by "
             "grid, area, subdistrict, department, category or source.")] = None,
    layer: Annotated[str | None, typer.Option(help="Count this layer only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    cases: Annotated[bool, typer.Option(
        "--cases", help="The cases' figures instead (一网统管): filed, due, closed, closed on "
                        "time and their rates, rework, overdue, time in each stage.")] = False,
) -> None:
    """Inserts, updates, deletes and status transitions per group in [from, to); with
    --cases, the cases' figures with their formulas.

    Examples: twin report --from 2026-01-01 --to 2026-07-01 --by grid;
    twin report --cases --from 2026-01-01 --to 2026-07-01 --by department
    """
    from twin.history.reports import change_report, edits_beyond_loads, report_query
    from twin.times import parse_day_or_time

    settings = load_settings()
    if cases:
        from twin.cli.cases import case_report

        case_report(settings, start, end, by, as_json)
        return
    with domain_errors():
        query = report_query(parse_day_or_time("from", start, settings.time_zone),
                             parse_day_or_time("to", end, settings.time_zone), by, layer)
        engine = app_engine(settings)
        report = change_report(engine, query)
        edited = edits_beyond_loads(engine, query)
    if as_json:
        out.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    table = Table(title=f"变更报告 Changes {start} .. {end}")
    table.add_column(GROUP_LABELS[query.by], no_wrap=True)
    for header in ("新增\ninserts", "修改\nupdates", "删除\ndeletes", "状态变化\ntransitions",
                   "合计\nchanges"):
        table.add_column(header, justify="right")
    for key, counts in report.groups.items():
        table.add_row(key or "-", *_count_cells(counts))
    table.add_section()
    table.add_row("合计 total", *_count_cells(report.total), style="bold")
    out.print(table)
    if report.transitions:
        moves = Table("图层 layer", "从 from", "到 to", title="状态变化 Status transitions")
        moves.add_column("次数 count", justify="right")
        for move in report.transitions:
            moves.add_row(move.layer, move.label(move.state_from), move.label(move.state_to),
                          f"{move.n:,}")
        out.print(moves)
    if not edited:
        err.print("note: nothing but loaded data changed in this period; the sample twin "
                  "comes without edits: `twin sample --if-empty --history 10000` writes half "
                  "a year of them (grid workers' and staff's) through the same triggers, "
                  "after the twin's newest change (on a fresh sample, its spec's period)")
