"""Siting on the live twin: where N new facilities of a layer serve the most households.

The coverage code (``twin.analysis.coverage``) gives the walking network, the buildings snapped onto
it and which buildings the existing facilities (those that count: a state, tags) already
serve within the distance. Candidate sites are given as longitude/latitude or spread along
the streets' centre lines every ``spacing_m`` metres (skipping those within
``CLEAR_OF_EXISTING_M`` of an existing facility); ``Network.within`` finds, with one
multi-source Dijkstra, which candidate reaches which building within the distance; the
maximal covering problem (households as weights, existing coverage kept) goes to
``twin.analysis.siting.solve`` (greedy, then HiGHS within the time limit).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Engine

from twin.analysis.coverage import Coverage, checked_moment, coverage, coverage_query
from twin.analysis.network import Floats, points_along
from twin.analysis.siting import DEFAULT_TIME_LIMIT_S, SitingProblem, SitingResult, solve
from twin.errors import Problem, Unprocessable

DEFAULT_SPACING_M = 50.0
MIN_SPACING_M = 5.0
MAX_TIME_LIMIT_S = 60.0
MAX_CANDIDATES = 5_000
# A generated candidate this close to an existing facility (metres) is not a new site.
CLEAR_OF_EXISTING_M = 5.0
# A given candidate must lie this close to a street or open passage (metres).
MAX_CANDIDATE_SNAP_M = 100.0
BODY_MEMBERS = frozenset({"layer", "n", "within", "state", "tags", "candidates",
                          "time_limit_s", "as_of"})


@dataclass(frozen=True)
class SitingQuery:
    layer: str
    n: int
    within: float
    state: str | None
    tags: tuple[str, ...]
    points: tuple[tuple[float, float], ...] | None  # given candidates (lon, lat)
    spacing: float | None  # or generated ones
    time_limit_s: float
    as_of: datetime | None = None  # the twin as it was then (None: now)

    def as_dict(self) -> dict[str, Any]:
        candidates: Any = ({"spacing_m": self.spacing} if self.points is None
                           else {"given": len(self.points)})
        return {"layer": self.layer, "n": self.n, "within_m": self.within,
                "state": self.state, "tags": list(self.tags), "candidates": candidates,
                "time_limit_s": self.time_limit_s,
                "as_of": None if self.as_of is None else self.as_of.isoformat()}


def _p(name: str, value: object, reason: str, reason_zh: str) -> Problem:
    return Problem(name, value, reason, reason_zh)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def siting_query(body: object) -> SitingQuery:
    """Check a request body, every problem at once (Unprocessable naming each field)."""
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object",
                            [_p("body", type(body).__name__, "a JSON object", "须为JSON对象")])
    problems: list[Problem] = []
    for name in body:
        if name not in BODY_MEMBERS:
            problems.append(_p(name, body[name], "unknown member; allowed: "
                               + ", ".join(sorted(BODY_MEMBERS)), "未知字段"))
    n = body.get("n")
    if isinstance(n, bool) or not isinstance(n, int):
        problems.append(_p("n", n, "required: a whole number of new sites, at least 1",
                           "须为整数"))
    elif n < 1:
        problems.append(_p("n", n, "at least 1", "至少为1"))
    within = body.get("within")
    if within is not None and _number(within) is None:
        problems.append(_p("within", within, "not a number of metres", "不是数字"))
        within = None
    tags = body.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str)
                                                                for t in tags)):
        problems.append(_p("tags", tags, "a list of tags", "须为标签列表"))
        tags = None
    state = body.get("state")
    if state is not None and not isinstance(state, str):
        problems.append(_p("state", state, "a state, e.g. safe", "须为状态名"))
        state = None
    try:
        checked = coverage_query(body.get("layer"), within, None, state, tags,
                                 checked_moment(body.get("as_of"), problems, "as_of"))
    except Unprocessable as e:
        problems += e.problems
        checked = None
    limit = body.get("time_limit_s", DEFAULT_TIME_LIMIT_S)
    seconds = _number(limit)
    if seconds is None or not math.isfinite(seconds) or not 0 < seconds <= MAX_TIME_LIMIT_S:
        problems.append(_p("time_limit_s", limit, f"seconds, above 0 and at most "
                           f"{MAX_TIME_LIMIT_S:g}", f"须大于0且不超过{MAX_TIME_LIMIT_S:g}秒"))
    points, spacing = _candidates(body.get("candidates", {"spacing_m": DEFAULT_SPACING_M}),
                                  problems)
    if isinstance(n, int) and points is not None and n > len(points):
        problems.append(_p("n", n, f"larger than the {len(points)} candidate sites given",
                           f"大于候选点数（{len(points)}个）"))
    if problems or checked is None:
        raise Unprocessable("; ".join(f"{p.field}={p.value}: {p.reason}" for p in problems),
                            problems)
    assert isinstance(n, int) and seconds is not None
    return SitingQuery(checked.layer, n, checked.within, checked.state, checked.tags,
                       points, spacing, seconds, checked.as_of)


def _candidates(value: object, problems: list[Problem]
                ) -> tuple[tuple[tuple[float, float], ...] | None, float | None]:
    if isinstance(value, dict):
        unknown = [k for k in value if k != "spacing_m"]
        spacing = _number(value.get("spacing_m"))
        if unknown or spacing is None or not math.isfinite(spacing) or \
                spacing < MIN_SPACING_M:
            problems.append(_p("candidates.spacing_m", value.get("spacing_m"),
                               f"metres between generated sites, at least {MIN_SPACING_M:g}"
                               + (f" (unknown members {unknown})" if unknown else ""),
                               f"间距须不小于{MIN_SPACING_M:g}米"))
            return None, None
        return None, spacing
    if not isinstance(value, list) or not value:
        problems.append(_p("candidates", value, 'a list of [lon, lat] points or '
                           '{"spacing_m": metres}', "须为[经度,纬度]列表或{\"spacing_m\": 间距}"))
        return None, None
    points: list[tuple[float, float]] = []
    for k, point in enumerate(value):
        pair = [_number(c) for c in point] if isinstance(point, list) else []
        lon, lat = (pair[0], pair[1]) if len(pair) == 2 else (None, None)
        if lon is None or lat is None or not (-180 <= lon <= 180 and -90 <= lat <= 90):
            problems.append(_p(f"candidates[{k}]", point, "[longitude, latitude] in degrees "
                               "(WGS-84)", "须为[经度,纬度]"))
            continue
        points.append((lon, lat))
    if len(points) > MAX_CANDIDATES:
        problems.append(_p("candidates", len(points), f"at most {MAX_CANDIDATES} sites",
                           f"候选点至多{MAX_CANDIDATES}个"))
    return tuple(points), None


@dataclass
class Siting:
    query: SitingQuery
    base: Coverage  # the network, buildings and existing coverage it started from
    xy: Floats  # candidate sites, metres
    result: SitingResult
    newly: list[list[int]]  # per chosen site, the building indices it newly covers
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        b, r = self.base.buildings, self.result
        lonlat = shapely.get_coordinates(self.base.walk.frame.to_lonlat(
            shapely.points(self.xy[list(r.sites)]))) if r.sites else np.zeros((0, 2))
        features = []
        for rank, (site, added) in enumerate(zip(r.sites, r.marginal, strict=True)):
            got = self.newly[rank]
            features.append({
                "type": "Feature", "id": rank + 1,
                "geometry": {"type": "Point", "coordinates": [round(float(lonlat[rank][0]), 7),
                                                              round(float(lonlat[rank][1]), 7)]},
                "properties": {"rank": rank + 1, "candidate": int(site),
                               "marginal_households": round(added),
                               "buildings_added": len(got),
                               "elderly_added": int(b.elderly[got].sum())}})
        totals = self.base.totals()
        return {
            "parameters": self.query.as_dict(),
            "twin": self.base.twin_state(),
            "crs": f"EPSG:{self.base.walk.frame.epsg}",
            "candidates": len(self.xy),
            "existing": {"facilities": totals["facilities"],
                         "covered_households": totals["covered_households"],
                         "households": totals["households"]},
            "households_added": round(r.households),
            "covered_households_after": totals["covered_households"] + round(r.households),
            "coverable_households": round(r.coverable),
            "method": r.method, "optimal": r.optimal, "gap": round(r.gap, 6),
            "greedy_gap": None if r.greedy_gap is None else round(r.greedy_gap, 6),
            "greedy_households": (None if r.greedy_households is None
                                  else round(r.greedy_households)),
            "bound": round(r.bound, 2), "note": r.note,
            "solver_seconds": round(r.seconds, 3), "seconds": round(self.seconds, 3),
            "sites": {"type": "FeatureCollection", "features": features},
        }


def _candidate_points(query: SitingQuery, base: Coverage) -> Floats:
    """The candidate sites in metres: the given ones (each near the network), or spread
    along the streets clear of the existing facilities."""
    frame, network = base.walk.frame, base.walk.network
    if query.points is not None:
        lon = np.array([p[0] for p in query.points], dtype=np.float64)
        lat = np.array([p[1] for p in query.points], dtype=np.float64)
        x, y = frame.to_metres(lon, lat)
        far = np.flatnonzero(network.snap(x, y).offset > MAX_CANDIDATE_SNAP_M)
        if len(far):
            raise Unprocessable(
                f"{len(far)} candidate(s) farther than {MAX_CANDIDATE_SNAP_M:g} m from any "
                "street", [_p(f"candidates[{k}]", list(query.points[k]), f"farther than "
                              f"{MAX_CANDIDATE_SNAP_M:g} m from any street of the twin",
                              f"距道路超过{MAX_CANDIDATE_SNAP_M:g}米") for k in far[:20]])
        return np.column_stack([x, y])
    assert query.spacing is not None
    lines = base.walk.street_lines if base.walk.street_lines is not None else []
    x, y = points_along(lines, query.spacing)
    existing = base.facilities.xy
    if len(existing) and len(x):
        tree = shapely.STRtree(shapely.points(existing))
        near, _ = tree.query(shapely.points(x, y), predicate="dwithin",
                             distance=CLEAR_OF_EXISTING_M)
        keep = np.ones(len(x), dtype=bool)
        keep[near] = False
        x, y = x[keep], y[keep]
    if len(x) > MAX_CANDIDATES:
        raise Unprocessable(f"{len(x)} candidate sites at {query.spacing:g} m: at most "
                            f"{MAX_CANDIDATES}", [_p("candidates.spacing_m", query.spacing,
                                                     f"gives {len(x)} sites, more than "
                                                     f"{MAX_CANDIDATES}", "间距过小")])
    return np.column_stack([x, y])


def site(engine: Engine, query: SitingQuery) -> Siting:
    """Place ``query.n`` new facilities among the candidates (see the module's notes)."""
    started = time.perf_counter()
    base = coverage(engine, coverage_query(query.layer, query.within, None, query.state,
                                           query.tags, query.as_of))
    xy = _candidate_points(query, base)
    network, buildings = base.walk.network, base.buildings
    if query.n > len(xy):
        raise Unprocessable(f"n={query.n}: larger than the {len(xy)} candidate sites",
                            [_p("n", query.n, f"larger than the {len(xy)} candidate sites",
                                f"大于候选点数（{len(xy)}个）")])
    pairs = network.within(network.snap(xy[:, 0], xy[:, 1]), buildings.snapped, query.within)
    covers = pairs.matrix()
    covered = base.covered
    problem = SitingProblem(buildings.households.astype(np.float64), covers, query.n, covered)
    result = solve(problem, query.time_limit_s)
    done = covered.copy()
    newly: list[list[int]] = []
    for j in result.sites:
        reached = covers.indices[covers.indptr[j]:covers.indptr[j + 1]]
        got = reached[~done[reached]]
        done[got] = True
        newly.append([int(i) for i in got])
    return Siting(query, base, xy, result, newly, time.perf_counter() - started)

