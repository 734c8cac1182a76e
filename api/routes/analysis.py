"""Planners' analyses over the street network: coverage of a facility layer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import EngineDep, UserDep
from twin.coverage import (
    ANALYSIS_ROLES,
    building_coverage,
    coverage,
    coverage_query,
    service_areas,
)
from twin.errors import Forbidden, Problem, Unprocessable
from twin.users import User

router = APIRouter(tags=["analysis"])

COVERAGE_PARAMS = frozenset({"layer", "within", "by", "state", "tags", "service_areas"})
BUILDING_PARAMS = frozenset({"layer", "within", "state", "tags"})

LayerParam = Annotated[str | None, Query(description="a point layer: waste_points, "
                                         "charging_points")]
WithinParam = Annotated[str | None, Query(description="metres along the network; default: "
                                          "the layer's coverage_within_m")]
StateParam = Annotated[str | None, Query(description="only facilities in this state, e.g. "
                                         "safe")]
TagsParam = Annotated[str | None, Query(description="only facilities with all these tags, "
                                        "comma-separated")]


def _allowed(user: User) -> None:
    if user.role not in ANALYSIS_ROLES:
        raise Forbidden(f"coverage is for {', '.join(ANALYSIS_ROLES)}; {user.name} is a "
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
) -> dict[str, Any]:
    """Planners, commanders and admins; the answer names the twin's moment (``twin``)."""
    _allowed(user)
    _known(request, COVERAGE_PARAMS)
    query = coverage_query(layer, within, by, state, tags)
    if with_areas not in (None, "true", "false"):
        raise Unprocessable(f"service_areas={with_areas}: true or false",
                            [Problem("service_areas", with_areas, "true or false",
                                     "须为true或false")])
    body = coverage(engine, query).as_dict()
    if with_areas == "true":
        body["service_areas"] = service_areas(engine, query)
    return body


@router.get("/analysis/coverage/buildings/{building_id}", summary="One building's network "
            "distance to the nearest facility of a layer")
def building_coverage_route(
    request: Request,
    engine: EngineDep,
    user: UserDep,
    building_id: int,
    layer: LayerParam = None,
    within: WithinParam = None,
    state: StateParam = None,
    tags: TagsParam = None,
) -> dict[str, Any]:
    """The distance is measured however far the nearest facility is; ``covered`` compares it
    with ``within``."""
    _allowed(user)
    _known(request, BUILDING_PARAMS)
    return building_coverage(engine, coverage_query(layer, within, None, state, tags),
                             building_id)
