"""Planners' analyses over the street network: coverage of a facility layer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, UserDep
from api.errors import SIGNED, errors
from api.params import Id
from api.replicas import replica_read
from api.routes.edits import read_json
from twin.analysis.coverage import (
    ANALYSIS_ROLES,
    building_coverage,
    coverage,
    coverage_query,
    service_areas,
    what_if,
)
from twin.analysis.fire import DEFAULT_REACH_M, fire_access, fire_query
from twin.analysis.placement import MAX_TIME_LIMIT_S, MIN_SPACING_M, site, siting_query
from twin.errors import Forbidden, Problem, Unprocessable
from twin.users import User

# planners, commanders and admins only (403); bad parameters are named in a 422
router = APIRouter(tags=["analysis"], responses=errors(*SIGNED, 403, 422))

COVERAGE_PARAMS = frozenset({"layer", "within", "by", "state", "tags", "service_areas",
                             "uncovered", "asOf"})
BUILDING_PARAMS = frozenset({"layer", "within", "state", "tags", "asOf"})
WHAT_IF_PARAMS = frozenset({"layer", "within", "by", "state", "tags", "at", "asOf"})

LayerParam = Annotated[str | None, Query(description="a point layer: waste_points, "
                                         "charging_points")]
WithinParam = Annotated[str | None, Query(description="metres along the network; default: "
                                          "the layer's coverage_within_m")]
StateParam = Annotated[str | None, Query(description="only facilities in this state, e.g. "
                                         "safe")]
TagsParam = Annotated[str | None, Query(description="only facilities with all these tags, "
                                        "comma-separated")]
AsOfParam = Annotated[str | None, Query(alias="asOf", description="RFC 3339 time: the twin "
                                        "as it was then (default now)")]


def _allowed(user: User, what: str = "coverage") -> None:
    if user.role not in ANALYSIS_ROLES:
        raise Forbidden(f"{what} is for {', '.join(ANALYSIS_ROLES)}; {user.name} is a "
                        f"{user.role}")


def _known(request: Request, allowed: frozenset[str]) -> None:
    unknown = [name for name in request.query_params if name not in allowed]
    if unknown:
        raise Unprocessable(
            f"unknown query parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}",
            [Problem(name, request.query_params[name], "unknown query parameter",
                     "未知查询参数") for name in unknown])


@router.get("/analysis/coverage", summary="Network distance from every building to the "
            "nearest facility of a layer; covered shares per micro-grid or area")
@replica_read
def coverage_route(
    request: Request,
    engine: EngineDep,
    user: UserDep,
    layer: LayerParam = None,
    within: WithinParam = None,
    by: Annotated[str | None, Query(description="grid (default) or area")] = None,
    state: StateParam = None,
    tags: TagsParam = None,
    with_areas: Annotated[str | None, Query(alias="service_areas", description="true: add "
                                            "each facility's service area")] = None,
    with_uncovered: Annotated[str | None, Query(alias="uncovered", description="false: leave "
                                                "out the uncovered buildings")] = None,
    as_of: AsOfParam = None,
) -> dict[str, Any]:
    """Planners, commanders and admins; the answer names the twin's moment (``twin``)."""
    _allowed(user)
    _known(request, COVERAGE_PARAMS)
    query = coverage_query(layer, within, by, state, tags, as_of)
    for name, value in (("service_areas", with_areas), ("uncovered", with_uncovered)):
        if value not in (None, "true", "false"):
            raise Unprocessable(f"{name}={value}: true or false",
                                [Problem(name, value, "true or false", "须为true或false")])
    body = coverage(engine, query).as_dict(uncovered=with_uncovered != "false")
    if with_areas == "true":
        body["service_areas"] = service_areas(engine, query)
    return body


@router.get("/analysis/coverage/buildings/{building_id}", summary="One building's network "
            "distance to the nearest facility of a layer", responses=errors(404))
@replica_read
def building_coverage_route(
    request: Request,
    engine: EngineDep,
    user: UserDep,
    building_id: Id,
    layer: LayerParam = None,
    within: WithinParam = None,
    state: StateParam = None,
    tags: TagsParam = None,
    as_of: AsOfParam = None,
) -> dict[str, Any]:
    """The distance is measured however far the nearest facility is; ``covered`` compares it
    with ``within``."""
    _allowed(user)
    _known(request, BUILDING_PARAMS)
    return building_coverage(engine, coverage_query(layer, within, None, state, tags, as_of),
                             building_id)


def _point(name: str, value: str | None) -> tuple[float, float]:
    """``lon,lat`` in WGS-84 degrees, checked."""
    try:
        lon, lat = (float(v) for v in (value or "").split(","))
    except ValueError:
        raise Unprocessable(f"{name}={value}: lon,lat in degrees (WGS-84)", [Problem(
            name, value, "lon,lat in degrees (WGS-84), e.g. 121.51,31.19",
            "须为经度,纬度")]) from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise Unprocessable(f"{name}={value}: outside the globe", [Problem(
            name, value, "longitude within ±180 and latitude within ±90", "经纬度超出范围")])
    return lon, lat


@router.get("/analysis/coverage/what-if", summary="What one more facility at a point would "
            "cover: the buildings and households it adds, totals before and after")
@replica_read
def what_if_route(
    request: Request,
    engine: EngineDep,
    user: UserDep,
    at: Annotated[str | None, Query(description="lon,lat of the new facility (WGS-84)")] = None,
    layer: LayerParam = None,
    within: WithinParam = None,
    by: Annotated[str | None, Query(description="grid (default) or area")] = None,
    state: StateParam = None,
    tags: TagsParam = None,
    as_of: AsOfParam = None,
) -> dict[str, Any]:
    """Searches only the new facility's neighbourhood; the rest is the layer's coverage,
    kept in memory until an edit changes what it read."""
    _allowed(user)
    _known(request, WHAT_IF_PARAMS)
    query = coverage_query(layer, within, by, state, tags, as_of)
    lon, lat = _point("at", at)
    return what_if(engine, query, lon, lat)


_SITING_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["layer", "n"], "additionalProperties": False,
    "properties": {
        "layer": {"type": "string", "description": "a point layer, e.g. charging_points"},
        "n": {"type": "integer", "minimum": 1, "description": "new sites to place"},
        "within": {"type": "number", "exclusiveMinimum": 0,
                   "description": "metres along the network; default the layer's "
                                  "coverage_within_m"},
        "state": {"type": "string", "description": "only existing facilities in this state "
                                                   "count"},
        "tags": {"type": "array", "items": {"type": "string"},
                 "description": "only existing facilities with all these tags count"},
        "candidates": {"description": "[[lon, lat], ...] or {\"spacing_m\": 50} (default): "
                                      "sites along the streets",
                       "oneOf": [{"type": "array", "items": {"type": "array", "items": {
                           "type": "number"}, "minItems": 2, "maxItems": 2}},
                                 {"type": "object", "properties": {"spacing_m": {
                                     "type": "number", "minimum": MIN_SPACING_M}}}]},
        "time_limit_s": {"type": "number", "exclusiveMinimum": 0,
                         "maximum": MAX_TIME_LIMIT_S, "default": 10},
        "as_of": {"type": "string", "format": "date-time",
                  "description": "the twin as it was then (default now)"},
    }},
    "example": {"layer": "charging_points", "n": 54, "state": "safe",
                "candidates": {"spacing_m": 50}}}}}


@router.post("/analysis/siting", summary="Where N new facilities of a layer cover the most "
             "households (maximal covering, existing facilities kept)",
             openapi_extra={"requestBody": _SITING_BODY}, responses=errors(413))
@replica_read
async def siting_route(request: Request, engine: EngineDep, user: UserDep) -> dict[str, Any]:
    """A JSON body: ``layer``, ``n``, ``within`` (metres; default the layer's
    coverage_within_m), ``state``/``tags`` (which existing facilities count), ``candidates``
    (a list of [lon, lat] or ``{"spacing_m": 50}``, the default: along the streets) and
    ``time_limit_s`` (default 10, at most 60). Planners, commanders and admins."""
    _allowed(user, "siting")
    query = siting_query(await read_json(request, 1024 * 1024))
    result = await run_in_threadpool(site, engine, query)
    return result.as_dict()


@router.get("/analysis/fire-access", summary="Which buildings a fire engine cannot get "
            "near; which blocked passages would restore the most households")
@replica_read
def fire_access_route(
    request: Request,
    engine: EngineDep,
    user: UserDep,
    reach: Annotated[str | None, Query(description=f"metres a hose line goes from where "
                                       f"the engine stops; default {DEFAULT_REACH_M:g}")] = None,
    by: Annotated[str | None, Query(description="grid (default) or area")] = None,
    as_of: AsOfParam = None,
) -> dict[str, Any]:
    """Planners, commanders and admins; the answer names the twin's moment (``twin``)."""
    _allowed(user, "fire access")
    _known(request, frozenset({"reach", "by", "asOf"}))
    query = fire_query(reach, by, as_of)
    return fire_access(engine, query).as_dict(query.by)
