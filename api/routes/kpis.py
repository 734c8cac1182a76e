"""Key figures per micro-grid or residential area: what the command centre's map and board
show (features by state, edits today and this week, workers active)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import EngineDep, SettingsDep, UserDep
from api.params import bad, reject_unknown
from twin.layer import GROUP_COLUMNS
from twin.maps.kpis import group_kpis, sync_health

router = APIRouter(tags=["kpis"])


@router.get("/kpis", summary="Features by state and edits today / in 7 days, per micro-grid "
            "or residential area")
def kpis(request: Request, engine: EngineDep, settings: SettingsDep, user: UserDep,
         by: Annotated[str, Query(description="grid (default) or area")] = "grid",
         ) -> dict[str, Any]:
    """A worker's own micro-grids only; days are those of ``TWIN_TIME_ZONE``. ``sync``: how
    the tablets' edits arrived in the last 7 days (devices, last sync, edits waiting on a
    conflict, rejected, the longest an edit waited offline)."""
    reject_unknown(request.query_params, {"by"})
    grouping = next((g for g in GROUP_COLUMNS if g == by), None)
    if grouping is None:
        raise bad("by", by, "grid or area", "分组须为grid或area")
    grids = user.grids if user.role == "worker" else None
    with engine.connect() as conn:
        return group_kpis(conn, grouping, settings.time_zone, grids) | {
            "sync": sync_health(conn, grids)}
