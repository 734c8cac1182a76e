"""The command centre's board ``/dashboard``: the live map and panels of key figures, for a
big screen (16:9, or 32:9 with ``?layout=32:9``). Its coverage panels are the layers' own:
one for every layer that declares ``coverage_within_m``, so a new facility layer shows there
with no code change."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep
from api.errors import errors
from api.html import layers_json, script_json
from api.params import bad
from twin.maps.data import dataset_title
from twin.registry import all_layers

router = APIRouter(tags=["map"])

LAYOUTS = {"16:9": "16x9", "32:9": "32x9"}


@router.get("/dashboard", response_class=HTMLResponse, responses=errors(400, 503),
            summary="The command centre's board "
            "(public page: the map in it signs in; panels of key figures, refreshed live)")
async def dashboard(engine: EngineDep, layout: Annotated[str, Query(
        description="16:9 (default) or 32:9")] = "16:9") -> HTMLResponse:
    if layout not in LAYOUTS:
        raise bad("layout", layout, "16:9 or 32:9", "布局须为16:9或32:9")
    title = await run_in_threadpool(_title, engine)
    page = (files("twin") / "static" / "dashboard" / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page.replace("{{title}}", escape(title))
                        .replace("{{layout}}", LAYOUTS[layout])
                        .replace("{{layers}}", layers_json())
                        .replace("{{coverage}}", script_json(coverage_panels())),
                        headers={"Cache-Control": "no-cache"})


def coverage_panels() -> list[dict[str, Any]]:
    """The board's coverage panels: every facility layer (``coverage_within_m`` set) in
    registry order, its titles, its walk, the state that serves (``coverage_state``) and the
    coverage analysis the panel asks (``href``)."""
    panels: list[dict[str, Any]] = []
    for name, layer in all_layers().items():
        if layer.coverage_within_m is None:
            continue
        state = layer.coverage_state
        query = [("layer", name), *([("state", state)] if state else []), ("uncovered", "false")]
        panels.append({"layer": name, "title_zh": layer.title_zh, "title_en": layer.title_en,
                       "within_m": layer.coverage_within_m, "state": state,
                       "state_label": layer.state_labels.get(state) if state else None,
                       "href": f"/analysis/coverage?{urlencode(query)}"})
    return panels


def _title(engine: Engine) -> str:
    with engine.connect() as conn:
        return f"{dataset_title(conn)} · 指挥大屏 Command board"
