"""`twin coverage`, `twin siting`, `twin fire-access`: the planners' questions."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from twin.cli.common import (
    GROUP_LABELS,
    AsOfOption,
    app,
    app_engine,
    domain_errors,
    load_settings,
    out,
)
from twin.layer import Grouping


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


@app.command("coverage")
def coverage_command(
    layer: Annotated[str, typer.Argument(help="A point layer, e.g. waste_points.")],
    within: Annotated[float | None, typer.Option(help="Metres along the street network; "
                                                 "default: the layer's own.")] = None,
    by: Annotated[Grouping, typer.Option(help="Group by micro-grid or residential "
                                         "area.")] = "grid",
    state: Annotated[str | None, typer.Option(help="Only facilities in this state, "
                                              "e.g. safe.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only facilities with this tag "
                                                  "(repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (uncovered buildings "
                                          "included).")] = False,
    as_of: AsOfOption = None,
) -> None:
    """Which buildings are within a walk of a facility: covered shares per group.

    Example: twin coverage charging_points --within 200 --state safe --by area
    """
    from twin.analysis.coverage import coverage, coverage_query

    settings = load_settings()
    with domain_errors():
        query = coverage_query(layer, within, by, state, tag or (), as_of)
        result = coverage(app_engine(settings), query)
    if as_json:
        out.print_json(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    picked = f", state {state}" if state else ""
    when = f" as of {as_of}" if as_of else ""
    table = Table(title=f"覆盖 Coverage: {layer} within {query.within:g} m{picked} "
                        f"(twin change {result.state}{when})")
    table.add_column(GROUP_LABELS[by], no_wrap=True)
    for header in ("建筑\nbldgs", "覆盖\ncovered", "比例\nshare", "户数\nhomes",
                   "覆盖户\ncovered", "比例\nshare"):
        table.add_column(header, justify="right", no_wrap=True)

    def cells(g: dict[str, Any]) -> list[str]:
        return [f"{g['buildings']:,}", f"{g['covered_buildings']:,}",
                _share(g["covered_share"]), f"{g['households']:,}",
                f"{g['covered_households']:,}", _share(g["covered_households_share"])]

    for group in result.groups(by):
        label = group.get("name") or group["code"] or "-"  # an area's committee, by name
        table.add_row(label, *cells(group))
    table.add_section()
    totals = result.totals()
    table.add_row("合计 total", *cells(totals), style="bold")
    out.print(table)
    out.print(f"{totals['facilities']} facilities; distances along the street network in "
              f"{result.as_dict(uncovered=False)['crs']}")


@app.command("siting")
def siting_command(
    layer: Annotated[str, typer.Argument(help="A point layer, e.g. charging_points.")],
    n: Annotated[int, typer.Option("--n", help="How many new sites to place.")],
    within: Annotated[float | None, typer.Option(help="Metres along the street network; "
                                                 "default: the layer's own.")] = None,
    spacing: Annotated[float, typer.Option(help="Candidate sites along the streets every "
                                           "this many metres.")] = 50.0,
    state: Annotated[str | None, typer.Option(help="Only existing facilities in this state "
                                              "count, e.g. safe.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only existing facilities with this "
                                                  "tag count (repeatable).")] = None,
    time_limit: Annotated[float, typer.Option(help="Seconds for the exact solver (at most "
                                              "60).")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (the sites as "
                                          "GeoJSON).")] = False,
    as_of: AsOfOption = None,
) -> None:
    """Where N new facilities cover the most households not yet covered (existing kept).

    Example: twin siting charging_points --n 54 --state safe --spacing 50
    """
    from twin.analysis.placement import site, siting_query

    settings = load_settings()
    with domain_errors():
        query = siting_query({"layer": layer, "n": n, "within": within, "state": state,
                              "tags": tag or [], "candidates": {"spacing_m": spacing},
                              "time_limit_s": time_limit, "as_of": as_of})
        body = site(app_engine(settings), query).as_dict()
    if as_json:
        out.print_json(json.dumps(body, ensure_ascii=False))
        return
    table = Table(title=f"选址 Siting: {n} new {layer} within {query.within:g} m "
                        f"(twin change {body['twin']['change_id']})")
    for header in ("序号\nrank", "经度\nlon", "纬度\nlat", "新增户数\nhouseholds",
                   "累计\ncumulative", "建筑\nbldgs"):
        table.add_column(header, justify="right", no_wrap=True)
    total = 0
    for feature in body["sites"]["features"]:
        props, (lon, lat) = feature["properties"], feature["geometry"]["coordinates"]
        total += props["marginal_households"]
        table.add_row(str(props["rank"]), f"{lon:.6f}", f"{lat:.6f}",
                      f"{props['marginal_households']:,}", f"{total:,}",
                      f"{props['buildings_added']:,}")
    out.print(table)
    existing = body["existing"]
    out.print(f"{body['candidates']} candidates; households covered "
              f"{existing['covered_households']:,} -> {body['covered_households_after']:,} "
              f"of {existing['households']:,} "
              f"(+{body['households_added']:,}; {body['coverable_households']:,} coverable)")
    greedy = "-" if body["greedy_gap"] is None else f"{body['greedy_gap']:.2%}"
    out.print(f"method {body['method']}, optimal {body['optimal']}, gap {body['gap']:.2%}, "
              f"greedy gap {greedy}, {body['seconds']:.2f} s: {body['note']}")


@app.command("fire-access")
def fire_access_command(
    reach: Annotated[float | None, typer.Option(help="Metres a hose line goes from where the "
                                                "engine stops (default 60).")] = None,
    by: Annotated[Grouping, typer.Option(help="Group by micro-grid or residential "
                                         "area.")] = "grid",
    top: Annotated[int, typer.Option(help="Blocked passages to list.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_of: AsOfOption = None,
) -> None:
    """Which buildings a fire engine cannot get near; blocked passages ranked.

    A passage's rank is the households that opening it would restore.

    Example: twin fire-access --reach 60 --by area --top 5
    """
    from twin.analysis.fire import fire_access, fire_query

    settings = load_settings()
    with domain_errors():
        query = fire_query(reach, by, as_of)
        body = fire_access(app_engine(settings), query).as_dict(query.by)
    if as_json:
        out.print_json(json.dumps(body, ensure_ascii=False))
        return
    totals = body["totals"]
    when = f" as of {as_of}" if as_of else ""
    out.print(f"消防通达 Fire access within {query.reach:g} m (twin change "
              f"{body['twin']['change_id']}{when}): {totals['unreachable_buildings']:,} of "
              f"{totals['buildings']:,} buildings unreachable, "
              f"{totals['unreachable_households']:,} of {totals['households']:,} households, "
              f"{totals['unreachable_elderly']:,} elderly")
    table = Table("序号\nrank", "通道\npassage", "堵塞物\nblocked by",
                  title="堵塞通道 Blocked passages by households restored")
    for header in ("恢复建筑\nbldgs", "恢复户数\nhouseholds"):
        table.add_column(header, justify="right")
    for entry in body["blocked_passages"][:top]:
        table.add_row(str(entry["rank"]), str(entry["id"]), entry["blocked_by"] or "-",
                      f"{entry['restores_buildings']:,}", f"{entry['restores_households']:,}")
    out.print(table)
