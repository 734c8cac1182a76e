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
nearest edge (the edges' segments by their midpoints in a k-d tree, the nearest few measured
exactly, with a proof that none farther could be nearer); its distance to a node is the snap
distance plus the distance along the edge. Two points on one edge also reach each other
directly along it.

The graph is a scipy CSR matrix for the hot path (``scipy.sparse.csgraph.dijkstra`` from many
sources at once; ``within`` runs it with a row per source, giving every source-target pair
within a distance: siting's coverage matrix; ``from_one`` searches one new point's
neighbourhood only); ``to_networkx`` gives the same graph, with snapped points spliced into
their edges, so tests can check the distances against networkx. The network holds numbers
only (no shapely objects): a 1,000,000-node district fits in about 200 MB.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from scipy.sparse import csr_array, csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from shapely.geometry import LineString
from shapely.ops import substring

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Index = npt.NDArray[np.integer[Any]]  # node and vertex numbers, int32 while they fit

# A street's end this close to another street (metres) meets it.
STREET_JOIN_M = 1.0
# A passage's end meets a street when within the street's half width plus this (metres).
KERB_M = 1.0
# Node keys: coordinates rounded to this many decimals of a metre (1 mm).
NODE_DECIMALS = 3
# Snapping: segments measured exactly per point at first, and the longest piece of a segment
# its midpoint stands for (metres; longer segments get more midpoints).
SNAP_K = 8
SNAP_PIECE_M = 100.0


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


_TRANSFORMERS: dict[tuple[int, int], Any] = {}


def _transformer(source: int, target: int) -> Any:
    """A pyproj Transformer, made once per pair (pyproj is imported when first needed)."""
    from pyproj import Transformer

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
    """An undirected graph of street pieces; node ids 0..n-1, edge ids 0..m-1.

    Pieces are kept as numbers, not as shapely objects (a district of 1,000,000 nodes has
    2,000,000 pieces: 600 MB as geometries and an STRtree): their end nodes, the vertices
    between them (a straight piece has none), their lengths; the graph as a CSR matrix
    holding both directions, so searches run directed and scipy copies nothing; the pieces'
    segments in a k-d tree of their midpoints to snap points. ``geoms`` makes the pieces'
    LineStrings when asked (the fire analysis does, at a subdistrict's size)."""

    def __init__(self, nodes: Floats, u: Index, v: Index, inner: Floats, offsets: Index
                 ) -> None:
        self.nodes = nodes
        self.u = u
        self.v = v
        self.inner = inner  # vertices between the ends: edge e's are inner[offsets[e]:offsets[e+1]]
        self.offsets = offsets
        m = len(u)
        # segments: each edge's count is its inner vertices plus one; with no inner vertex
        # anywhere, segment k is edge k and no map between them is kept
        counts = np.diff(offsets) + 1
        straight = len(inner) == 0
        self._seg_edge: Ints | None = None if straight else np.repeat(
            np.arange(m, dtype=np.int32 if m < 2**31 else np.int64), counts)
        self._seg_first: Ints | None = None if straight else np.concatenate(
            [[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        ax, ay, bx, by = self._segment_ends(np.arange(int(counts.sum()), dtype=np.int64))
        seg_len = np.hypot(bx - ax, by - ay)
        first = self._first_segment(np.arange(m, dtype=np.int64))
        self.length = np.add.reduceat(seg_len, first) if m and not straight else seg_len
        # along its edge, where each inner vertex lies (segments before it, summed)
        self._inner_along = np.zeros(0)
        if not straight:
            before = np.cumsum(seg_len) - np.repeat(np.cumsum(seg_len)[first] - seg_len[first],
                                                    counts)
            self._inner_along = np.delete(before, np.cumsum(counts) - 1)
        # snapping: the segments' midpoints, long segments cut into pieces of SNAP_PIECE_M
        pieces = np.maximum(np.ceil(seg_len / SNAP_PIECE_M), 1).astype(np.int64)
        self._piece_seg = (np.repeat(np.arange(len(seg_len)), pieces)
                           if pieces.max(initial=1) > 1 else None)
        at = (0.5 + np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
              ) / np.repeat(pieces, pieces)
        seg = self._piece_seg if self._piece_seg is not None else np.arange(len(seg_len))
        mids = np.column_stack([ax[seg] + at * (bx[seg] - ax[seg]),
                                ay[seg] + at * (by[seg] - ay[seg])])
        self._half = float((seg_len[seg] / pieces[seg] / 2).max(initial=0.0))
        self._tree = cKDTree(mids, leafsize=32) if len(mids) else None
        # the graph: one entry per node pair (the shortest of parallel pieces), both ways
        lo, hi = np.minimum(u, v), np.maximum(u, v)
        keep = lo != hi  # loops lead nowhere
        pairs = _min_matrix(lo[keep], hi[keep], self.length[keep], len(nodes)).tocoo()
        n = len(nodes)
        self.matrix = csr_matrix((np.concatenate([pairs.data, pairs.data]),
                                  (np.concatenate([pairs.row, pairs.col]),
                                   np.concatenate([pairs.col, pairs.row]))), shape=(n, n))

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
        pieces = shapely.get_parts(shapely.unary_union(np.asarray(lines)))
        pieces = pieces[(shapely.get_type_id(pieces) == 1) & (shapely.length(pieces) > 0)]
        if len(pieces) == 0:
            nothing = np.zeros(0, np.int64)
            return cls(np.zeros((0, 2)), nothing, nothing, np.zeros((0, 2)), np.zeros(1, np.int64))
        coords, which = shapely.get_coordinates(pieces, return_index=True)
        del pieces
        m = int(which[-1]) + 1
        counts = np.bincount(which, minlength=m)
        last = np.cumsum(counts) - 1
        first = last - counts + 1
        ends = np.vstack([coords[first], coords[last]])
        keys, index = np.unique(np.round(ends, NODE_DECIMALS), axis=0, return_inverse=True)
        index = index.reshape(-1).astype(np.int32 if len(keys) < 2**31 else np.int64)
        interior = np.ones(len(coords), dtype=bool)
        interior[first] = interior[last] = False
        offsets: Index = np.concatenate([[0], np.cumsum(counts - 2)]).astype(
            np.int32 if len(coords) < 2**31 else np.int64)
        return cls(keys.astype(np.float64), index[:m], index[m:], coords[interior], offsets)

    def _edge_of(self, seg: Ints) -> Ints:
        return seg if self._seg_edge is None else self._seg_edge[seg].astype(np.int64)

    def _first_segment(self, edge: Ints) -> Ints:
        return edge if self._seg_first is None else self._seg_first[edge]

    def _segment_ends(self, seg: Ints) -> tuple[Floats, Floats, Floats, Floats]:
        """Both ends (ax, ay, bx, by) of segments: an edge's first starts at its node u, its
        last ends at node v, the rest run between its inner vertices."""
        e = self._edge_of(seg)
        k = seg - self._first_segment(e)  # which segment of its edge
        inner_count = self.offsets[e + 1] - self.offsets[e]
        at_u = k == 0
        at_v = k == inner_count
        i_a = np.where(at_u, 0, self.offsets[e] + k - 1)
        i_b = np.where(at_v, 0, self.offsets[e] + k)
        inner = self.inner if len(self.inner) else np.zeros((1, 2))
        a = np.where(at_u[:, None], self.nodes[self.u[e]], inner[i_a])
        b = np.where(at_v[:, None], self.nodes[self.v[e]], inner[i_b])
        return a[:, 0], a[:, 1], b[:, 0], b[:, 1]

    @cached_property
    def geoms(self) -> Any:
        """Every piece as a LineString in metres (made when first asked, then kept)."""
        return self.edge_lines(np.arange(self.edge_count, dtype=np.int64))

    def edge_lines(self, edges: Ints) -> Any:
        """Pieces ``edges`` as LineStrings in metres."""
        edges = np.asarray(edges, dtype=np.int64)
        if len(edges) == 0:
            return np.zeros(0, dtype=object)
        counts = self.offsets[edges + 1] - self.offsets[edges] + 1  # segments
        seg = (np.repeat(self._first_segment(edges), counts) + np.arange(int(counts.sum()))
               - np.repeat(np.cumsum(counts) - counts, counts))
        ax, ay, bx, by = self._segment_ends(seg)
        # each line: the start of every segment, then the end of its last
        last = np.cumsum(counts) - 1
        xy = np.column_stack([ax, ay])
        xy = np.insert(xy, last + 1, np.column_stack([bx[last], by[last]]), axis=0)
        return shapely.linestrings(xy, indices=np.repeat(np.arange(len(edges)), counts + 1))

    # ---- snapping ---------------------------------------------------------------------
    def snap(self, x: Floats, y: Floats) -> Snapped:
        """Each point onto the nearest point of its nearest edge: the SNAP_K segments whose
        midpoints are nearest are measured exactly, which is proven enough when the best of
        them is nearer than the farthest midpoint less half a piece; a point where it is not
        measures every segment that could still be nearer."""
        if len(x) == 0 or self.edge_count == 0 or self._tree is None:
            empty = np.zeros(0)
            return Snapped(np.zeros(0, np.int64), empty, empty)
        xy = np.column_stack([x, y]).astype(np.float64)
        k = min(SNAP_K, self._tree.n)
        mid_d, piece = self._tree.query(xy, k=k)
        mid_d, piece = mid_d.reshape(len(xy), k), piece.reshape(len(xy), k)
        seg = piece if self._piece_seg is None else self._piece_seg[piece]
        d, along = self._project(seg.ravel(), np.repeat(xy, k, axis=0))
        d, along = d.reshape(len(xy), k), along.reshape(len(xy), k)
        best = np.argmin(d, axis=1)
        rows = np.arange(len(xy))
        chosen, dist, at = seg[rows, best], d[rows, best], along[rows, best]
        if k < self._tree.n:
            for i in np.flatnonzero(dist > mid_d[:, -1] - self._half):
                near = np.asarray(self._tree.query_ball_point(xy[i], dist[i] + self._half),
                                  dtype=np.int64)
                cand = near if self._piece_seg is None else np.unique(self._piece_seg[near])
                cd, ca = self._project(cand, np.repeat(xy[i:i + 1], len(cand), axis=0))
                j = int(np.argmin(cd))
                if cd[j] < dist[i]:
                    chosen[i], dist[i], at[i] = cand[j], cd[j], ca[j]
        return Snapped(self._edge_of(chosen), at, dist)

    def _project(self, seg: Ints, xy: Floats) -> tuple[Floats, Floats]:
        """Each point's distance to a segment and where its nearest point lies along the
        segment's edge (metres from node u)."""
        ax, ay, bx, by = self._segment_ends(seg)
        dx, dy = bx - ax, by - ay
        span = dx * dx + dy * dy
        t = np.clip(((xy[:, 0] - ax) * dx + (xy[:, 1] - ay) * dy) / np.where(span > 0, span, 1),
                    0.0, 1.0)
        d = np.hypot(xy[:, 0] - (ax + t * dx), xy[:, 1] - (ay + t * dy))
        e = self._edge_of(seg)
        k = seg - self._first_segment(e)
        start = np.where(k == 0, 0.0, self._inner_along[np.maximum(self.offsets[e] + k - 1, 0)]
                         if len(self._inner_along) else 0.0)
        return d, start + t * np.sqrt(span)

    def _end_costs(self, snapped: Snapped) -> tuple[Index, Index, Floats, Floats]:
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
        dist, _pred, origin = dijkstra(graph, directed=True, indices=virtual, min_only=True,
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
        """The graph plus one node per source (ids n..n+k-1), leading to both ends of its
        edge by the cost of reaching each (snap distance included)."""
        n = self.node_count
        su, sv, scu, scv = self._end_costs(sources)
        return _with_sources(self.matrix, su, sv, scu, scv), np.arange(
            n, n + len(sources), dtype=np.int64)

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

    def nodes_within(self, at: Floats, radius: float) -> Ints:
        """The nodes within ``radius`` of ``at`` as the crow flies, sorted: the ends of the
        segments whose index midpoints lie within ``radius`` and half a piece (a node's own
        segment has one that near), kept when they are that near themselves."""
        if self._tree is None:
            return np.zeros(0, np.int64)
        near = np.asarray(self._tree.query_ball_point(at, radius + self._half), dtype=np.int64)
        seg = near if self._piece_seg is None else self._piece_seg[near]
        edges = self._edge_of(np.unique(seg))
        ends = np.unique(np.concatenate([self.u[edges], self.v[edges]])).astype(np.int64)
        gap = self.nodes[ends] - at
        inside: Ints = ends[np.hypot(gap[:, 0], gap[:, 1]) <= radius]
        return inside

    def from_one(self, source: Snapped, at: Floats, targets: Snapped, limit: float) -> Floats:
        """The network distance from one snapped point standing at ``at`` (x, y) to each
        target (inf beyond ``limit``), searched among the nodes within ``limit`` of ``at``
        as the crow flies only: a walk is never shorter than the straight line, so no walk
        within the limit leaves that disc, and the cost follows the neighbourhood's size,
        not the network's ("what if a facility stood here")."""
        if len(source) != 1:
            raise ValueError("from_one takes one point")
        distance = np.full(len(targets), np.inf)
        local = self.nodes_within(at, limit)
        if len(local):
            k = len(local)
            su, sv, scu, scv = self._end_costs(source)
            # the ends of the point's edge by their place in the disc (-1: outside it)
            graph = _with_sources(_subgraph(self.matrix, local), _positions(local, su),
                                  _positions(local, sv), scu, scv)
            dist = np.append(dijkstra(graph, directed=True, indices=k, limit=limit)[:k],
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
            dist = dijkstra(graph, directed=True, indices=virtual[first:first + step],
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
        graph, virtual = self._source_graph(source)
        dist = dijkstra(graph, directed=True, indices=int(virtual[0]), limit=limit)
        left = limit - dist[:n]
        e0 = int(source.edge[0])
        edges = np.union1d(np.flatnonzero(np.isfinite(left[self.u]) | np.isfinite(left[self.v])),
                           [e0])
        shapes = dict(zip(edges.tolist(), self.edge_lines(edges), strict=True))
        parts: list[Any] = []
        for e in edges.tolist():
            length = float(self.length[e])
            a = left[self.u[e]]
            b = left[self.v[e]]
            if np.isfinite(a) and np.isfinite(b) and a + b >= length:
                parts.append(shapes[e])
                continue
            if np.isfinite(a) and a > 0:
                parts.append(substring(shapes[e], 0.0, min(float(a), length)))
            if np.isfinite(b) and b > 0:
                parts.append(substring(shapes[e], max(length - float(b), 0.0), length))
        spare = limit - float(source.offset[0])
        if spare > 0:
            at = float(source.along[0])
            parts.append(substring(shapes[e0], max(at - spare, 0.0),
                                   min(at + spare, float(self.length[e0]))))
        lines = [p for p in parts if not p.is_empty and p.length > 0]
        # pieces reached both ways (and the point's own edge) overlap: union them once
        return shapely.line_merge(shapely.union_all(lines)) if lines else (
            shapely.MultiLineString())

    # ---- networkx ---------------------------------------------------------------------
    def to_networkx(self, points: dict[Any, tuple[int, float, float]] | None = None
                    ) -> Any:
        """The graph in networkx (nodes 0..n-1, every piece an edge with ``weight`` in
        metres). ``points`` (name -> (edge, along, offset), as ``snap`` gives) are spliced in:
        each point's edge is cut where it lies, and the point hangs off the cut by its
        offset, so the distances are those a walker would take, computed independently."""
        import networkx as nx  # tests and studies only: the service does not load it

        graph = nx.MultiGraph()
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


def _positions(local: Ints, nodes: Index) -> Ints:
    """Each of ``nodes``' index in the sorted ``local``, -1 when absent."""
    at = np.minimum(np.searchsorted(local, nodes), len(local) - 1)
    return np.where(local[at] == nodes, at, -1).astype(np.int64)


def _subgraph(graph: csr_matrix, local: Ints) -> csr_matrix:
    """The graph among the sorted nodes ``local`` (renumbered by their place in it), read
    from their rows only: scipy's column selection walks every column of the graph."""
    rows = graph[local].tocoo()
    cols = _positions(local, rows.col.astype(np.int64))
    keep = cols >= 0
    return csr_matrix((rows.data[keep], (rows.row[keep], cols[keep])),
                      shape=(len(local), len(local)))


def _with_sources(graph: csr_matrix, su: Index, sv: Index, scu: Floats, scv: Floats
                  ) -> csr_matrix:
    """``graph`` (square) plus one row per source, ids after its nodes: an entry to each end
    of the source's edge (``su``, ``sv``; -1: leave it out) by the cost of reaching it, one
    entry when both ends are one node (a loop), by the nearer way. Nothing leads back to a
    source, so the search runs directed, and the graph's own arrays are only extended."""
    n, k = graph.shape[0], len(su)
    loop = su == sv
    cols = np.column_stack([su, sv])
    costs = np.column_stack([np.where(loop, np.minimum(scu, scv), scu), scv])
    keep = (cols >= 0) & np.column_stack([np.ones(k, dtype=bool), ~loop])
    indptr = np.concatenate([graph.indptr, graph.indptr[-1] + np.cumsum(keep.sum(axis=1))])
    return csr_matrix((np.concatenate([graph.data, costs[keep]]),
                       np.concatenate([graph.indices, cols[keep].astype(graph.indices.dtype)]),
                       indptr), shape=(n + k, n + k))


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
