"""The command centre's board ``/dashboard``: the live map and panels of key figures, for a
big screen (16:9, or 32:9 with ``?layout=32:9``)."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep
from api.html import layers_json
from api.params import bad
from twin.maps.data import dataset_title

router = APIRouter(tags=["map"])

LAYOUTS = {"16:9": "16x9", "32:9": "32x9"}


@router.get("/dashboard", response_class=HTMLResponse, summary="The command centre's board "
            "(public page: the map in it signs in; panels of key figures, refreshed live)")
async def dashboard(engine: EngineDep, layout: Annotated[str, Query(
        description="16:9 (default) or 32:9")] = "16:9") -> HTMLResponse:
    if layout not in LAYOUTS:
        raise bad("layout", layout, "16:9 or 32:9", "布局须为16:9或32:9")
    title = await run_in_threadpool(_title, engine)
    page = (files("twin") / "static" / "dashboard" / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page.replace("{{title}}", escape(title))
                        .replace("{{layout}}", LAYOUTS[layout])
                        .replace("{{layers}}", layers_json()),
                        headers={"Cache-Control": "no-cache"})


def _title(engine: Engine) -> str:
    with engine.connect() as conn:
        return f"{dataset_title(conn)} · 指挥大屏 Command board"
