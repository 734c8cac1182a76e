"""Coverage: how far each building walks along the street network to its nearest facility.

For a point layer (waste points, charging points, ...), optionally only facilities in one
state or carrying some tags: every building's network distance to the nearest one (snap
distances included, see ``twin.analysis.network``), whether that is within the threshold, and per
micro-grid or residential area the covered share of buildings and of households; the
uncovered buildings as GeoJSON; each facility's service area as a polygon.

Freshness: every answer names the twin's moment it describes, the newest change id of the
layers it read (one indexed ``max(id)`` per layer, read in the same snapshot as the data).
The network, the snapped buildings and the results are kept in this process by those ids,
so an edit of streets, passages, buildings or facilities is seen by the next request, and
nothing is recomputed while none happens. (A transaction that commits after one with a
larger change id is seen with the next change after it.)
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from scipy.spatial import cKDTree
from sqlalchemy import Connection, Engine, text

from twin.analysis.network import Frame, Network, Snapped, fmt_metres, frame_for, street_network
from twin.errors import InvalidInput, NotFound, Problem, Unprocessable
from twin.features.reads import source
from twin.layer import GROUP_COLUMNS, GROUPS_ZH
from twin.registry import all_layers
from twin.times import parse_time

# Who may ask: planning questions, not a grid worker's.
ANALYSIS_ROLES = ("planner", "commander", "admin")
# The largest threshold taken (metres): beyond a subdistrict's size it means nothing.
MAX_WITHIN_M = 20_000.0
# How far coverage searches, in thresholds: uncovered buildings up to this many times the
# threshold away carry their distance (a planner tells a near miss from a real gap).
SEARCH_FACTOR = 4.0
# Service areas: the reachable street pieces widened by this much on each side (metres).
SERVICE_BUFFER_M = 10.0
NETWORK_LAYERS = ("streets", "fire_passages")
BUILDING_LAYERS = ("buildings", "residential_areas")

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CoverageQuery:
    """What to measure, checked: the facility layer and filters, the threshold, the grouping."""

    layer: str
    within: float
    by: str = "grid"
    state: str | None = None
    tags: tuple[str, ...] = ()
    as_of: datetime | None = None  # the twin as it was then (None: now)

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "within_m": self.within, "by": self.by,
                "state": self.state, "tags": list(self.tags), "as_of": _iso(self.as_of)}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _p(name: str, value: object, reason: str, reason_zh: str) -> Problem:
    return Problem(name, value, reason, reason_zh)


def coverage_query(layer: str | None, within: str | float | None = None,
                   by: str | None = None, state: str | None = None,
                   tags: str | Sequence[str] | None = None,
                   as_of: str | datetime | None = None) -> CoverageQuery:
    """Check the parameters, every problem at once (Unprocessable naming each field)."""
    problems: list[Problem] = []
    moment = checked_moment(as_of, problems)
    layers = all_layers()
    point_layers = [n for n, lay in layers.items() if lay.geometry_type == "Point"]
    found = layers.get(layer or "")
    if layer is None:
        problems.append(_p("layer", None, f"required: one of {', '.join(point_layers)}",
                           "缺少图层"))
    elif found is None:
        problems.append(_p("layer", layer, f"unknown layer; point layers: "
                           f"{', '.join(point_layers)}", "未知图层"))
    elif found.geometry_type != "Point":
        problems.append(_p("layer", layer, f"a {found.geometry_type} layer: coverage is "
                           f"measured to point layers ({', '.join(point_layers)})",
                           "覆盖分析只适用于点图层"))
        found = None
    value = math.nan
    if within is None or within == "":
        default = found.coverage_within_m if found else None
        if found is not None and default is None:
            problems.append(_p("within", None, f"required: {layer} has no default distance",
                               "缺少距离"))
        value = default if default is not None else math.nan
    else:
        try:
            value = float(within)
        except (TypeError, ValueError):
            problems.append(_p("within", within, "not a number of metres", "不是数字"))
        else:
            if not math.isfinite(value) or value <= 0 or value > MAX_WITHIN_M:
                problems.append(_p("within", within, f"metres, above 0 and at most "
                                   f"{MAX_WITHIN_M:g}", f"须大于0且不超过{MAX_WITHIN_M:g}米"))
    group = by or "grid"
    if group not in GROUP_COLUMNS:
        problems.append(_p("by", by, f"one of {', '.join(GROUP_COLUMNS)}", GROUPS_ZH))
    if state is not None and found is not None:
        if found.state_field is None:
            problems.append(_p("state", state, f"{layer} has no state attribute",
                               "该图层没有状态属性"))
        elif state not in found.state_labels:
            problems.append(_p("state", state, f"one of {', '.join(found.state_labels)}",
                               "未知状态"))
    tag_list = tuple(t.strip() for t in (tags.split(",") if isinstance(tags, str)
                                         else tags or ()) if t.strip())
    if found is not None:
        problems += found.tags.problems(list(tag_list))
    if problems:
        raise Unprocessable("; ".join(f"{p.field}={p.value}: {p.reason}" for p in problems),
                            problems)
    assert layer is not None
    return CoverageQuery(layer, value, group, state, tag_list, moment)


def checked_moment(as_of: object, problems: list[Problem], name: str = "asOf"
                   ) -> datetime | None:
    """``as_of`` as a time, a problem naming ``name`` added to ``problems`` when it is not
    one."""
    if as_of is None or isinstance(as_of, datetime):
        return as_of
    try:
        return parse_time(name, str(as_of))
    except InvalidInput as e:
        problems += e.problems
        return None


# ---- the process's memory ----------------------------------------------------------------

class _Memo:
    """A few recent values by key, safe across the server's threads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_NETWORKS = _Memo(4)
_BUILDINGS = _Memo(4)
_RESULTS = _Memo(32)
TIMINGS: dict[str, float] = {}  # seconds the last network build, snapping and search took


def forget() -> None:
    """Empty the memory (tests and benchmarks)."""
    for memo in (_NETWORKS, _BUILDINGS, _RESULTS):
        memo.clear()


def layer_states(conn: Connection, layers: Sequence[str], as_of: datetime | None = None
                 ) -> dict[str, int]:
    """The newest change id of each layer (0: none), one index probe each; at ``as_of``,
    the newest made by then."""
    rows = conn.execute(text(
        "SELECT l, coalesce((SELECT max(c.id) FROM twin.changes c WHERE c.layer = l "
        "AND (CAST(:as_of AS timestamptz) IS NULL OR c.server_time <= :as_of)), 0) "
        "FROM unnest(CAST(:layers AS text[])) AS l"), {"layers": list(layers), "as_of": as_of})
    return {str(name): int(last) for name, last in rows}


# ---- what is read --------------------------------------------------------------------------

@dataclass(frozen=True)
class Walkable:
    network: Network
    frame: Frame
    streets: int
    passages: int  # open ones, in the network
    seconds: float
    street_lines: Any = None  # the streets' centre lines in metres (candidate sites lie on them)


def read_frame(conn: Connection, as_of: datetime | None = None) -> Frame:
    """The UTM zone of the twin's centre, where metres are measured."""
    params: dict[str, Any] = {}
    lon, lat = conn.exec_driver_sql(
        "SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Extent(geom)::geometry) AS c "  # noqa: S608
        f"FROM {source(as_of, params)}) AS x", params).one()
    return frame_for(float(lon or 0.0), float(lat or 0.0))


def read_ways(conn: Connection, as_of: datetime | None) -> tuple[Frame, list[Any]]:
    """The streets and fire passages (now or at ``as_of``) in the twin's metres, with what
    the walking and the fire networks need of them: one read for both."""
    frame = read_frame(conn, as_of)
    params: dict[str, Any] = {"srid": frame.epsg}
    rows = conn.exec_driver_sql(
        "SELECT id, layer, name, ST_AsBinary(ST_Transform(geom, %(srid)s::integer)) AS wkb, "  # noqa: S608
        "coalesce((props->>'width_m')::float8, 0) AS width, props->>'state' AS state, "
        "props->>'road_class' AS road_class, "
        "coalesce((props->>'fire_engine')::boolean, true) AS fire_engine, "
        "props->>'blocked_by' AS blocked_by, ST_AsGeoJSON(geom, 7) AS geojson "
        f"FROM {source(as_of, params)} WHERE layer IN ('streets', 'fire_passages') "
        "ORDER BY id", params).all()
    return frame, list(rows)


def _read_network(conn: Connection, as_of: datetime | None) -> Walkable:
    started = time.perf_counter()
    frame, rows = read_ways(conn, as_of)
    streets = [r for r in rows if r.layer == "streets"]
    # blocked passages are left out (walkers and fire engines alike: see twin.analysis.network)
    passages = [r for r in rows if r.layer == "fire_passages" and r.state != "blocked"]
    street_lines = shapely.from_wkb([bytes(r.wkb) for r in streets])
    network = street_network(street_lines, [r.width for r in streets],
                             list(shapely.from_wkb([bytes(r.wkb) for r in passages])))
    return Walkable(network, frame, len(streets), len(passages),
                    time.perf_counter() - started, street_lines)


@dataclass(frozen=True)
class Buildings:
    ids: Ints
    households: Ints
    elderly: Ints
    grids: list[str | None]
    areas: list[str | None]
    subdistricts: list[str | None]
    addresses: list[str | None]
    geojson: list[str]
    snapped: Snapped
    area_names: dict[str, str]
    index: dict[int, int]
    xy: Floats = field(default_factory=lambda: np.zeros((0, 2)))  # points on surface, metres

    @cached_property
    def tree(self) -> cKDTree:
        """The buildings' points in a k-d tree, to find those near a point."""
        return cKDTree(self.xy)

    def codes(self, by: str) -> list[str | None]:
        """Each building's micro-grid (``grid``), residential area or subdistrict code."""
        return {"grid": self.grids, "area": self.areas}.get(by, self.subdistricts)

    def groups(self, by: str, sums: Callable[[npt.NDArray[np.bool_]], dict[str, Any]]
               ) -> list[dict[str, Any]]:
        """``sums`` of the buildings of each micro-grid (``grid``), residential area
        (``area``, with its name) or subdistrict, by code."""
        keys = np.array([k or "" for k in self.codes(by)])
        out = []
        for code in sorted(set(keys.tolist())):
            entry: dict[str, Any] = {"code": code or None}
            if by == "area":
                entry["name"] = self.area_names.get(code)
            out.append({**entry, **sums(keys == code)})
        return out


def _read_buildings(conn: Connection, walk: Walkable, as_of: datetime | None) -> Buildings:
    params: dict[str, Any] = {}
    features = source(as_of, params)
    rows = conn.exec_driver_sql(
        "SELECT id, ST_X(p) AS lon, ST_Y(p) AS lat, "  # noqa: S608
        "coalesce((props->>'households')::int, 0) AS households, "
        "coalesce((props->>'elderly')::int, 0) AS elderly, grid_code, area_code, "
        "subdistrict_code, "
        "coalesce(props->>'address', name) AS address, ST_AsGeoJSON(geom, 7) AS geojson "
        f"FROM (SELECT *, ST_PointOnSurface(geom) AS p FROM {features} "
        "      WHERE layer = 'buildings') AS b ORDER BY id", params).all()
    names = {str(code): str(name) for code, name in conn.exec_driver_sql(
        "SELECT props->>'code', coalesce(props->>'committee', name, props->>'code') "  # noqa: S608
        f"FROM {features} WHERE layer = 'residential_areas'", params) if code}
    x, y = walk.frame.to_metres(np.array([r.lon for r in rows], dtype=np.float64),
                                np.array([r.lat for r in rows], dtype=np.float64))
    ids = np.array([r.id for r in rows], dtype=np.int64)
    return Buildings(
        ids=ids, households=np.array([r.households for r in rows], dtype=np.int64),
        elderly=np.array([r.elderly for r in rows], dtype=np.int64),
        grids=[r.grid_code for r in rows], areas=[r.area_code for r in rows],
        subdistricts=[r.subdistrict_code for r in rows],
        addresses=[r.address for r in rows], geojson=[r.geojson for r in rows],
        snapped=walk.network.snap(x, y), area_names=names,
        index={int(i): k for k, i in enumerate(ids)}, xy=np.column_stack([x, y]))


@dataclass(frozen=True)
class Facilities:
    ids: Ints
    names: list[str | None]
    snapped: Snapped
    xy: Floats = field(default_factory=lambda: np.zeros((0, 2)))  # where they stand, metres


def _read_facilities(conn: Connection, query: CoverageQuery, walk: Walkable) -> Facilities:
    layer = all_layers()[query.layer]
    params: dict[str, Any] = {"layer": query.layer, "tags": list(query.tags)}
    features = source(query.as_of, params)
    where = ["layer = %(layer)s"]
    if query.state is not None and layer.state_field:
        where.append("props->>%(field)s::text = %(state)s")
        params.update({"field": layer.state_field, "state": query.state})
    if query.tags:
        where.append("tags @> %(tags)s::text[]")
    rows = conn.exec_driver_sql(
        f"SELECT id, name, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM {features} "  # noqa: S608
        f"WHERE {' AND '.join(where)} ORDER BY id", params).all()
    x, y = walk.frame.to_metres(np.array([r.lon for r in rows], dtype=np.float64),
                                np.array([r.lat for r in rows], dtype=np.float64))
    return Facilities(np.array([r.id for r in rows], dtype=np.int64),
                      [r.name for r in rows], walk.network.snap(x, y), np.column_stack([x, y]))


# ---- the answer ----------------------------------------------------------------------------

def twin_state(states: dict[str, int], as_of: datetime | None) -> dict[str, Any]:
    """Which moment of the twin an answer describes: the newest change of the layers read
    (by ``as_of``, when the answer is about then)."""
    return {"change_id": max(states.values(), default=0), "layers": states,
            "as_of": _iso(as_of)}

def _with_shares(counts: dict[str, Any]) -> dict[str, Any]:
    """Counts of buildings and households with the covered shares of each."""
    n, c = counts["buildings"], counts["covered_buildings"]
    hh, chh = counts["households"], counts["covered_households"]
    return {"buildings": n, "covered_buildings": c,
            "covered_share": round(c / n, 4) if n else None,
            "households": hh, "covered_households": chh,
            "covered_households_share": round(chh / hh, 4) if hh else None,
            "elderly": counts["elderly"], "covered_elderly": counts["covered_elderly"]}


@dataclass
class Coverage:
    """Every building's distance to its nearest facility, at one moment of the twin."""

    query: CoverageQuery
    states: dict[str, int]
    walk: Walkable
    buildings: Buildings
    facilities: Facilities
    distance: Floats  # inf: farther than the search went
    nearest: Ints  # facility id, -1 for none
    limit: float | None  # how far the search went (None: everywhere)
    seconds: float
    # summaries by (grouping, threshold), shared by every answer made from these distances
    _groups: dict[tuple[str, float], list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def state(self) -> int:
        return max(self.states.values(), default=0)

    @property
    def covered(self) -> npt.NDArray[np.bool_]:
        return self.distance <= self.query.within

    def twin_state(self) -> dict[str, Any]:
        return twin_state(self.states, self.query.as_of)

    def _sums(self, rows: npt.NDArray[np.bool_]) -> dict[str, Any]:
        b = self.buildings
        covered = self.covered & rows
        return _with_shares({
            "buildings": int(rows.sum()), "covered_buildings": int(covered.sum()),
            "households": int(b.households[rows].sum()),
            "covered_households": int(b.households[covered].sum()),
            "elderly": int(b.elderly[rows].sum()),
            "covered_elderly": int(b.elderly[covered].sum())})

    def totals(self) -> dict[str, Any]:
        return {**self._sums(np.ones(len(self.distance), dtype=bool)),
                "facilities": len(self.facilities.ids)}

    def groups(self, by: str | None = None) -> list[dict[str, Any]]:
        """Summaries per micro-grid (``grid``) or residential area (``area``), by code."""
        key = (by or self.query.by, self.query.within)
        if key not in self._groups:
            self._groups[key] = self.buildings.groups(key[0], self._sums)
        return self._groups[key]

    def building(self, k: int, within: float | None = None) -> dict[str, Any]:
        b = self.buildings
        within = self.query.within if within is None else within
        nearest = int(self.nearest[k])
        return {"id": int(b.ids[k]), "address": b.addresses[k],
                "households": int(b.households[k]), "elderly": int(b.elderly[k]),
                "micro_grid": b.grids[k], "residential_area": b.areas[k],
                "distance_m": fmt_metres(float(self.distance[k])),
                "nearest_facility": nearest if nearest >= 0 else None,
                "covered": bool(self.distance[k] <= within),
                "snap_m": round(float(b.snapped.offset[k]), 2)}

    def uncovered(self) -> dict[str, Any]:
        """The buildings beyond the threshold as a GeoJSON FeatureCollection (WGS-84)."""
        b = self.buildings
        features = []
        for k in np.flatnonzero(~self.covered):
            props = self.building(int(k))
            fid = props.pop("id")
            features.append({"type": "Feature", "id": fid, "properties": props,
                             "geometry": json.loads(b.geojson[k])})
        return {"type": "FeatureCollection", "features": features}

    def as_dict(self, by: str | None = None, uncovered: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {
            "parameters": self.query.as_dict() | {"by": by or self.query.by},
            "twin": self.twin_state(),
            "crs": f"EPSG:{self.walk.frame.epsg}",
            "network": {"nodes": self.walk.network.node_count,
                        "edges": self.walk.network.edge_count,
                        "streets": self.walk.streets, "open_passages": self.walk.passages},
            "totals": self.totals(),
            "groups": self.groups(by),
        }
        if uncovered:
            body["uncovered"] = self.uncovered()
        return body


def _compute(conn: Connection, key: tuple[Any, ...], query: CoverageQuery,
             states: dict[str, int], limit: float | None) -> Coverage:
    walk: Walkable = _NETWORKS.get(key[:2] + tuple(states[n] for n in NETWORK_LAYERS),
                                   lambda: _read_network(conn, query.as_of))
    started = time.perf_counter()
    buildings: Buildings = _BUILDINGS.get(
        key[:2] + tuple(states[n] for n in (*NETWORK_LAYERS, *BUILDING_LAYERS)),
        lambda: _read_buildings(conn, walk, query.as_of))
    facilities = _read_facilities(conn, query, walk)
    found = walk.network.nearest(facilities.snapped, buildings.snapped, limit)
    nearest = (np.where(found.source >= 0, facilities.ids[np.maximum(found.source, 0)], -1)
               if len(facilities.ids) else np.full(len(found.source), -1))
    return Coverage(query, states, walk, buildings, facilities, found.distance,
                    nearest.astype(np.int64), limit, time.perf_counter() - started)


def _coverage(engine: Engine, query: CoverageQuery, limit: float | None) -> Coverage:
    layers = (*NETWORK_LAYERS, *BUILDING_LAYERS, query.layer)
    db = engine.url.render_as_string(hide_password=True)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, \
            conn.begin():
        states = layer_states(conn, layers, query.as_of)
        # the key holds what the distances depend on; the answer is this query's (its
        # threshold and grouping), never that of the request that measured them first
        key = (db, query.as_of, tuple(sorted(states.items())), query.layer, query.state,
               query.tags, limit)
        result: Coverage = _RESULTS.get(key, lambda: _compute(conn, key, query, states, limit))
    return replace(result, query=query)


def coverage(engine: Engine, query: CoverageQuery) -> Coverage:
    """Every building's distance to its nearest facility, searched up to SEARCH_FACTOR times
    ``query.within``: an uncovered building says how far it is short, unless it is farther
    still (then its distance is null)."""
    return _coverage(engine, query, query.within * SEARCH_FACTOR)


def building_coverage(engine: Engine, query: CoverageQuery, building_id: int
                      ) -> dict[str, Any]:
    """One building's answer, its distance measured however far the nearest facility is."""
    result = _coverage(engine, query, None)
    k = result.buildings.index.get(building_id)
    if k is None:
        raise NotFound(f"no building {building_id}")
    return {"parameters": query.as_dict(), "twin": result.twin_state(),
            "building": result.building(k, query.within)}


def service_areas(engine: Engine, query: CoverageQuery) -> dict[str, Any]:
    """Each facility's service area: the street pieces within ``query.within`` of it,
    widened by SERVICE_BUFFER_M and unioned, as a GeoJSON FeatureCollection (WGS-84)."""
    result = coverage(engine, query)
    network, frame = result.walk.network, result.walk.frame
    features = []
    for k, fid in enumerate(result.facilities.ids):
        reach = network.reach(result.facilities.snapped.take(slice(k, k + 1)), query.within)
        if reach.is_empty:
            continue
        area = reach.buffer(SERVICE_BUFFER_M, quad_segs=2).simplify(0.5)
        area = shapely.set_precision(frame.to_lonlat(area), 1e-7)
        features.append({"type": "Feature", "id": int(fid),
                         "properties": {"name": result.facilities.names[k],
                                        "within_m": query.within},
                         "geometry": json.loads(shapely.to_geojson(area))})
    return {"type": "FeatureCollection", "twin": result.twin_state(), "features": features}


def what_if(engine: Engine, query: CoverageQuery, lon: float, lat: float) -> dict[str, Any]:
    """What one more facility at (lon, lat) would change: the buildings it would bring within
    ``query.within`` (uncovered now), and the totals and the groups they lie in, before and
    after. Only the neighbourhood is searched (``Network.from_one``); the rest is the layer's
    coverage in memory, so the answer costs what the neighbourhood costs."""
    result = coverage(engine, query)
    network, b = result.walk.network, result.buildings
    x, y = result.walk.frame.to_metres(np.array([lon]), np.array([lat]))
    at = np.array([x[0], y[0]])
    site = network.snap(x, y)
    if len(site) == 0:
        raise Unprocessable("the twin has no streets: nothing can be reached", [Problem(
            "at", [lon, lat], "no street network to stand on", "没有街道网络")])
    near = np.sort(np.asarray(b.tree.query_ball_point(at, query.within), dtype=np.int64))
    distance = network.from_one(site, at, b.snapped.take(near), query.within)
    wins = (distance <= query.within) & ~result.covered[near]
    gained, gained_distance = near[wins], distance[wins]

    def plus(before: dict[str, Any], rows: Ints) -> dict[str, Any]:
        return _with_shares(before | {
            "covered_buildings": before["covered_buildings"] + len(rows),
            "covered_households": before["covered_households"] + int(b.households[rows].sum()),
            "covered_elderly": before["covered_elderly"] + int(b.elderly[rows].sum())})

    codes = np.array([b.codes(query.by)[k] or "" for k in gained])
    groups = {g["code"] or "": g for g in result.groups(query.by)}
    totals = result.totals()
    newly = []
    for k, d in zip(gained.tolist(), gained_distance.tolist(), strict=True):
        props = result.building(k) | {"distance_m": fmt_metres(d), "covered": True,
                                      "nearest_facility": None, "new_site": True}
        newly.append({"type": "Feature", "id": props.pop("id"), "properties": props,
                      "geometry": json.loads(b.geojson[k])})
    return {
        "parameters": query.as_dict() | {"at": [lon, lat]},
        "twin": result.twin_state(),
        "snap_m": round(float(site.offset[0]), 2),
        "gained": {"buildings": len(gained), "households": int(b.households[gained].sum()),
                   "elderly": int(b.elderly[gained].sum())},
        "before": totals,
        "after": plus(totals, gained) | {"facilities": totals["facilities"] + 1},
        "groups": [{"code": code or None, "before": groups[code],
                    "after": plus(groups[code], gained[codes == code])}
                   for code in sorted(set(codes.tolist()))],
        "newly_covered": {"type": "FeatureCollection", "features": newly},
    }
