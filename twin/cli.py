"""The ``twin`` command: set up the database, load the sample, manage users, serve, draw maps."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import unquote

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from twin import __version__
from twin.cluster import local_cluster
from twin.db import check_connection, database_urls, make_engine
from twin.errors import TwinError
from twin.layer import Grouping
from twin.reports import GroupBy
from twin.settings import Settings

if TYPE_CHECKING:
    from twin.reports import Counts


app = typer.Typer(help="Twin: a digital twin of a city subdistrict on PostGIS.",
                  no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="The database: a project-local PostgreSQL cluster unless "
                          "TWIN_DATABASE_URL is set.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(user_app, name="user")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@contextmanager
def _domain_errors() -> Iterator[None]:
    """Print a domain error as a clear message and exit 1, never as a traceback."""
    try:
        yield
    except TwinError as exc:
        err.print(f"[bold red]error:[/] {exc.message}")
        for problem in exc.problems:
            err.print(f"  - {problem.field} = {problem.value!r}: {problem.reason} "
                      f"{problem.reason_zh}")
        raise typer.Exit(1) from None
    except DBAPIError as exc:  # the database refused: say what it said, not where
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        hint = ("; the database's schema is older than this Twin: run `twin db migrate`"
                if getattr(exc.orig, "sqlstate", None) in _SCHEMA_MISSING else "")
        err.print(f"[bold red]error:[/] the database refused: {reason}{hint}")
        raise typer.Exit(1) from None


# undefined table, function, column: a database not migrated to this version
_SCHEMA_MISSING = ("42P01", "42883", "42703")


def _settings() -> Settings:
    return Settings()


def _engine(url: str) -> Engine:
    """A small engine for one command, after checking the database answers."""
    engine = make_engine(url, pool_size=1)
    check_connection(engine)
    return engine


def _admin_engine(settings: Settings) -> Engine:
    return _engine(database_urls(settings).admin)


def _app_engine(settings: Settings) -> Engine:
    return _engine(database_urls(settings).app)


@contextmanager
def _bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """Progress bars for long commands: ``stage(label, total)`` returns an advance callback."""
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as progress:
        def stage(label: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(label, total=total)
            return lambda n: progress.advance(task, n)
        yield stage


# The twin as it was at a moment: every command reading it may ask.
AsOfOption = Annotated[str | None, typer.Option(
    "--as-of", help="The twin as it was then: an RFC 3339 time with its offset, e.g. "
                    "2026-03-31T18:00:00+08:00.")]


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
          ) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()


@db_app.command("start")
def db_start() -> None:
    """Start the local cluster under TWIN_DATA_DIR (initialised on first start)."""
    settings = _settings()
    with _domain_errors():
        if settings.database_url:
            _admin_engine(settings)
            out.print("TWIN_DATABASE_URL is set: using that database, nothing to start.")
            return
        cluster = local_cluster(settings)
        started = cluster.start()
        out.print(f"{'started' if started else 'already running'}: {cluster.pgdata} "
                  f"(socket {cluster.socket_dir}, no TCP)")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the local cluster."""
    settings = _settings()
    with _domain_errors():
        if settings.database_url:
            out.print("TWIN_DATABASE_URL is set: Twin does not manage that server.")
            return
        stopped = local_cluster(settings).stop()
        out.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status() -> None:
    """Print the database URL and whether it is up (exit 1 when down)."""
    settings = _settings()
    with _domain_errors():
        url = database_urls(settings).app
        engine = make_engine(url, pool_size=1)
        try:
            check_connection(engine)
            up = True
        except TwinError:
            up = False
        out.print(f"database: {unquote(engine.url.render_as_string(hide_password=True))}")
        out.print(f"status: {'up' if up else 'down'}")
        if not up:
            raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate() -> None:
    """Bring the schema to the current version and register every layer of layers/."""
    from twin.migrate import migrate

    settings = _settings()
    with _domain_errors():
        engine = _admin_engine(settings)
        migrate(engine, None if settings.database_url else settings.app_role,
                settings.time_zone)
        out.print("schema up to date; layers registered")


@db_app.command("maintain")
def db_maintain() -> None:
    """Upkeep of the history's storage (run it monthly or nightly, e.g. from cron): make this
    and next month's partitions of the versions, and sort each month that is over by place
    once, so asOf queries read few pages. Changes no answer; safe to run at any time."""
    from twin.maintain import maintain, unsorted_months

    settings = _settings()
    with _domain_errors():
        engine = _admin_engine(settings)
        months = unsorted_months(engine)
        with _bars() as stage:
            done = maintain(engine, months, progress=stage("sorting months", len(months)))
        out.print(f"{done.partitions_made} partitions made; "
                  f"{len(done.months_sorted)} months sorted by place"
                  + (f" ({', '.join(done.months_sorted)})" if done.months_sorted else ""))


@app.command()
def sample(
    seed: Annotated[int | None, typer.Option(
        help="Random seed of the sample and its history (default: the spec's).")] = None,
    scale: Annotated[int, typer.Option(min=1, max=200,
                                       help="N times larger, for benchmarks.")] = 1,
    history: Annotated[int, typer.Option(
        min=0, help="Then append N generated changes (grid workers' and staff's edits over the "
                    "period of the spec's history table) through the history triggers; needs "
                    "the schema owner's connection.")] = 0,
    spec: Annotated[Path, typer.Option(help="The subdistrict's sample spec.")] = Path(
        "data/nanmatou.toml"),
    if_empty: Annotated[bool, typer.Option(
        "--if-empty", help="Load nothing when the twin has features (--history still "
                           "appends).")] = False,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Connections writing the history at once, each in its own micro-grids "
                    "(default: one per CPU, up to 8). --jobs 1 gives the same history for "
                    "the same seed, ids included; with more, the ids of added features and "
                    "the order of the log may differ from run to run.")] = None,
) -> None:
    """Generate the (synthetic) sample twin and load it into an empty database.

    --history N then appends N generated changes, written by --jobs connections at once
    (only --jobs 1 repeats a history exactly, ids of added features included).

    Example: twin sample --if-empty --history 10000
    """
    from twin.history_sample import (
        default_jobs,
        history_window,
        load_moment,
        stamped_engine,
        write_history,
    )
    from twin.load import feature_count, load_sample
    from twin.sample import generate, load_spec
    from twin.users import hash_password

    settings = _settings()
    with _domain_errors():
        engine = _app_engine(settings)
        with engine.connect() as conn:
            existing = feature_count(conn)
        loading = not (existing and if_empty)
        if not loading:
            out.print(f"the twin already holds {existing} features; sample not loaded")
            if not history:
                return
        the_spec = load_spec(spec)
        window = history_window(_admin_engine(settings), the_spec) if history else None
        if loading:
            started = time.perf_counter()
            # The sample is stamped at the start of its period, where a history (now or
            # later) follows it: the twin's time only moves forward, and a fresh twin's
            # board counts no edits today.
            admin_url = database_urls(settings).admin
            moment = window.start if window else load_moment(_admin_engine(settings), the_spec)
            target = engine if moment is None else stamped_engine(admin_url, moment)
            with _bars() as stage:
                bar = stage("generating", scale)
                twin = generate(the_spec, seed=seed, scale=scale,
                                progress=lambda _label, n: bar(n))
                load_sample(target, twin, actor=os.environ.get("USER", "twin"),
                            password_hash=hash_password(settings.demo_password), progress=stage)
            out.print(f"loaded {len(twin.features)} features (seed {twin.seed}, scale {scale}) "
                      f"in {time.perf_counter() - started:.1f} s")
        if window is not None:
            history_seed = the_spec.seed if seed is None else seed
            with _bars() as stage:
                run = write_history(database_urls(settings).admin, history, history_seed, window,
                                    progress=stage("history", history),
                                    jobs=jobs or default_jobs())
            out.print(f"wrote {run.changes} changes (seed {history_seed}) in {run.seconds:.1f} s, "
                      f"{run.changes / run.seconds:,.0f} changes/s, from "
                      f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} "
                      f"({window.period.timezone})")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="worker, planner, commander or admin.")],
    grid: Annotated[list[str] | None, typer.Option(
        help="Micro-grid code a worker answers for (repeat for several).")] = None,
) -> None:
    """Add a user; the password comes from TWIN_PASSWORD or a prompt."""
    from twin.users import add_user, hash_password

    settings = _settings()
    password = os.environ.get("TWIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            err.print("[bold red]error:[/] set TWIN_PASSWORD or run in a terminal to be asked")
            raise typer.Exit(1)
        password = getpass.getpass(f"password for {name}: ")
    with _domain_errors():
        engine = _app_engine(settings)
        user = add_user(engine, name, role, hash_password(password), grid or [])
        grids = f" for {', '.join(user.grids)}" if user.grids else ""
        out.print(f"added {user.role} {user.name}{grids}")


@user_app.command("list")
def user_list() -> None:
    """Every user: role, micro-grids, whether active."""
    from twin.users import list_users

    settings = _settings()
    with _domain_errors():
        engine = _app_engine(settings)
        table = Table("user", "role", "micro-grids", "active")
        for user, active in list_users(engine):
            table.add_row(user.name, user.role, " ".join(user.grids), "yes" if active else "no")
    out.print(table)


@user_app.command("disable")
def user_disable(name: Annotated[str, typer.Argument(help="Login name.")]) -> None:
    """Deactivate a user (a lost tablet, a worker who left) and revoke their tokens."""
    from twin.users import disable_user

    settings = _settings()
    with _domain_errors():
        engine = _app_engine(settings)
        revoked = disable_user(engine, name)
    out.print(f"disabled {name}; {revoked} token(s) revoked")


@app.command("stats")
def stats_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Features per layer, changes logged, and the content hash."""
    from twin.stats import stats

    settings = _settings()
    with _domain_errors():
        engine = _app_engine(settings)
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


_REPORT_GROUP = {"layer": "图层 layer", "grid": "微网格 micro-grid",
                 "area": "居民区 residential area", "actor": "操作人 actor"}


def _count_cells(counts: Counts) -> list[str]:
    return [f"{n:,}" for n in (counts.inserts, counts.updates, counts.deletes,
                               counts.transitions, counts.changes)]


@app.command("report")
def report_command(
    start: Annotated[str, typer.Option("--from", help="Start (inclusive): a date, e.g. "
                                       "2026-01-01 (that day's start in TWIN_TIME_ZONE), or "
                                       "RFC 3339 with its offset, 2026-01-01T00:00:00+08:00.")],
    end: Annotated[str, typer.Option("--to", help="End (exclusive): a date or RFC 3339.")],
    by: Annotated[GroupBy, typer.Option(help="Group by layer, grid, area or actor.")] = "layer",
    layer: Annotated[str | None, typer.Option(help="Count this layer only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Inserts, updates, deletes and status transitions per group in [from, to).

    Example: twin report --from 2026-01-01 --to 2026-07-01 --by grid
    """
    from twin.reports import change_report, edits_beyond_loads, report_query
    from twin.times import parse_day_or_time

    settings = _settings()
    with _domain_errors():
        query = report_query(parse_day_or_time("from", start, settings.time_zone),
                             parse_day_or_time("to", end, settings.time_zone), by, layer)
        engine = _app_engine(settings)
        report = change_report(engine, query)
        edited = edits_beyond_loads(engine, query)
    if as_json:
        out.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    table = Table(title=f"变更报告 Changes {start} .. {end}")
    table.add_column(_REPORT_GROUP[query.by], no_wrap=True)
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
                  "comes without edits: `twin sample --history 10000` writes half a year of "
                  "them (grid workers' and staff's) through the same triggers")


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
    from twin.coverage import coverage, coverage_query

    settings = _settings()
    with _domain_errors():
        query = coverage_query(layer, within, by, state, tag or (), as_of)
        result = coverage(_app_engine(settings), query)
    if as_json:
        out.print_json(json.dumps(result.as_dict(), ensure_ascii=False))
        return
    picked = f", state {state}" if state else ""
    when = f" as of {as_of}" if as_of else ""
    table = Table(title=f"覆盖 Coverage: {layer} within {query.within:g} m{picked} "
                        f"(twin change {result.state}{when})")
    table.add_column(_REPORT_GROUP[by], no_wrap=True)
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
    from twin.placement import site, siting_query

    settings = _settings()
    with _domain_errors():
        query = siting_query({"layer": layer, "n": n, "within": within, "state": state,
                              "tags": tag or [], "candidates": {"spacing_m": spacing},
                              "time_limit_s": time_limit, "as_of": as_of})
        body = site(_app_engine(settings), query).as_dict()
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
    from twin.fire import fire_access, fire_query

    settings = _settings()
    with _domain_errors():
        query = fire_query(reach, by, as_of)
        body = fire_access(_app_engine(settings), query).as_dict(query.by)
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default TWIN_HOST (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default TWIN_PORT (8000).")] = None,
) -> None:
    """Serve the API and pages, printing the URLs and the demo logins."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    with _domain_errors():
        engine = _app_engine(settings)
        _print_welcome(settings, engine)
        engine.dispose()
    # live streams never end by themselves: give them 5 s to see the server going, then close
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="info", timeout_graceful_shutdown=5)


def _print_welcome(settings: Settings, engine: Engine) -> None:
    from api.routes.landing import PAGES  # serve's own arrow into api/: the pages it serves
    from twin.load import worker_name
    from twin.stats import stats

    meta: dict[str, Any] = stats(engine)["metadata"]
    base = f"http://{settings.host}:{settings.port}"
    out.print(f"\n[bold]Twin {__version__}[/] 数字孪生 serving {base}")
    for path, what in (("/", "landing page 首页"), ("/api.html", "API docs 接口文档"),
                       *((path, f"{zh} {en}") for path, zh, en, _who in PAGES)):
        out.print(f"  {base}{path:<10} {what}")
    accounts = meta.get("demo_accounts")
    if accounts:
        out.print(f"demo logins 演示账号 (password: {settings.demo_password!r}): "
                  f"{', '.join(accounts['users'])} ... ({accounts['workers']} grid workers, "
                  f"worker-<grid code>)")
        busy = _busiest_grid(engine)
        if busy:
            out.print(f"  a worker with points to edit: {worker_name(busy[0])} "
                      f"({busy[1]} waste points in the micro-grid)")
        out.print(f"  token: curl -d 'username=admin&password={settings.demo_password}' "
                  f"{base}/auth/token")
    command = Path(sys.argv[0]).resolve()
    if shutil.which("twin") != str(command) and command.name == "twin":
        out.print(f"the twin command 命令行: {command}; to type just `twin`: "
                  f'export PATH="{command.parent}:$PATH"')
    out.print("stop 停止: Ctrl+C\n")


def _busiest_grid(engine: Engine) -> tuple[str, int] | None:
    """The micro-grid holding the most waste points, for the demo's worker."""
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT grid_code, count(*) FROM twin.features WHERE layer = 'waste_points' "
            "AND grid_code IS NOT NULL GROUP BY grid_code ORDER BY 2 DESC, 1 LIMIT 1")).first()
    return (str(row[0]), int(row[1])) if row else None


@app.command("map")
def map_command(
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    as_of: AsOfOption = None,
) -> None:
    """Write a standalone Folium map of every layer (works offline), now or as it was."""
    from twin.mapdata import standalone_map
    from twin.times import parse_time

    settings = _settings()
    with _domain_errors():
        moment = parse_time("--as-of", as_of)
        engine = _app_engine(settings)
        html = standalone_map(engine, settings, moment)
    out_file.write_text(html, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(html.encode()) / 1e6:.1f} MB)")


@app.command("export")
def export_command(
    layer: Annotated[str, typer.Argument(help="The layer, e.g. buildings.")],
    file: Annotated[Path, typer.Argument(help="A .gpkg, .geojson or .json file.")],
    as_of: AsOfOption = None,
) -> None:
    """Write one layer to a GeoPackage or GeoJSON file (EPSG:4326), now or as it was.

    The format follows FILE's suffix; the as-of time is kept in the file.

    A GeoPackage's layer is named LAYER; other layers in it are kept, so exports can share one.

    Examples:

        twin export buildings buildings.gpkg

        twin export streets streets.geojson --as-of 2026-06-30T18:00:00+08:00
    """
    from twin.export import export_layer, export_target

    settings = _settings()
    with _domain_errors():
        target = export_target(layer, file, as_of)
        done = export_layer(_app_engine(settings), target)
    if done.before_history:
        began = (f"begins at {done.history_begins.isoformat()}" if done.history_begins
                 else "is empty")
        out.print(f"note: the twin's history {began}; the file holds the layer's columns and "
                  "no features")
    when = as_of if as_of else f"now ({done.as_of.isoformat()})"
    out.print(f"wrote {done.features} {layer} features to {file}, as of {when}")
