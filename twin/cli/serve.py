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
    load_settings,
    out,
)
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

    settings = load_settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    with domain_errors():
        engine = app_engine(settings)
        _print_welcome(settings, engine)
        engine.dispose()
    if workers > 1:  # the workers' request counts, summed by /metrics (prometheus-client)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="twin-metrics-")
    # live streams never end by themselves: give them 5 s to see the server going, then close;
    # the app logs each request itself (api.observe), so uvicorn's access log is off
    uvicorn.run("api.app:served_app", factory=True, host=settings.host, port=settings.port,
                workers=workers, log_level="info", access_log=False,
                timeout_graceful_shutdown=5)


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
