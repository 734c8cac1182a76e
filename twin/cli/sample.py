"""`twin sample` and `twin stats`: the sample twin, and what a twin holds."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from twin.cli.common import (
    admin_engine,
    app,
    app_engine,
    bars,
    domain_errors,
    load_settings,
    out,
)
from twin.store.db import database_urls


@app.command()
def sample(
    seed: Annotated[int | None, typer.Option(
        help="Random seed of the sample and its history (default: the spec's).")] = None,
    scale: Annotated[int, typer.Option(min=1, max=200,
                                       help="N times larger, for benchmarks.")] = 1,
    subdistricts: Annotated[int | None, typer.Option(
        min=1, help="Group the --scale copies into this many subdistricts, each with its own "
                    "code and outline (default: one per copy; e.g. --scale 200 --subdistricts "
                    "36 for a district of Pudong's size).")] = None,
    history: Annotated[int, typer.Option(
        min=0, help="Then append N generated changes (grid workers' and staff's edits over the "
                    "period of the spec's history table) through the history triggers; needs "
                    "the schema owner's connection.")] = 0,
    spec: Annotated[Path | None, typer.Option(
        help="The subdistrict's sample spec: a path, or the name of one shipped in data/ "
             "(default TWIN_SAMPLE_SPEC, nanmatou.toml).")] = None,
    if_empty: Annotated[bool, typer.Option(
        "--if-empty", help="Load nothing when the twin has features (--history still "
                           "appends).")] = False,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Connections writing the history (and the cases) at once, each in its "
                    "own micro-grids (default: one per CPU, up to 8). --jobs 1 gives the same "
                    "history for the same seed, ids included; with more, the ids of added "
                    "features and the order of the log may differ from run to run.")] = None,
    cases: Annotated[int | None, typer.Option(
        min=0, help="Cases filed (立案) over the spec's history period, each run through the "
                    "loop by the real triggers; the reports not filed come on top (default: "
                    "the spec's count times --scale when the sample is loaded, as the schema "
                    "owner; none when --if-empty finds a twin). Given, N are appended to a "
                    "loaded twin too, after its newest case.")] = None,
    orders: Annotated[int | None, typer.Option(
        min=0, help="Then 12345 hotline orders received over the same period, each run through "
                    "its steps by the real triggers (default: the spec's count times --scale "
                    "when the sample is loaded, as the schema owner; none when --if-empty finds "
                    "a twin). Given, N are appended to a loaded twin too, after its newest "
                    "order.")] = None,
) -> None:
    """Generate the (synthetic) sample twin and load it into an empty database.

    --history N then appends N generated changes, written by --jobs connections at once
    (only --jobs 1 repeats a history exactly, ids of added features included). Then the
    half year's cases: the spec's count (8,146 filed for Nanmatou) unless --cases says
    otherwise (--cases 0: none); then its hotline orders (2,773; --orders 0: none).

    Example: twin sample --if-empty --history 10000
    """
    from twin.sample.cases import cases_window, may_stamp, write_cases
    from twin.sample.generator import plan
    from twin.sample.history import (
        default_jobs,
        history_window,
        load_moment,
        stamped_engine,
        write_history,
    )
    from twin.sample.load import feature_count, load_sample
    from twin.sample.orders import orders_window, write_orders
    from twin.sample.spec import load_spec, spec_path
    from twin.users import hash_password

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        with engine.connect() as conn:
            existing = feature_count(conn)
        loading = not (existing and if_empty)
        if not loading:
            out.print(f"the twin already holds {existing} features; sample not loaded")
            if not history and not cases and not orders:
                return
        the_spec = load_spec(spec_path(spec or settings.sample_spec))
        window = history_window(admin_engine(settings), the_spec) if history else None
        n_cases = (cases if cases is not None else
                   the_spec.counts.cases_filed * scale if loading else 0)
        if n_cases and cases is None and (the_spec.history is None or the_spec.cases is None
                                          or not may_stamp(admin_engine(settings))):
            out.print("cases not generated: they are stamped in the past, which only the "
                      "owner of schema twin may do (twin sample --cases N as the owner)"
                      if the_spec.history and the_spec.cases else
                      "cases not generated: the spec has no [history] period or [cases] rules")
            n_cases = 0
        if n_cases and cases is not None:  # refused before anything is loaded
            cases_window(admin_engine(settings), the_spec)
        n_orders = (orders if orders is not None else
                    the_spec.counts.orders_received * scale if loading else 0)
        if n_orders and orders is None and (the_spec.history is None or the_spec.cases is None
                                            or the_spec.cases.hotline is None
                                            or not may_stamp(admin_engine(settings))):
            out.print("hotline orders not generated: they are stamped in the past, which only "
                      "the owner of schema twin may do (twin sample --orders N as the owner)"
                      if the_spec.history and the_spec.cases and the_spec.cases.hotline else
                      "hotline orders not generated: the spec has no [history] period or "
                      "hotline rules")
            n_orders = 0
        if n_orders and orders is not None:  # refused before anything is loaded
            orders_window(admin_engine(settings), the_spec)
        if loading:
            started = time.perf_counter()
            # The sample is stamped at the start of its period, where a history (now or
            # later) follows it: the twin's time only moves forward, and a fresh twin's
            # board counts no edits today.
            admin_url = database_urls(settings).admin
            moment = window.start if window else load_moment(admin_engine(settings), the_spec)
            target = engine if moment is None else stamped_engine(admin_url, moment)
            with bars() as stage:
                twin = plan(the_spec, seed=seed, scale=scale, subdistricts=subdistricts)
                loaded = load_sample(target, twin, actor=os.environ.get("USER", "twin"),
                                     password_hash=hash_password(settings.demo_password),
                                     progress=stage)
            out.print(f"loaded {loaded:,} features (seed {twin.seed}, scale {scale}, "
                      f"{twin.subdistricts} subdistricts) in {time.perf_counter() - started:.1f} s")
        if window is not None:
            history_seed = the_spec.seed if seed is None else seed
            with bars() as stage:
                run = write_history(database_urls(settings).admin, history, history_seed, window,
                                    progress=stage("history", history),
                                    jobs=jobs or default_jobs())
            out.print(f"wrote {run.changes} changes (seed {history_seed}) in {run.seconds:.1f} s, "
                      f"{run.changes / run.seconds:,.0f} changes/s, from "
                      f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} "
                      f"({window.period.timezone})")
        if n_cases:
            case_seed = the_spec.seed if seed is None else seed
            span = cases_window(admin_engine(settings), the_spec)
            with bars() as stage:
                done = write_cases(database_urls(settings).admin, n_cases, case_seed, span,
                                   progress=lambda total: stage("cases", total),
                                   jobs=jobs or default_jobs())
            out.print(f"wrote {done.filed:,} cases filed and {done.reported - done.filed:,} "
                      f"reports not filed (seed {case_seed}), {done.events:,} case events, in "
                      f"{done.seconds:.1f} s, from {span.start:%Y-%m-%d} to "
                      f"{span.end - timedelta(days=1):%Y-%m-%d} ({span.period.timezone})")
        if n_orders:
            order_seed = the_spec.seed if seed is None else seed
            span = orders_window(admin_engine(settings), the_spec)
            with bars() as stage:
                got = write_orders(database_urls(settings).admin, n_orders, order_seed, span,
                                   the_spec.name_zh,
                                   progress=lambda total: stage("hotline orders", total),
                                   jobs=jobs or default_jobs())
            out.print(f"received {got.received:,} hotline orders ({got.queued:,} left in the "
                      f"queue, {got.repeats:,} repeat calls merged, {got.cases:,} cases filed "
                      f"for them; seed {order_seed}), {got.events:,} order events, in "
                      f"{got.seconds:.1f} s, from {span.start:%Y-%m-%d} to "
                      f"{span.end - timedelta(days=1):%Y-%m-%d} ({span.period.timezone})")



@app.command("stats")
def stats_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Features per layer, changes logged, and the content hash."""
    from twin.features.stats import stats

    settings = load_settings()
    with domain_errors():
        engine = app_engine(settings)
        result = stats(engine)
    if as_json:
        out.print_json(json.dumps(result, ensure_ascii=False))
        return
    table = Table("layer", "features", title="Twin")
    for name, count in result["layers"].items():
        table.add_row(name, str(count))
    table.add_row("[bold]all[/]", f"[bold]{result['features']}[/]")
    out.print(table)
    out.print(f"changes logged: {result['changes']}   content hash: {result['content_hash']}")
