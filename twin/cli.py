"""The ``twin`` command: set up the database, load the sample, manage users, serve, draw maps."""

from __future__ import annotations

import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import unquote

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine

from twin import __version__
from twin.cluster import local_cluster
from twin.db import check_connection, database_urls, make_engine
from twin.errors import TwinError
from twin.settings import Settings

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
        migrate(engine, None if settings.database_url else settings.app_role)
        out.print("schema up to date; layers registered")


@app.command()
def sample(
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the spec's).")] = None,
    scale: Annotated[int, typer.Option(min=1, max=200,
                                       help="N times larger, for benchmarks.")] = 1,
    spec: Annotated[Path, typer.Option(help="The subdistrict's sample spec.")] = Path(
        "data/nanmatou.toml"),
    if_empty: Annotated[bool, typer.Option("--if-empty",
                                           help="Do nothing when the twin has features.")] = False,
) -> None:
    """Generate the (synthetic) sample twin and load it into an empty database."""
    from twin.load import feature_count, load_sample
    from twin.sample import generate, load_spec
    from twin.users import hash_password

    settings = _settings()
    with _domain_errors():
        engine = _app_engine(settings)
        with engine.connect() as conn:
            existing = feature_count(conn)
        if existing and if_empty:
            out.print(f"the twin already holds {existing} features; sample not loaded")
            return
        started = time.perf_counter()
        with _bars() as stage:
            bar = stage("generating", scale)
            twin = generate(load_spec(spec), seed=seed, scale=scale,
                            progress=lambda _label, n: bar(n))
            load_sample(engine, twin, actor=os.environ.get("USER", "twin"),
                        password_hash=hash_password(settings.demo_password), progress=stage)
        out.print(f"loaded {len(twin.features)} features (seed {twin.seed}, scale {scale}) in "
                  f"{time.perf_counter() - started:.1f} s")


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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level="info")


def _print_welcome(settings: Settings, engine: Engine) -> None:
    from twin.stats import stats

    meta: dict[str, Any] = stats(engine)["metadata"]
    base = f"http://{settings.host}:{settings.port}"
    out.print(f"\n[bold]Twin {__version__}[/] 数字孪生 serving {base}")
    for path, what in (("/", "landing page 首页"), ("/api.html", "API docs 接口文档")):
        out.print(f"  {base}{path:<10} {what}")
    accounts = meta.get("demo_accounts")
    if accounts:
        out.print(f"demo logins 演示账号 (password: {settings.demo_password!r}): "
                  f"{', '.join(accounts['users'])} ... ({accounts['workers']} grid workers, "
                  f"worker-<grid code>)")
        out.print(f"  token: curl -d 'username=admin&password={settings.demo_password}' "
                  f"{base}/auth/token\n")


@app.command("map")
def map_command(
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
) -> None:
    """Write a standalone Folium map of every layer (works offline)."""
    from twin.mapdata import standalone_map

    settings = _settings()
    with _domain_errors():
        engine = _app_engine(settings)
        html = standalone_map(engine, settings)
    out_file.write_text(html, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(html.encode()) / 1e6:.1f} MB)")
