"""The app factory: every test and the server build their app from settings here."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.staticfiles import StaticFiles
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp
from swagger_ui_bundle import swagger_ui_path

from api import errors, openapi
from api.fastpath import GZIP_LEVEL, GZIP_MIN_BYTES, ReadFastPath
from api.live import ChangeSignal
from api.options import AllowMiddleware
from api.routes import (
    analysis,
    auth,
    changes,
    dashboard,
    edits,
    features,
    field,
    kpis,
    landing,
    map_page,
    photos,
    reports,
    revert,
    stats,
    sync,
)
from twin import __version__
from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo, make_engine


class TwinApp(FastAPI):
    """FastAPI, with the hot read routes dispatched ahead of its middleware (api.fastpath)."""

    def build_middleware_stack(self) -> ASGIApp:
        return ReadFastPath(super().build_middleware_stack(),
                            features.HOT_ROUTES | changes.HOT_ROUTES)


def create_app(settings: Settings) -> FastAPI:
    """The Twin service, connected as the application role of ``settings``' database."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = database_urls(settings).app
        app.state.engine = make_engine(url)
        app.state.pool = AsyncConnectionPool(libpq_conninfo(url), min_size=2, max_size=10,
                                             kwargs={"autocommit": True}, open=False)
        await app.state.pool.open()
        app.state.signal = ChangeSignal(libpq_conninfo(url))
        app.state.signal.start()
        # what start-up loaded (modules, registry, schemas) lives as long as the process:
        # keep it out of the garbage collector's scans, which otherwise stall requests
        gc.freeze()
        try:
            yield
        finally:
            await app.state.signal.stop()
            await app.state.pool.close()
            app.state.engine.dispose()

    app = TwinApp(title="Twin 数字孪生", version=__version__, lifespan=lifespan,
                  openapi_url="/api", docs_url=None, redoc_url=None,
                  description="A digital twin of a city subdistrict on PostGIS.")
    app.state.settings = settings
    errors.register(app)
    app.include_router(landing.router)
    app.include_router(auth.router)
    app.include_router(stats.router)
    app.include_router(features.router)
    app.include_router(edits.router)
    app.include_router(sync.router)
    app.include_router(changes.router)
    app.include_router(revert.router)
    app.include_router(reports.router)
    app.include_router(analysis.router)
    app.include_router(photos.router)
    app.include_router(field.router)
    app.include_router(map_page.router)
    app.include_router(kpis.router)
    app.include_router(dashboard.router)
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MIN_BYTES, compresslevel=GZIP_LEVEL)
    app.add_middleware(AllowMiddleware)
    openapi.install(app)
    # Swagger UI from its PyPI bundle, so that /api.html needs no CDN (mounted ahead of
    # /static, which would otherwise take the path)
    app.mount(landing.SWAGGER_UI, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=str(files("twin") / "static")), name="static")
    return app
