"""Key figures per micro-grid or residential area: what the command centre's map and board
show (features by state, edits today and this week, workers active, cases open, overdue,
filed and closed today), the list of cases behind each case figure, and the board's 12345
hotline figures and rates (each linking to ``GET /orders``)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import EngineDep, SettingsDep, UserDep
from api.errors import SIGNED, errors, media
from api.params import MAX_ID, bad, reject_unknown
from api.replicas import replica_read
from twin.cases.reads import list_cases
from twin.layer import GROUP_COLUMNS, GROUPS_ZH
from twin.maps.cases import FIGURES, case_figures, figure_query
from twin.maps.hotline import hotline_board
from twin.maps.kpis import group_kpis, sync_health

router = APIRouter(tags=["kpis"], responses=errors(*SIGNED))
GEOJSON = "application/geo+json"


@router.get("/kpis", summary="Features by state, edits today / in 7 days and cases (open, "
            "overdue, filed and closed today) per micro-grid or residential area")
@replica_read
def kpis(request: Request, engine: EngineDep, settings: SettingsDep, user: UserDep,
         by: Annotated[str, Query(description="grid (default), area or subdistrict")] = "grid",
         ) -> dict[str, Any]:
    """A worker's own micro-grids only; days are those of ``TWIN_TIME_ZONE``. ``sync``: how
    the tablets' edits arrived in the last 7 days (devices, last sync, edits waiting on a
    conflict, rejected, the longest an edit waited offline). ``cases``: the case figures in
    total with their formulas and the link listing each (``GET /kpis/cases``; a group's list
    adds ``by`` and ``key``), each group's under its ``cases``; ``twin.case_event_id`` moves
    whenever a case does."""
    reject_unknown(request.query_params, {"by"})
    grouping = next((g for g in GROUP_COLUMNS if g == by), None)
    if grouping is None:
        raise bad("by", by, ", ".join(GROUP_COLUMNS), GROUPS_ZH)
    grids = user.read_grids
    base = f"{str(request.base_url).rstrip('/')}/kpis/cases"
    with engine.connect() as conn:
        answer = group_kpis(conn, grouping, settings.time_zone, grids) | {
            "sync": sync_health(conn, grids)}
        cases = case_figures(conn, user, grouping, settings.time_zone, base)
    zero = dict.fromkeys(FIGURES, 0)
    per_group = cases.pop("groups")
    for group in answer["groups"]:
        group["cases"] = per_group.get(group["code"], zero)
    answer["twin"]["case_event_id"] = cases.pop("newest_event")
    answer["cases"] = cases
    return answer


@router.get("/kpis/cases", summary="The cases a case figure of /kpis counts (open, overdue, "
            "filed_today, closed_today), in total or in one group; paged like /cases",
            response_class=JSONResponse, responses=media(GEOJSON))
@replica_read
def figure_cases(request: Request, engine: EngineDep, settings: SettingsDep, user: UserDep,
                 figure: Annotated[str, Query(description=", ".join(FIGURES))],
                 by: Annotated[str | None, Query(description="grid, area or subdistrict")] = None,
                 key: Annotated[str | None, Query(description="the group's code")] = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 cursor: Annotated[int, Query(ge=0, le=MAX_ID)] = 0) -> JSONResponse:
    """A FeatureCollection as ``GET /cases`` answers it, with a ``next`` link."""
    reject_unknown(request.query_params, {"figure", "by", "key", "limit", "cursor"})
    if key is not None and by is None:
        raise bad("by", by, "grid or area, with key", "须同时给出分组")
    found = list_cases(engine, user, figure_query(figure, by, key, settings.time_zone,
                                                  limit, cursor))
    links = [{"rel": "self", "href": str(request.url), "type": GEOJSON}]
    if found["next"] is not None:
        rest = {k: v for k, v in request.query_params.items() if k != "cursor"}
        base = str(request.base_url).rstrip("/")
        links.append({"rel": "next", "type": GEOJSON, "href":
                      f"{base}/kpis/cases?{urlencode({**rest, 'cursor': found['next']})}"})
    body = {k: v for k, v in found.items() if k != "next"} | {"links": links}
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/kpis/hotline", summary="The board's 12345 hotline figures now (received today, "
            "waiting for first contact, the queue not placed, open warnings, late) and the "
            "rates by department for the current month or half year, each linking to /orders")
@replica_read
def hotline_figures(request: Request, engine: EngineDep, settings: SettingsDep, user: UserDep,
                    period: Annotated[str | None, Query(
                        description="month (default) or half_year, of the subdistrict's "
                                    "calendar")] = None,
                    start: Annotated[str | None, Query(
                        alias="from", description="or a period of your own: its first day "
                                                  "or moment (with to)")] = None,
                    end: Annotated[str | None, Query(alias="to")] = None) -> JSONResponse:
    """Figures the user may see (a worker's grids, a department's own orders); the period's
    rates as ``GET /orders/kpis?by=department`` gives them, counted up to now; the names of
    the departments; ``newest_event`` moves whenever an order does. Callers never appear."""
    reject_unknown(request.query_params, {"period", "from", "to"})
    base = f"{str(request.base_url).rstrip('/')}/orders"
    with engine.connect() as conn:
        return JSONResponse(hotline_board(conn, user, settings.time_zone, base, period, start,
                                          end))
