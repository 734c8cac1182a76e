"""The command centre's live map ``/map``: a page without data that loads it from the API."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, SettingsDep
from twin.maps.data import live_map

router = APIRouter(tags=["map"])


@router.get("/map", response_class=HTMLResponse, summary="The live map of the twin (signs in "
            "itself; every layer for the visible box, updated as the twin changes)")
async def map_page(engine: EngineDep, settings: SettingsDep) -> HTMLResponse:
    """Needs no token to load: the page holds no feature, signs in, and asks the API."""
    page = await run_in_threadpool(live_map, engine, settings)
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
