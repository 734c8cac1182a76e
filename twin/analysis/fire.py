"""Fire access: which buildings a fire engine cannot get near, and which blocked passages,
opened, would bring it near the most households.

The fire-engine network is the streets whose ``fire_engine`` is true plus the *open* fire
passages, joined as ``twin.analysis.network.street_network`` joins the walking network (alleys too
narrow for an engine are left out; a blocked passage is left out at once). Engines enter
from the main roads (``road_class`` main): the part they can drive is every piece of the
network connected to a main road (or, in a twin without main roads, the largest connected
part). A building is reachable when that part passes within ``reach`` metres of it: its
point on surface snapped onto the reachable part, the snap distance being the hose line
laid from where the engine stops (default ``DEFAULT_REACH_M``, a planning assumption).

Blocked passages are ranked by the households of the unreachable buildings that opening
each one alone would bring within reach: the network is built once with every passage in
it, blocked ones marked; opening one adds its pieces to the drivable graph, scipy's
connected components finds what becomes reachable, and an STRtree of the newly reachable
pieces finds the buildings within reach of them.

Cached in the process by the newest change ids of the layers read, like coverage.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Connection, Engine

from twin.analysis.coverage import (
    MAX_WITHIN_M,
    Buildings,
    Walkable,
    _Memo,
    _read_buildings,
    checked_moment,
    layer_states,
    read_ways,
    twin_state,
)
from twin.analysis.network import Floats, Frame, Ints, Network, fmt_metres, street_network
from twin.errors import Problem, Unprocessable
from twin.layer import GROUP_COLUMNS, GROUPS_ZH

# How far a hose line goes from where the engine stops (metres): an assumption, about three
# 20 m lengths of hose.
DEFAULT_REACH_M = 60.0
LAYERS = ("streets", "fire_passages", "buildings", "residential_areas")
# A network piece whose middle lies this close to a line (metres) is part of that line.
ON_LINE_M = 0.01

Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class FireQuery:
    reach: float = DEFAULT_REACH_M
    by: str = "grid"
    as_of: datetime | None = None  # the twin as it was then (None: now)

    def as_dict(self) -> dict[str, Any]:
        return {"reach_m": self.reach, "by": self.by,
                "as_of": None if self.as_of is None else self.as_of.isoformat()}


def fire_query(reach: str | float | None = None, by: str | None = None,
               as_of: str | datetime | None = None) -> FireQuery:
    """Check the parameters (Unprocessable naming each bad one)."""
    problems: list[Problem] = []
    moment = checked_moment(as_of, problems)
    value = DEFAULT_REACH_M
    if reach is not None and reach != "":
        try:
            value = float(reach)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or value <= 0 or value > MAX_WITHIN_M:
            problems.append(Problem("reach", reach, f"metres, above 0 and at most "
                                    f"{MAX_WITHIN_M:g}", f"须大于0且不超过{MAX_WITHIN_M:g}米"))
    group = by or "grid"
    if group not in GROUP_COLUMNS:
        problems.append(Problem("by", by, f"one of {', '.join(GROUP_COLUMNS)}",
                                GROUPS_ZH))
    if problems:
        raise Unprocessable("; ".join(f"{p.field}={p.value}: {p.reason}" for p in problems),
                            problems)
    return FireQuery(value, group, moment)


# ---- the fire-engine network -------------------------------------------------------------

@dataclass(frozen=True)
class FireNetwork:
    """Every fire street and passage (blocked ones too, marked), noded once."""

    walk: Walkable  # the network with the blocked passages in it (for snapping buildings)
    blocked_of: Ints  # per edge: which blocked passage it belongs to (-1: none)
    main: Bools  # per edge: on a main road
    passages: list[dict[str, Any]]  # the blocked passages: id, name, blocked_by, geometry
    entry: str  # "main roads" or "largest component"

    @property
    def network(self) -> Network:
        return self.walk.network

    def reachable(self, opened: int | None = None) -> Bools:
        """The edges an engine can drive to from the entry, with blocked passage ``opened``
        (an index of ``passages``) open too."""
        net = self.network
        drive = self.blocked_of < 0
        if opened is not None:
            drive = drive | (self.blocked_of == opened)
        u, v = net.u[drive], net.v[drive]
        graph = csr_matrix((np.ones(len(u)), (u, v)), shape=(net.node_count, net.node_count))
        _, label = connected_components(graph, directed=False)
        entry = drive & self.main
        if entry.any():
            chosen = np.unique(label[net.u[entry]])
        else:  # no main road: the part holding the most drivable pieces
            sizes = np.bincount(label[u], minlength=int(label.max(initial=0)) + 1)
            chosen = np.array([int(np.argmax(sizes))]) if len(u) else np.zeros(0, np.int64)
        return drive & np.isin(label[net.u], chosen)


def _on(lines: Any, mids: Any) -> tuple[Ints, Ints]:
    """(edge, line) pairs: the network pieces whose middle lies on each line."""
    if len(lines) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    edge, line = shapely.STRtree(np.asarray(lines, dtype=object)).query(
        mids, predicate="dwithin", distance=ON_LINE_M)
    return edge.astype(np.int64), line.astype(np.int64)


def _read_fire_network(conn: Connection, as_of: datetime | None) -> FireNetwork:
    started = time.perf_counter()
    frame, rows = read_ways(conn, as_of)
    streets = [r for r in rows if r.layer == "streets" and r.fire_engine]
    passages = [r for r in rows if r.layer == "fire_passages"]
    blocked = [r for r in passages if r.state == "blocked"]
    info = [{"id": int(r.id), "name": r.name, "blocked_by": r.blocked_by,
             "width_m": r.width, "geometry": json.loads(r.geojson)} for r in blocked]
    fire = fire_network(shapely.from_wkb([bytes(r.wkb) for r in streets]),
                        [r.width for r in streets], [r.road_class == "main" for r in streets],
                        shapely.from_wkb([bytes(r.wkb) for r in passages]),
                        [r.state == "blocked" for r in passages], frame, info)
    return replace(fire, walk=replace(fire.walk, seconds=time.perf_counter() - started))


def fire_network(streets: Any, widths: Sequence[float], main: Sequence[bool], passages: Any,
                 blocked: Sequence[bool], frame: Frame,
                 info: list[dict[str, Any]] | None = None) -> FireNetwork:
    """The fire network from the fire streets (in ``frame``'s metres, their widths, whether
    each is a main road) and every passage (metres, whether blocked); ``info`` describes the
    blocked passages, in order (default: their index as id)."""
    street_lines = np.asarray(streets, dtype=object)
    passage_lines = np.asarray(passages, dtype=object)
    is_blocked = np.asarray(blocked, dtype=bool)
    network = street_network(list(street_lines), widths, list(passage_lines))
    mids = shapely.line_interpolate_point(network.geoms, 0.5, normalized=True) \
        if network.edge_count else np.zeros(0, dtype=object)
    blocked_of = np.full(network.edge_count, -1, dtype=np.int64)
    edge, which = _on(passage_lines[is_blocked] if len(passage_lines) else [], mids)
    blocked_of[edge] = which
    on_main = np.zeros(network.edge_count, dtype=bool)
    edge, _ = _on(street_lines[np.asarray(main, dtype=bool)] if len(street_lines) else [],
                  mids)
    on_main[edge] = True
    opened = len(passage_lines) - int(is_blocked.sum())
    walk = Walkable(network, frame, len(street_lines), opened, 0.0, street_lines)
    described = info if info is not None else [
        {"id": k, "name": None, "blocked_by": None, "width_m": None, "geometry": None}
        for k in range(int(is_blocked.sum()))]
    return FireNetwork(walk, blocked_of, on_main, described,
                       "main roads" if on_main.any() else "largest component")


# ---- the answer ----------------------------------------------------------------------------

@dataclass
class FireAccess:
    query: FireQuery
    states: dict[str, int]
    fire: FireNetwork
    buildings: Buildings
    distance: Floats  # to the nearest reachable piece of the network (inf: none)
    ranking: list[dict[str, Any]]
    seconds: float
    _groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def unreachable(self) -> Bools:
        return ~(self.distance <= self.query.reach)

    def _sums(self, rows: Bools) -> dict[str, Any]:
        b, out = self.buildings, self.unreachable & rows
        n, hh = int(rows.sum()), int(b.households[rows].sum())
        return {"buildings": n, "unreachable_buildings": int(out.sum()),
                "households": hh, "unreachable_households": int(b.households[out].sum()),
                "elderly": int(b.elderly[rows].sum()),
                "unreachable_elderly": int(b.elderly[out].sum()),
                "reachable_households_share": round(1 - int(b.households[out].sum()) / hh, 4)
                if hh else None}

    def totals(self) -> dict[str, Any]:
        return self._sums(np.ones(len(self.distance), dtype=bool))

    def groups(self, by: str | None = None) -> list[dict[str, Any]]:
        by = by or self.query.by
        if by not in self._groups:
            self._groups[by] = self.buildings.groups(by, self._sums)
        return self._groups[by]

    def unreachable_geojson(self) -> dict[str, Any]:
        b = self.buildings
        features = [{"type": "Feature", "id": int(b.ids[k]),
                     "properties": {"address": b.addresses[k],
                                    "households": int(b.households[k]),
                                    "elderly": int(b.elderly[k]), "micro_grid": b.grids[k],
                                    "residential_area": b.areas[k],
                                    "distance_m": fmt_metres(float(self.distance[k]))},
                     "geometry": json.loads(b.geojson[k])}
                    for k in np.flatnonzero(self.unreachable)]
        return {"type": "FeatureCollection", "features": features}

    def as_dict(self, by: str | None = None) -> dict[str, Any]:
        net = self.fire.network
        return {
            "parameters": self.query.as_dict() | {"by": by or self.query.by},
            "twin": twin_state(self.states, self.query.as_of),
            "crs": f"EPSG:{self.fire.walk.frame.epsg}",
            "network": {"nodes": net.node_count, "edges": net.edge_count,
                        "fire_streets": self.fire.walk.streets,
                        "open_passages": self.fire.walk.passages,
                        "blocked_passages": len(self.fire.passages),
                        "entry": self.fire.entry},
            "totals": self.totals(),
            "groups": self.groups(by),
            "unreachable": self.unreachable_geojson(),
            "blocked_passages": self.ranking,
            "seconds": round(self.seconds, 3),
        }


def _nearest_distance(geoms: Any, points: Any) -> Floats:
    """Each point's distance to the nearest of ``geoms`` (inf when there are none)."""
    out = np.full(len(points), np.inf)
    if len(geoms) == 0 or len(points) == 0:
        return out
    (which, _), dist = shapely.STRtree(geoms).query_nearest(points, return_distance=True,
                                                            all_matches=False)
    out[which] = dist
    return out


def compute(fire: FireNetwork, buildings: Buildings, query: FireQuery,
             states: dict[str, int]) -> FireAccess:
    started = time.perf_counter()
    net = fire.network
    points = shapely.points(buildings.xy)
    reachable = fire.reachable()
    distance = _nearest_distance(net.geoms[reachable], points)
    out = np.flatnonzero(~(distance <= query.reach))
    ranking = []
    for k, passage in enumerate(fire.passages):
        added = fire.reachable(opened=k) & ~reachable
        restored: Ints = np.zeros(0, dtype=np.int64)
        if added.any() and len(out):
            hit, _ = shapely.STRtree(net.geoms[added]).query(
                points[out], predicate="dwithin", distance=query.reach)
            restored = out[np.unique(hit)]
        ranking.append({**passage,
                        "restores_buildings": len(restored),
                        "restores_households": int(buildings.households[restored].sum()),
                        "restores_elderly": int(buildings.elderly[restored].sum()),
                        "buildings": [int(i) for i in buildings.ids[restored]]})
    ranking.sort(key=lambda r: (-r["restores_households"], -r["restores_buildings"], r["id"]))
    for rank, entry in enumerate(ranking, 1):
        entry["rank"] = rank
    return FireAccess(query, states, fire, buildings, distance, ranking,
                      time.perf_counter() - started)


_NETWORKS = _Memo(4)
_BUILDINGS = _Memo(4)
_RESULTS = _Memo(16)


def forget() -> None:
    for memo in (_NETWORKS, _BUILDINGS, _RESULTS):
        memo.clear()


def fire_access(engine: Engine, query: FireQuery) -> FireAccess:
    """Every building's fire access at the twin's current moment (see the module's notes)."""
    db = engine.url.render_as_string(hide_password=True)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, \
            conn.begin():
        states = layer_states(conn, LAYERS, query.as_of)
        net_key = (db, query.as_of, states["streets"], states["fire_passages"])
        fire: FireNetwork = _NETWORKS.get(net_key,
                                          lambda: _read_fire_network(conn, query.as_of))
        b_key = (*net_key, states["buildings"], states["residential_areas"])
        buildings: Buildings = _BUILDINGS.get(
            b_key, lambda: _read_buildings(conn, fire.walk, query.as_of))
        result: FireAccess = _RESULTS.get((*b_key, query.reach), lambda: compute(
            fire, buildings, FireQuery(query.reach, as_of=query.as_of), states))
    # kept by what the answer depends on; it speaks with this query's grouping
    return replace(result, query=query)
