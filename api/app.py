"""The app factory: every test and the server build their app from settings here."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.types import ASGIApp
from swagger_ui_bundle import swagger_ui_path

from api import errors, openapi
from api.fastpath import (
    GZIP_LEVEL,
    GZIP_MIN_BYTES,
    ReadFastPath,
    check_middleware,
    cors_of,
    hot_routes,
)
from api.live import ChangeSignal
from api.observe import Observed, log_requests
from api.options import AllowMiddleware
from api.replicas import ReadRouting, Replicas, Source, connection_pool
from api.routes import (
    analysis,
    auth,
    cases,
    changes,
    dashboard,
    edits,
    features,
    field,
    health,
    hotline,
    imports,
    kpis,
    landing,
    layers,
    map_page,
    open311,
    photos,
    reports,
    revert,
    stats,
    sync,
)
from api.seen import SeenVersions
from twin import __version__
from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo, make_engine
from twin.store.layerspecs import refresh_layers

log = logging.getLogger("twin.api")

# Every route of the service, in the order they are matched (no prefixes: a route's path is
# the one it declares, which the fast path's table relies on).
ROUTERS = tuple(module.router for module in (
    health, landing, auth, stats, features, edits, sync, changes, revert, reports, analysis,
    photos, field, map_page, kpis, dashboard, cases, hotline, open311, imports, layers))


# What a page from a named origin may do (bearer tokens, no cookies: no credentials), and
# read: the headers a GIS client in a browser needs to edit, page and cache.
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "If-Match", "If-None-Match",
                        "Idempotency-Key", "Content-Crs")
CORS_EXPOSED = ("ETag", "Link", "Location", "Content-Crs", "Accept-Patch")


class TwinApp(FastAPI):
    """FastAPI, with the routes marked ``@hot`` dispatched ahead of its middleware
    (api.fastpath), unless ``fast_path`` is off (the tests compare both)."""

    fast_path = True

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if self.fast_path:
            check_middleware(self.user_middleware)
            stack = ReadFastPath(stack, hot_routes(
                [r for router in ROUTERS for r in router.routes]), cors_of(self.user_middleware))
        if self.state.settings.replica_urls:  # only then: no cost at all without replicas
            stack = ReadRouting(stack)
        return Observed(stack)


def create_app(settings: Settings, fast_path: bool = True) -> FastAPI:
    """The Twin service, connected as the application role of ``settings``' database;
    ``fast_path=False`` serves the hot read routes through FastAPI's stack too."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_urls(settings).app
        app.state.engine = make_engine(url)
        app.state.pool = connection_pool(url)
        await app.state.pool.open()

        def refresh() -> None:
            with app.state.engine.connect() as conn:
                refresh_layers(conn)

        try:
            await asyncio.to_thread(refresh)  # the layers admins declared, before any request
        except OperationalError as exc:  # the listener reads them once it reaches the database
            log.warning("starting without the database (%s): 503 until it answers",
                        str(exc.orig).strip().splitlines()[0])
        app.state.signal = ChangeSignal(libpq_conninfo(url), refresh, app.state.pool.check)
        app.state.signal.start()
        _end_with_parent()
        app.state.seen = SeenVersions(settings.implicit_if_match_roles)
        if settings.replica_urls:
            app.state.replicas = Replicas.of(settings, Source(
                "primary", app.state.pool, app.state.engine), libpq_conninfo(url),
                app.state.signal)
            await app.state.replicas.start()
        # what start-up loaded (modules, registry, schemas) lives as long as the process:
        # keep it out of the garbage collector's scans, which otherwise stall requests
        gc.freeze()
        try:
            yield
        finally:
            if app.state.replicas is not None:
                await app.state.replicas.stop()
            await app.state.signal.stop()
            await app.state.pool.close()
            app.state.engine.dispose()

    app = TwinApp(title="Twin 数字孪生", version=__version__, lifespan=lifespan,
                  openapi_url="/api", docs_url=None, redoc_url=None,
                  description="A digital twin of a city subdistrict on PostGIS.")
    app.fast_path = fast_path
    app.state.settings = settings
    app.state.replicas = None  # api.replicas: set at start when TWIN_REPLICA_URLS names some
    errors.register(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    app.add_middleware(AllowMiddleware, routes=[r for router in ROUTERS for r in router.routes])
    if settings.cors_origins:
        # outermost: it answers a browser's preflight OPTIONS before AllowMiddleware would
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=CORS_METHODS, allow_headers=CORS_REQUEST_HEADERS,
                           expose_headers=CORS_EXPOSED, max_age=600)
    openapi.install(app)
    # Swagger UI from its PyPI bundle, so that /api.html needs no CDN (mounted ahead of
    # /static, which would otherwise take the path)
    app.mount(landing.SWAGGER_UI, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=str(files("twin") / "static")), name="static")
    return app


def _end_with_parent() -> None:
    """In a worker of `twin serve --workers N`: shut down, as on SIGTERM, when the process
    that started it dies. A supervisor killed outright (SIGKILL, the OOM killer) would
    otherwise leave its workers serving the port, and the server could not start again."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    loop = asyncio.get_running_loop()

    def orphaned() -> None:
        loop.remove_reader(parent.sentinel)
        log.warning("the server process %s is gone: this worker stops", parent.pid)
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(parent.sentinel, orphaned)


def served_app() -> FastAPI:
    """The app `twin serve` runs in each of its worker processes: the settings from the
    environment, each request logged as a JSON line."""
    log_requests()
    return create_app(Settings())
