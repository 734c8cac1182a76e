"""`twin serve`: the HTTP service, with a welcome that says where to go."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import Engine, text

from twin import __version__
from twin.cli.common import (
    app,
    app_engine,
    domain_errors,
    err,
    load_settings,
    out,
)
from twin.errors import DatabaseUnavailable
from twin.settings import Settings


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default TWIN_HOST (127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Default TWIN_PORT (8000).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Processes serving, each with its own "
                                         "connections and LISTEN; about one per CPU.")] = 1,
) -> None:
    """Serve the API and pages, printing the URLs and the demo logins. Each request is
    logged as a JSON line on standard output; /health, /ready and /metrics are for the
    process manager, the load balancer and Prometheus."""
    import uvicorn

    from api.app import served_app

    settings = load_settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    with domain_errors():
        try:
            engine = app_engine(settings)
        except DatabaseUnavailable as exc:
            # at boot the server may come up before PostgreSQL: it serves all the same, /ready
            # answers 503 and requests a 503 with Retry-After until the database answers
            err.print(f"[yellow]warning:[/] {exc.message}; serving anyway: /ready says 503 "
                      "until the database answers")
        else:
            _print_welcome(settings, engine)
            engine.dispose()
    if workers > 1:  # the workers' request counts, summed by /metrics (prometheus-client)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="twin-metrics-")
    # live streams never end by themselves: give them 5 s to see the server going, then close;
    # the app logs each request itself (api.observe), so uvicorn's access log is off; a worker
    # is given 30 s to answer its supervisor's health check, not uvicorn's 5: a worker still
    # importing on a busy machine was killed and started again, over and over (bench/chaos)
    # (several workers: each imports the app itself; one: this process serves it)
    target: Any = "api.app:served_app" if workers > 1 else served_app()
    uvicorn.run(target, factory=workers > 1, host=settings.host, port=settings.port,
                workers=workers, log_level="info", access_log=False,
                timeout_graceful_shutdown=5, timeout_worker_healthcheck=30)


@app.command("systemd")
def systemd(
    workers: Annotated[int, typer.Option(min=1, help="Server processes (twin serve "
                                         "--workers).")] = 2,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write the unit files here "
                                                 "(e.g. /etc/systemd/system); default: print "
                                                 "them.")] = None,
) -> None:
    """systemd units that run this twin at boot: the cluster (twin-db.service: start and
    migrate, stop at shutdown; none when TWIN_DATABASE_URL names a database of one's own) and
    the server (twin.service), which systemd starts again whenever it dies. Settings come
    from the TWIN_ variables set now (passwords: put them in /etc/twin/twin.env)."""
    settings = load_settings()
    units = _units(settings, workers)
    if out_dir is None:
        for name, text in units.items():
            out.print(f"# {name}\n{text}", markup=False, highlight=False)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    out.print(f"wrote {', '.join(units)} to {out_dir}; then: systemctl daemon-reload && "
              f"systemctl enable --now {' '.join(units)}")


# settings that hold a secret stay out of unit files, which anyone may read
_SECRET = ("PASSWORD", "DATABASE_URL", "REPLICA_URLS", "KEY", "TOKEN")


def _units(settings: Settings, workers: int) -> dict[str, str]:
    """The unit files' texts, for the twin installed here and run from this folder."""
    twin = Path(sys.argv[0]).resolve()
    shared = [f"WorkingDirectory={Path.cwd()}", "EnvironmentFile=-/etc/twin/twin.env",
              *(f"Environment={name}={value}" for name, value in sorted(os.environ.items())
                if name.startswith("TWIN_") and not any(s in name for s in _SECRET))]
    units = {}
    if settings.database_url is None:
        units["twin-db.service"] = "\n".join([
            "[Unit]", "Description=Twin's PostgreSQL cluster (数字孪生数据库)",
            "After=local-fs.target", "", "[Service]", "Type=oneshot", "RemainAfterExit=yes",
            *shared, f"ExecStart={twin} db start", f"ExecStartPost={twin} db migrate",
            f"ExecStop={twin} db stop", "TimeoutStartSec=300", "", "[Install]",
            "WantedBy=multi-user.target", ""])
    needs = ["Requires=twin-db.service", "After=twin-db.service"] if units else [
        "After=network-online.target", "Wants=network-online.target"]
    units["twin.service"] = "\n".join([
        "[Unit]", "Description=Twin: the API, the live map and the field pages (数字孪生)",
        *needs, "", "[Service]", *shared, f"ExecStart={twin} serve --workers {workers}",
        "Restart=always", "RestartSec=2", "KillSignal=SIGINT", "TimeoutStopSec=15", "",
        "[Install]", "WantedBy=multi-user.target", ""])
    return units


def _print_welcome(settings: Settings, engine: Engine) -> None:
    from api.routes.landing import PAGES  # serve's own arrow into api/: the pages it serves
    from twin.features.stats import stats
    from twin.sample.load import worker_name

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
                  f"worker-<grid code>; departments dept-<code>; squad leads squad-lead-<n>)")
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
