"""The street network: nodes, edges in metres, points snapped onto it, shortest distances.

Built from the ``streets`` layer and the open ``fire_passages`` (a blocked passage is left
out: walkers and fire engines alike use open passages only, which keeps one network for both;
a fire network would further keep only streets whose ``fire_engine`` is true).

Metres are measured in the UTM zone of the twin's centre (EPSG:326xx north of the equator,
327xx south), derived from the data: nothing about one subdistrict is written here.

Noding: lines are split where they cross or touch by ``shapely.unary_union`` (which computes
crossings exactly once); the ends of the pieces become nodes keyed by their coordinates
rounded to the millimetre, so pieces meeting at a crossing share a node. A line's end that
stops short of another line is joined to it explicitly, because floating-point ends rarely lie
exactly on a line: a street's end within ``STREET_JOIN_M`` of another street, and a passage's
end on a street's carriageway (within half the street's ``width_m`` plus ``KERB_M`` of its
centre line, as passages start at the kerb), get a short connector to the nearest point of
that line, and the line is split there.

Snapping: a point (a building's point on surface, a facility) goes to the nearest point of the
nearest edge (``STRtree.query_nearest``); its distance to a node is the snap distance plus the
distance along the edge. Two points on one edge also reach each other directly along it.

The graph is a scipy CSR matrix for the hot path (``scipy.sparse.csgraph.dijkstra`` from many
sources at once; ``within`` runs it with a row per source, giving every source-target pair
within a distance: siting's coverage matrix); ``to_networkx`` gives the same graph, with
snapped points spliced into their edges, so tests can check the distances against networkx.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt
import shapely
from pyproj import Transformer
from scipy.sparse import csr_array, csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from shapely.geometry import LineString
from shapely.ops import substring

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

# A street's end this close to another street (metres) meets it.
STREET_JOIN_M = 1.0
# A passage's end meets a street when within the street's half width plus this (metres).
KERB_M = 1.0
# Node keys: coordinates rounded to this many decimals of a metre (1 mm).
NODE_DECIMALS = 3


def utm_epsg(lon: float, lat: float) -> int:
    """The EPSG code of the WGS-84 UTM zone holding a point (e.g. 32651 for Shanghai)."""
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class Frame:
    """The projected CRS metres are measured in, and the ways into and out of it."""

    epsg: int

    def to_metres(self, lon: Floats, lat: Floats) -> tuple[Floats, Floats]:
        x, y = _transformer(4326, self.epsg).transform(lon, lat)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def to_lonlat(self, geoms: Any) -> Any:
        """Shapely geometries in metres back to WGS-84 longitude/latitude."""
        move = _transformer(self.epsg, 4326)
        return shapely.transform(geoms, lambda xy: np.column_stack(move.transform(*xy.T)))

    def lines_to_metres(self, lines: Any) -> Any:
        move = _transformer(4326, self.epsg)
        return shapely.transform(lines, lambda xy: np.column_stack(move.transform(*xy.T)))


_TRANSFORMERS: dict[tuple[int, int], Transformer] = {}


def _transformer(source: int, target: int) -> Transformer:
    key = (source, target)
    if key not in _TRANSFORMERS:
        _TRANSFORMERS[key] = Transformer.from_crs(source, target, always_xy=True)
    return _TRANSFORMERS[key]


def frame_for(lon: float, lat: float) -> Frame:
    return Frame(utm_epsg(lon, lat))


@dataclass(frozen=True)
class Snapped:
    """Points snapped onto a network: the edge each lies on, how far along it, how far off."""

    edge: Ints
    along: Floats
    offset: Floats

    def __len__(self) -> int:
        return len(self.edge)

    def take(self, index: Any) -> Snapped:
        return Snapped(self.edge[index], self.along[index], self.offset[index])


@dataclass(frozen=True)
class Nearest:
    """For each snapped point: the distance to its nearest source (inf beyond the limit) and
    which source that is (-1: none within the limit)."""

    distance: Floats
    source: Ints


@dataclass(frozen=True)
class Pairs:
    """Source-target pairs within a distance, sorted by (source, target): parallel arrays."""

    source: Ints
    target: Ints
    distance: Floats
    shape: tuple[int, int]  # (sources, targets)

    @classmethod
    def empty(cls, sources: int, targets: int) -> Pairs:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0),
                   (sources, targets))

    def matrix(self) -> Any:
        """A sparse boolean sources x targets matrix (scipy CSR array): True within reach."""
        return csr_array((np.ones(len(self.source), dtype=bool), (self.source, self.target)),
                         shape=self.shape)


class Network:
    """An undirected graph of street pieces; node ids 0..n-1, edge ids 0..m-1."""

    def __init__(self, nodes: Floats, u: Ints, v: Ints, geoms: Any) -> None:
        self.nodes = nodes
        self.u = u
        self.v = v
        self.geoms = geoms
        self.length = shapely.length(geoms).astype(np.float64)
        self.tree = shapely.STRtree(geoms)
        # one entry per node pair (the shortest of parallel pieces); loops lead nowhere
        lo, hi = np.minimum(u, v), np.maximum(u, v)
        keep = lo != hi
        order = np.lexsort((self.length[keep], hi[keep], lo[keep]))
        pairs = np.column_stack((lo[keep], hi[keep]))[order]
        first = np.ones(len(pairs), dtype=bool)
        first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
        self._rows = pairs[first, 0]
        self._cols = pairs[first, 1]
        self._weights = self.length[keep][order][first]
        n = len(nodes)
        self.matrix = csr_matrix((self._weights, (self._rows, self._cols)), shape=(n, n))

    @property
    def node_count(self) -> int:
        return len(self.nodes)

    @property
    def edge_count(self) -> int:
        return len(self.u)

    @classmethod
    def from_lines(cls, lines: Sequence[Any] | Any) -> Network:
        """Node ``lines`` (metres) where they cross or touch; each piece between nodes is an
        edge. Ends meant to meet a line must already lie on it (see ``street_network``)."""
        pieces = [g for g in shapely.get_parts(shapely.unary_union(np.asarray(lines)))
                  if isinstance(g, LineString) and g.length > 0]
        geoms = np.array(pieces, dtype=object) if pieces else np.array([], dtype=object)
        if len(geoms) == 0:
            return cls(np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.int64), geoms)
        ends = np.vstack([shapely.get_coordinates(shapely.get_point(geoms, 0)),
                          shapely.get_coordinates(shapely.get_point(geoms, -1))])
        keys, index = np.unique(np.round(ends, NODE_DECIMALS), axis=0, return_inverse=True)
        index = index.reshape(-1).astype(np.int64)
        m = len(geoms)
        return cls(keys.astype(np.float64), index[:m], index[m:], geoms)

    # ---- snapping ---------------------------------------------------------------------
    def snap(self, x: Floats, y: Floats) -> Snapped:
        """Each point onto the nearest point of its nearest edge."""
        if len(x) == 0 or self.edge_count == 0:
            empty = np.zeros(0)
            return Snapped(np.zeros(0, np.int64), empty, empty)
        points = shapely.points(x, y)
        (which, edge), offset = self.tree.query_nearest(points, return_distance=True,
                                                        all_matches=False)
        chosen = np.empty(len(points), dtype=np.int64)
        chosen[which] = edge
        dist = np.empty(len(points))
        dist[which] = offset
        along = shapely.line_locate_point(self.geoms[chosen], points)
        return Snapped(chosen, np.asarray(along, dtype=np.float64), dist)

    def _end_costs(self, snapped: Snapped) -> tuple[Ints, Ints, Floats, Floats]:
        """For snapped points: both end nodes of their edge and the cost to reach each."""
        u, v = self.u[snapped.edge], self.v[snapped.edge]
        length = self.length[snapped.edge]
        return u, v, snapped.offset + snapped.along, snapped.offset + (length - snapped.along)

    # ---- distances --------------------------------------------------------------------
    def nearest(self, sources: Snapped, targets: Snapped, limit: float | None = None
                ) -> Nearest:
        """For each target, the network distance to its nearest source (snap distances
        included), with one multi-source Dijkstra over the graph plus one node per source."""
        t = len(targets)
        if len(sources) == 0 or t == 0:
            return Nearest(np.full(t, np.inf), np.full(t, -1, dtype=np.int64))
        n = self.node_count
        graph, virtual = self._source_graph(sources)
        dist, _pred, origin = dijkstra(graph, directed=False, indices=virtual, min_only=True,
                                       limit=np.inf if limit is None else limit,
                                       return_predecessors=True)
        tu, tv, tcu, tcv = self._end_costs(targets)
        via_u, via_v = dist[tu] + tcu, dist[tv] + tcv
        best = np.minimum(via_u, via_v)
        source = np.where(via_u <= via_v, origin[tu], origin[tv]).astype(np.int64)
        source = np.where(source >= n, source - n, -1)
        # a source and a target on the same edge also meet directly along it
        direct_d, direct_s = self._same_edge(sources, targets)
        closer = direct_d < best
        best = np.where(closer, direct_d, best)
        source = np.where(closer, direct_s, source)
        if limit is not None:
            over = best > limit
            best[over] = np.inf
            source[over] = -1
        source[~np.isfinite(best)] = -1
        return Nearest(best, source)

    def _source_graph(self, sources: Snapped) -> tuple[csr_matrix, Ints]:
        """The graph plus one node per source (ids n..n+k-1), hanging off both ends of its
        edge by the cost of reaching each (snap distance included)."""
        n, k = self.node_count, len(sources)
        su, sv, scu, scv = self._end_costs(sources)
        virtual = np.arange(n, n + k, dtype=np.int64)
        rows = np.concatenate([self._rows, virtual, virtual])
        cols = np.concatenate([self._cols, su, sv])
        weights = np.concatenate([self._weights, scu, scv])
        graph = csr_matrix((weights, (rows, cols)), shape=(n + k, n + k))
        # duplicates would be summed: keep the smaller of a source's two ends on a loop edge
        if graph.nnz != len(weights):
            graph = _min_matrix(rows, cols, weights, n + k)
        return graph, virtual

    @staticmethod
    def _same_edge_pairs(sources: Snapped, targets: Snapped) -> tuple[Ints, Ints, Floats]:
        """Every (target, source) pair on one edge, grouped by target, and the distance
        between them directly along it."""
        order = np.argsort(sources.edge, kind="stable")
        edges = sources.edge[order]
        lo = np.searchsorted(edges, targets.edge, side="left")
        count = np.searchsorted(edges, targets.edge, side="right") - lo
        hit = np.flatnonzero(count > 0)
        t = np.repeat(hit, count[hit]).astype(np.int64)
        starts = np.cumsum(count[hit]) - count[hit]
        cand = order[lo[t] + np.arange(len(t)) - np.repeat(starts, count[hit])]
        d = sources.offset[cand] + np.abs(sources.along[cand] - targets.along[t]) + \
            targets.offset[t]
        return t, cand.astype(np.int64), d

    def _same_edge(self, sources: Snapped, targets: Snapped) -> tuple[Floats, Ints]:
        """Along-edge distance from each target to the nearest source on its own edge."""
        best = np.full(len(targets), np.inf)
        which = np.full(len(targets), -1, dtype=np.int64)
        t, cand, d = self._same_edge_pairs(sources, targets)
        if len(t) == 0:
            return best, which
        # the first smallest per target: sort by (target, distance)
        pick = np.lexsort((d, t))
        first = np.ones(len(pick), dtype=bool)
        first[1:] = t[pick][1:] != t[pick][:-1]
        chosen = pick[first]
        best[t[chosen]] = d[chosen]
        which[t[chosen]] = cand[chosen]
        return best, which

    @cached_property
    def node_tree(self) -> cKDTree:
        """The nodes in a k-d tree, to find those near a point as the crow flies."""
        return cKDTree(self.nodes)

    def from_one(self, source: Snapped, at: Floats, targets: Snapped, limit: float) -> Floats:
        """The network distance from one snapped point standing at ``at`` (x, y) to each
        target (inf beyond ``limit``), searched among the nodes within ``limit`` of ``at``
        as the crow flies only: a walk is never shorter than the straight line, so no walk
        within the limit leaves that disc, and the cost follows the neighbourhood's size,
        not the network's ("what if a facility stood here")."""
        if len(source) != 1:
            raise ValueError("from_one takes one point")
        distance = np.full(len(targets), np.inf)
        local = np.sort(np.asarray(self.node_tree.query_ball_point(at, limit), dtype=np.int64))
        if len(local):
            k = len(local)
            part = self.matrix[local][:, local].tocoo()
            su, sv, scu, scv = self._end_costs(source)
            ends = _positions(local, np.concatenate([su, sv]))
            hang = ends >= 0  # the ends of the point's edge inside the disc
            graph = _min_matrix(np.concatenate([part.row, np.full(int(hang.sum()), k)]),
                                np.concatenate([part.col, ends[hang]]),
                                np.concatenate([part.data, np.concatenate([scu, scv])[hang]]),
                                k + 1)
            dist = np.append(dijkstra(graph, directed=False, indices=k, limit=limit)[:k],
                             np.inf)  # position -1: a node outside the disc
            tu, tv, tcu, tcv = self._end_costs(targets)
            distance = np.minimum(dist[_positions(local, tu)] + tcu,
                                  dist[_positions(local, tv)] + tcv)
        t, _cand, d = self._same_edge_pairs(source, targets)
        np.minimum.at(distance, t, d)
        distance[distance > limit] = np.inf
        return distance

    def within(self, sources: Snapped, targets: Snapped, limit: float,
               max_cells: int = 20_000_000) -> Pairs:
        """Every (source, target) pair within ``limit`` metres along the network (snap
        distances included), e.g. which candidate site reaches which building.

        One Dijkstra from all sources at once (each its own row, searched up to ``limit``)
        over the graph plus one node per source; a target is reached through either end of
        its edge, or directly along the edge from a source on the same one. The sources go
        in batches only when one call would hold more than ``max_cells`` distances."""
        k, t = len(sources), len(targets)
        if k == 0 or t == 0:
            return Pairs.empty(k, t)
        n = self.node_count
        graph, virtual = self._source_graph(sources)
        tu, tv, tcu, tcv = self._end_costs(targets)
        found_s: list[Ints] = []
        found_t: list[Ints] = []
        found_d: list[Floats] = []
        step = max(1, max_cells // (n + k + t))
        for first in range(0, k, step):
            dist = dijkstra(graph, directed=False, indices=virtual[first:first + step],
                            limit=limit)
            d = np.minimum(dist[:, tu] + tcu, dist[:, tv] + tcv)
            rows, cols = np.nonzero(d <= limit)
            found_s.append(rows.astype(np.int64) + first)
            found_t.append(cols.astype(np.int64))
            found_d.append(d[rows, cols])
        same_t, same_s, same_d = self._same_edge_pairs(sources, targets)
        keep = same_d <= limit
        s_all = np.concatenate([*found_s, same_s[keep]])
        t_all = np.concatenate([*found_t, same_t[keep]])
        d_all = np.concatenate([*found_d, same_d[keep]])
        # a pair found both ways keeps the shorter; sorted by (source, target)
        order = np.lexsort((d_all, t_all, s_all))
        s_all, t_all, d_all = s_all[order], t_all[order], d_all[order]
        first_of = np.ones(len(s_all), dtype=bool)
        first_of[1:] = (s_all[1:] != s_all[:-1]) | (t_all[1:] != t_all[:-1])
        return Pairs(s_all[first_of], t_all[first_of], d_all[first_of], (k, t))

    def reach(self, source: Snapped, limit: float) -> Any:
        """The parts of edges within ``limit`` metres of one snapped point, as (Multi)
        LineStrings in metres, overlaps removed (the snap distance counts against the
        limit)."""
        if len(source) != 1:
            raise ValueError("reach takes one point")
        n = self.node_count
        su, sv, scu, scv = self._end_costs(source)
        # the point hangs off both ends of its edge (one end, the nearer way, on a loop)
        ends = [su[0]] if su[0] == sv[0] else [su[0], sv[0]]
        costs = [min(scu[0], scv[0])] if su[0] == sv[0] else [scu[0], scv[0]]
        graph = csr_matrix((np.concatenate([self._weights, costs]),
                            (np.concatenate([self._rows, [n] * len(ends)]),
                             np.concatenate([self._cols, ends]))), shape=(n + 1, n + 1))
        dist = dijkstra(graph, directed=False, indices=n, limit=limit)
        left = limit - dist[:n]
        parts: list[Any] = []
        for e in np.flatnonzero(np.isfinite(left[self.u]) | np.isfinite(left[self.v])):
            length = float(self.length[e])
            a = left[self.u[e]]
            b = left[self.v[e]]
            if np.isfinite(a) and np.isfinite(b) and a + b >= length:
                parts.append(self.geoms[e])
                continue
            if np.isfinite(a) and a > 0:
                parts.append(substring(self.geoms[e], 0.0, min(float(a), length)))
            if np.isfinite(b) and b > 0:
                parts.append(substring(self.geoms[e], max(length - float(b), 0.0), length))
        e0 = int(source.edge[0])
        spare = limit - float(source.offset[0])
        if spare > 0:
            at = float(source.along[0])
            parts.append(substring(self.geoms[e0], max(at - spare, 0.0),
                                   min(at + spare, float(self.length[e0]))))
        lines = [p for p in parts if not p.is_empty and p.length > 0]
        # pieces reached both ways (and the point's own edge) overlap: union them once
        return shapely.line_merge(shapely.union_all(lines)) if lines else (
            shapely.MultiLineString())

    # ---- networkx ---------------------------------------------------------------------
    def to_networkx(self, points: dict[Any, tuple[int, float, float]] | None = None
                    ) -> nx.MultiGraph:
        """The graph in networkx (nodes 0..n-1, every piece an edge with ``weight`` in
        metres). ``points`` (name -> (edge, along, offset), as ``snap`` gives) are spliced in:
        each point's edge is cut where it lies, and the point hangs off the cut by its
        offset, so the distances are those a walker would take, computed independently."""
        graph: nx.MultiGraph = nx.MultiGraph()
        graph.add_nodes_from(range(self.node_count))
        cuts: dict[int, list[tuple[float, Any]]] = {}
        for name, (edge, along, offset) in (points or {}).items():
            cuts.setdefault(edge, []).append((along, ("cut", name)))
            graph.add_edge(name, ("cut", name), weight=offset)
        for e in range(self.edge_count):
            u, v, length = int(self.u[e]), int(self.v[e]), float(self.length[e])
            stops = [(0.0, u), *sorted(cuts.get(e, []), key=lambda c: c[0]), (length, v)]
            for (a, p), (b, q) in pairwise(stops):
                graph.add_edge(p, q, weight=b - a)
        return graph


def _positions(local: Ints, nodes: Ints) -> Ints:
    """Each of ``nodes``' index in the sorted ``local``, -1 when absent."""
    at = np.minimum(np.searchsorted(local, nodes), len(local) - 1)
    return np.where(local[at] == nodes, at, -1).astype(np.int64)


def _min_matrix(rows: Ints, cols: Ints, weights: Floats, size: int) -> csr_matrix:
    """A CSR matrix keeping the smallest weight of repeated (row, col) pairs (scipy sums
    them); loops are dropped."""
    lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
    keep = lo != hi
    lo, hi, w = lo[keep], hi[keep], weights[keep]
    order = np.lexsort((w, hi, lo))
    lo, hi, w = lo[order], hi[order], w[order]
    first = np.ones(len(lo), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return csr_matrix((w[first], (lo[first], hi[first])), shape=(size, size))


# ---- from the layers ---------------------------------------------------------------------

def _join_ends(lines: list[Any], ends: Any, reach: Floats, exclude: Ints | None
           ) -> tuple[list[Any], dict[int, list[float]]]:
    """Connectors from each end point to the nearest point of ``lines`` when within its
    ``reach`` (metres), and where to split each line; ``exclude[i]`` is a line an end must
    not join (its own)."""
    connectors: list[Any] = []
    splits: dict[int, list[float]] = {}
    if not lines or len(ends) == 0:
        return connectors, splits
    targets = np.array(lines, dtype=object)
    tree = shapely.STRtree(targets)
    left, right = tree.query(ends, predicate="dwithin", distance=float(reach.max()))
    for i in np.unique(left):
        cand = right[left == i]
        if exclude is not None:
            cand = cand[cand != exclude[i]]
        if len(cand) == 0:
            continue
        d = shapely.distance(targets[cand], ends[i])
        j = int(np.argmin(d))
        if d[j] > reach[i]:
            continue
        line = targets[cand[j]]
        at = float(line.project(ends[i]))
        if 0 < at < line.length:
            splits.setdefault(int(cand[j]), []).append(at)
        on = line.interpolate(at)
        if d[j] > 0 and not on.equals(ends[i]):
            connectors.append(LineString([ends[i], on]))
    return connectors, splits


def _split(line: Any, at: list[float]) -> list[Any]:
    cuts = [0.0, *sorted(set(at)), float(line.length)]
    return [substring(line, a, b) for a, b in pairwise(cuts) if b > a]


def street_network(streets: Sequence[Any], street_widths: Sequence[float],
                   passages: Sequence[Any]) -> Network:
    """The walking network from street centre lines (metres, with their widths) and the
    passages to include (metres): see the module's notes on how they are joined."""
    street_lines = list(streets)
    widths = np.asarray(street_widths, dtype=np.float64)
    if street_lines:
        s_arr = np.array(street_lines, dtype=object)
        s_ends = np.concatenate([shapely.get_point(s_arr, 0), shapely.get_point(s_arr, -1)])
        own = np.concatenate([np.arange(len(s_arr)), np.arange(len(s_arr))]).astype(np.int64)
        joins, splits = _join_ends(street_lines, s_ends, np.full(len(s_ends), STREET_JOIN_M),
                                   own)
    else:
        joins, splits = [], {}
    if passages and street_lines:
        p_arr = np.array(list(passages), dtype=object)
        p_ends = np.concatenate([shapely.get_point(p_arr, 0), shapely.get_point(p_arr, -1)])
        # how far from a centre line still lies on that street: its half width at most
        tree = shapely.STRtree(np.array(street_lines, dtype=object))
        near = tree.query_nearest(p_ends, all_matches=False)[1]
        reach = widths[near] / 2 + KERB_M
        more, more_splits = _join_ends(street_lines, p_ends, reach, None)
        joins += more
        for k, at in more_splits.items():
            splits.setdefault(k, []).extend(at)
    pieces: list[Any] = []
    for k, line in enumerate(street_lines):
        pieces += _split(line, splits[k]) if k in splits else [line]
    return Network.from_lines([*pieces, *passages, *joins])


def points_along(lines: Sequence[Any] | Any, spacing: float) -> tuple[Floats, Floats]:
    """Points spread along each line about ``spacing`` metres apart: round(length / spacing)
    of them (at least one) at equal steps, the first and last half a step from the ends, so
    lines meeting at a junction do not both put a point on it."""
    geoms = np.asarray(lines, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0), np.zeros(0)
    length = shapely.length(geoms)
    count = np.maximum(np.round(length / spacing), 1).astype(np.int64)
    which = np.repeat(np.arange(len(geoms)), count)
    step = np.repeat(length / count, count)
    rank = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
    points = shapely.line_interpolate_point(geoms[which], (rank + 0.5) * step)
    xy = shapely.get_coordinates(points)
    return xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)


def fmt_metres(value: float) -> float | None:
    """A distance for JSON: metres to the centimetre, None when unreachable."""
    return round(value, 2) if math.isfinite(value) else None
