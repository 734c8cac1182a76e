"""Period reports of changes: what each micro-grid, area, actor or layer did in [from, to)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import EngineDep, SettingsDep, UserDep
from api.errors import SIGNED, errors
from api.params import reject_unknown
from api.replicas import replica_read
from twin.history.reports import change_report, report_query
from twin.times import parse_day_or_time

router = APIRouter(tags=["history"], responses=errors(*SIGNED))

REPORT_PARAMS = frozenset({"from", "to", "by", "layer"})


@router.get("/reports/changes", summary="Inserts, updates, deletes and status transitions "
            "per micro-grid, area, actor or layer in a period")
@replica_read
def changes_report(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    user: UserDep,
    start: Annotated[str | None, Query(alias="from", description="RFC 3339 or a date (that "
                                       "day's start in TWIN_TIME_ZONE), inclusive")] = None,
    end: Annotated[str | None, Query(alias="to", description="RFC 3339 or a date, "
                                     "exclusive")] = None,
    by: Annotated[str | None, Query(description="layer (default), grid, area or actor")] = None,
    layer: Annotated[str | None, Query(description="only this layer")] = None,
) -> dict[str, Any]:
    """A worker counts the changes of their own micro-grids only; everyone else all of them."""
    reject_unknown(request.query_params, REPORT_PARAMS)
    query = report_query(parse_day_or_time("from", start, settings.time_zone),
                         parse_day_or_time("to", end, settings.time_zone), by, layer,
                         grids=user.read_grids)
    return change_report(engine, query).as_dict()
