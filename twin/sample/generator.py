"""A seeded, synthetic sample twin of a subdistrict, made from a spec file (``data/*.toml``).

No boundary, street or building data of the real place may be shipped (``data/SOURCES.md`` §3),
so the geometry is invented: a street lattice bent a little, blocks between the streets,
committee areas grown from blocks, micro-grids, buildings laid out by block type, and the
facilities of the work report. Names and codes come from the spec and are real, as are most
counts (``data/SOURCES.md`` §4 says which, and where the sample departs from the report).
The same spec, seed and scale give the same twin, byte for byte, in any process: all
randomness comes from numpy generators seeded from (seed, purpose, index).

Work is done in metres in the UTM zone of the spec's centre, in a frame where the river is
the west edge; the result is turned to put the river on the spec's edge, then projected to
EPSG:4326 and rounded to 7 decimals (about 1 cm).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from pyproj import Transformer
from shapely import affinity
from shapely.geometry.base import BaseGeometry

from twin.errors import InvalidInput, Problem
from twin.sample.places import PLACE_LAYERS, Ground, places
from twin.sample.spec import SampleSpec

LAYER_ORDER = ("subdistricts", "residential_areas", "micro_grids", "water", "streets",
               "buildings", "waste_points", "charging_points", "fire_passages", *PLACE_LAYERS)

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Geoms = NDArray[np.object_]

# Street lattice (metres). Main roads every 300-450 m, minor streets every 100-200 m.
_MAIN_SPACING = 375.0
_MAIN_JITTER = 40.0
_MINOR_SPACING = 150.0
_MINOR_JITTER = 12.0
_NODE_JITTER = 3.0
_RIVERSIDE_OFFSET = 60.0  # riverside road centre line from the bank; the strip between is green
_WAVE_STEP = 20.0         # vertex spacing along the river bank and the riverside road
_MAIN_WIDTH = (20.0, 30.0)
_RIVERSIDE_WIDTH = 14.0
_MINOR_CLASSES = ("secondary", "branch", "alley")
_MINOR_CLASS_P = (0.35, 0.55, 0.10)
_MINOR_WIDTH = {"secondary": (10.0, 15.0), "branch": (7.0, 10.0), "alley": (3.5, 6.0)}
_MINOR_KEEP = (0.62, 0.20)  # P(piece kept whole), P(piece dropped); else a dead end
_ONE_WAY_P = 0.15           # share of branch streets that are one-way

# Set-backs from the kerb (metres): buildings, waste points, street charging points.
_SETBACK_BUILDING = 6.0
_SETBACK_WASTE = 3.0
_SETBACK_CHARGER = 1.5

_GRID_SAMPLES = 40    # sample points per micro-grid when clustering an area into grids
_KMEANS_ROUNDS = 15

_PERSONS_PER_HOUSEHOLD = 2.5
_ELDERLY_SHARE = (0.35, 0.05)  # mean, sd of the share of residents aged 60+ (Shanghai is old)

_WASTE_SPACING = 30.0
_WASTE_STATES = ("ok", "full", "damaged", "closed")
_WASTE_STATE_P = (0.84, 0.10, 0.05, 0.01)
_CHARGER_SPACING = 15.0
_CHARGER_STREET_TYPES = ("street_cabinet", "street_pile", "centralized_parking")
_CHARGER_STREET_P = (0.40, 0.35, 0.25)
_CHARGER_STATES = ("safe", "hazard", "out_of_service")
_CHARGER_STATE_P = (0.88, 0.08, 0.04)


def _planned(rng: np.random.Generator) -> str:
    """A street site's state: planned (the report's 54 sets are its year-end plan, data/
    SOURCES.md §6.1). The state it once drew is still drawn, so that everything generated
    after it stays as it was."""
    rng.choice(_CHARGER_STATES, p=_CHARGER_STATE_P)
    return "planned"
_PASSAGE_LENGTH = (20.0, 80.0)
_PASSAGE_WIDTH = (4.0, 6.0)  # a fire lane is 4 m wide at least (GB 50016-2014 §7.1.8)
_PASSAGE_BLOCKED_P = 0.10
_BLOCKERS = ("堆物", "违停车辆", "地锁", "违章搭建")

# Seed purposes, so that each stream of random numbers is independent of the others.
_SEED_RIVER, _SEED_LINES, _SEED_EDGE, _SEED_TILE, _SEED_PLACES = 1, 2, 3, 4, 5


# ---------------------------------------------------------------------------------------
# The result

@dataclass(frozen=True)
class SampleFeature:
    """One feature of the sample twin, in EPSG:4326 with coordinates rounded to 7 decimals."""

    layer: str
    name: str | None
    props: dict[str, Any]
    tags: tuple[str, ...]
    geometry: BaseGeometry


@dataclass
class SampleTwin:
    """A generated twin: its features ordered by layer (``LAYER_ORDER``) and its grid codes."""

    spec: SampleSpec
    seed: int
    scale: int
    features: list[SampleFeature]
    grid_codes: list[str]
    metadata: dict[str, Any]


def content_hash(twin: SampleTwin) -> str:
    """sha256 of the features in order, so two runs can be compared byte for byte."""
    wkb = shapely.to_wkb(np.array([f.geometry for f in twin.features], dtype=object),
                         hex=True, output_dimension=2, byte_order=1)
    digest = hashlib.sha256()
    for feature, geometry in zip(twin.features, wkb, strict=True):
        digest.update(json.dumps([feature.layer, feature.name, feature.props, list(feature.tags),
                                  geometry], sort_keys=True, ensure_ascii=False,
                                 separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass(frozen=True)
class SamplePlan:
    """A sample twin still to be made, tile by tile: a load holds one tile's features at a
    time (scale 200 is 1.4 million features, 1.5 GB held whole)."""

    spec: SampleSpec
    seed: int
    scale: int
    subdistricts: int  # tiles are grouped into this many subdistricts, each with its code
    metadata: dict[str, Any]

    def tiles(self, progress: Callable[[str, int], None] | None = None
              ) -> Iterator[dict[str, list[SampleFeature]]]:
        """Each tile's features by layer, tile after tile; ``progress("tiles", 1)`` after
        each."""
        frame = _Frame.make(self.spec, self.seed)
        columns = math.ceil(math.sqrt(self.scale))
        for k in range(self.scale):
            yield _Tile(frame, k, k % columns, k // columns,
                        k * self.subdistricts // self.scale).features()
            if progress is not None:
                progress("tiles", 1)


def plan(spec: SampleSpec, seed: int | None = None, scale: int = 1,
         subdistricts: int | None = None) -> SamplePlan:
    """The sample of ``scale`` N tiles, each a whole copy of the subdistrict, side by side,
    grouped into ``subdistricts`` (default: one per tile) with codes of their own.

    Tiles fill columns away from the river and rows along it; only column 0 has the river.
    Tile k > 0 suffixes its area codes with ``-t{k}`` and committee names with ``（k）``;
    subdistrict s > 0 suffixes the spec's code with ``-s{s}`` and its name with ``（s）``.
    """
    if scale < 1:
        raise InvalidInput("scale must be at least 1", [Problem("scale", scale, "must be >= 1",
                                                                 "倍数至少为1")])
    count = scale if subdistricts is None else subdistricts
    if not 1 <= count <= scale:
        raise InvalidInput("subdistricts: between 1 and the scale", [Problem(
            "subdistricts", count, f"between 1 and the scale ({scale})",
            "街道数须在1与倍数之间")])
    seed = spec.seed if seed is None else seed
    if seed < 0:
        raise InvalidInput("seed must not be negative", [Problem("seed", seed, "must be >= 0",
                                                                  "种子不能为负")])
    return SamplePlan(spec, seed, scale, count, {
        "synthetic": True,
        "source": (f"Sample twin of {spec.name} ({spec.name_zh}): the names and codes of the "
                   "residential committees are real (National Bureau of Statistics division "
                   "codes) and so are most counts (the subdistrict's work report; "
                   "data/SOURCES.md says which); every geometry, street layout, building and "
                   "facility position is synthetic, made by twin.sample from a seed."),
        "seed": seed, "scale": scale, "subdistricts": count, "name": spec.name,
        "name_zh": spec.name_zh, "river": spec.river, "river_edge": spec.river_edge,
        "crs": "EPSG:4326", "metric_crs": _Frame.make(spec, seed).metric_crs,
    })


def generate(spec: SampleSpec, seed: int | None = None, scale: int = 1,
             progress: Callable[[str, int], None] | None = None,
             subdistricts: int | None = None) -> SampleTwin:
    """Make the whole sample twin at once (``plan`` says what it is; ``SamplePlan.tiles``
    makes it a tile at a time)."""
    made = plan(spec, seed, scale, subdistricts)
    by_layer: dict[str, list[SampleFeature]] = {layer: [] for layer in LAYER_ORDER}
    for tile in made.tiles(progress):
        for layer, features in tile.items():
            by_layer[layer].extend(features)
    features = [f for layer in LAYER_ORDER for f in by_layer[layer]]
    return SampleTwin(spec=spec, seed=made.seed, scale=scale, features=features,
                      grid_codes=[f.props["code"] for f in by_layer["micro_grids"]],
                      metadata=made.metadata)


# ---------------------------------------------------------------------------------------
# Where tiles sit and how lines bend

@dataclass(frozen=True)
class _Frame:
    """The layout shared by all tiles: tile size, river bank, projection.

    Tile sizes are whole metres, so that edges shared by two tiles get bit-identical
    coordinates from both (and so identical rounded lon/lat).
    """

    spec: SampleSpec
    seed: int
    width: int            # across the river
    height: int           # along the river
    river_bend: Floats    # (2, 3): amplitude, wavelength, phase of two harmonics
    metric_crs: str
    origin: tuple[int, int]
    transformer: Transformer

    @staticmethod
    def make(spec: SampleSpec, seed: int) -> _Frame:
        area = spec.area_km2 * 1e6
        width = round(math.sqrt(area * spec.aspect))
        rng = np.random.default_rng([seed, _SEED_RIVER])
        bend = np.column_stack([rng.uniform([30.0, 8.0], [45.0, 15.0]),
                                rng.uniform([1000.0, 300.0], [1600.0, 500.0]),
                                rng.uniform(0.0, 2 * np.pi, 2)])
        lon, lat = spec.centre
        epsg = (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1
        to_metres = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
        x, y = to_metres.transform(lon, lat)
        return _Frame(spec, seed, width, round(area / width), bend, f"EPSG:{epsg}",
                      (round(x), round(y)),
                      Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True))

    def lonlat(self, xy: Floats) -> Floats:
        """Frame metres to lon/lat: centre tile 0, turn the river to its edge, project."""
        u = xy[:, 0] - self.width / 2
        v = xy[:, 1] - self.height / 2
        u, v = {"west": (u, v), "east": (-u, -v), "north": (v, -u),
                "south": (-v, u)}[self.spec.river_edge]
        lon, lat = self.transformer.transform(u + self.origin[0], v + self.origin[1])
        return np.column_stack([lon, lat])

    def to_lonlat(self, geoms: Geoms, snap: bool = False) -> Geoms:
        """Project and round to 7 decimals; ``snap`` rounds polygons keeping them valid."""
        projected = shapely.transform(geoms, self.lonlat)
        rounded: Geoms = (shapely.set_precision(projected, 1e-7) if snap
                          else shapely.transform(projected, lambda c: np.round(c, 7)))
        return rounded


def _bend(bend: Floats, t: Floats) -> Floats:
    """Sideways shift of lines at positions ``t`` along them; ``bend`` is (..., 2, 3)."""
    phase = 2 * np.pi * t[..., None] / bend[..., 1] + bend[..., 2]
    shift: Floats = (bend[..., 0] * np.sin(phase)).sum(-1)
    return shift


@dataclass(frozen=True)
class _Lines:
    """The street lines of a tile column (axis 0, along the river) or row (axis 1).

    Lines are shared by every tile of the column or row, so that neighbouring tiles meet.
    ``kind`` is river, riverside, main, minor, or edge (a tile edge: a main road).
    """

    base: Floats          # position across the lines, frame metres
    kind: tuple[str, ...]
    name: tuple[str, ...]
    width: Floats         # of river, riverside, main and edge lines
    bend: Floats          # (n, 2, 3)

    @staticmethod
    def make(frame: _Frame, axis: int, index: int) -> _Lines:
        extent = frame.width if axis == 0 else frame.height
        names = frame.spec.streets
        mains = names.main_along if axis == 0 else names.main_across
        minors = names.minor_along if axis == 0 else names.minor_across
        rng = np.random.default_rng([frame.seed, _SEED_LINES, axis, index])
        river = axis == 0 and index == 0
        start = _RIVERSIDE_OFFSET if river else 0.0
        n_main = max(1, round((extent - start) / _MAIN_SPACING))
        inner = start + (extent - start) * np.arange(1, n_main) / n_main
        inner = inner + rng.uniform(-_MAIN_JITTER, _MAIN_JITTER, n_main - 1)
        # Name slots: rank 0 is this column's first edge, rank ``slots`` the next column's.
        slots = round(extent / _MAIN_SPACING) + 2
        majors: list[tuple[float, str, str, float]] = []
        if river:
            majors += [(0.0, "river", frame.spec.river, 0.0),
                       (start, "riverside", names.riverside, _RIVERSIDE_WIDTH)]
        else:
            majors.append((0.0, "edge", *_edge_road(frame, axis, index, mains, slots)))
        majors += [(float(p), "main", mains[(index * slots + r + 1) % len(mains)],
                    float(np.round(rng.uniform(*_MAIN_WIDTH))))
                   for r, p in enumerate(inner)]
        majors.append((float(extent), "edge", *_edge_road(frame, axis, index + 1, mains, slots)))
        minor_slots = round(extent / _MINOR_SPACING) + 2
        lines: list[tuple[float, str, str, float]] = []
        for (a, kind, *_), (b, *_) in itertools.pairwise(majors):
            if kind == "river":
                continue
            n = max(0, round((b - a) / _MINOR_SPACING) - 1)
            spots = a + (b - a) * np.arange(1, n + 1) / (n + 1)
            spots = spots + rng.uniform(-_MINOR_JITTER, _MINOR_JITTER, n)
            lines += [(float(p), "minor", "", 0.0) for p in spots]
        lines = sorted(majors + lines)
        rank = 0
        for i, (p, kind, _, w) in enumerate(lines):
            if kind == "minor":
                lines[i] = (p, kind, minors[(index * minor_slots + rank) % len(minors)], w)
                rank += 1
        n = len(lines)
        bend = np.column_stack([rng.uniform(3.0, 10.0, n), rng.uniform(800.0, 1600.0, n),
                                rng.uniform(0, 2 * np.pi, n), rng.uniform(1.0, 4.0, n),
                                rng.uniform(250.0, 450.0, n), rng.uniform(0, 2 * np.pi, n)])
        bend = bend.reshape(n, 2, 3)
        kinds = tuple(kind for _, kind, _, _ in lines)
        for i, kind in enumerate(kinds):
            if kind == "edge":  # straight, so the neighbouring tile's copy is the same line
                bend[i] = [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
            elif kind in ("river", "riverside"):
                bend[i] = frame.river_bend
        return _Lines(base=index * extent + np.array([p for p, *_ in lines]), kind=kinds,
                      name=tuple(name for _, _, name, _ in lines),
                      width=np.array([w for *_, w in lines]), bend=bend)


def _edge_road(frame: _Frame, axis: int, k: int, mains: tuple[str, ...],
               slots: int) -> tuple[str, float]:
    """Name and width of the k-th tile edge road: seeded by k alone, so both tiles agree."""
    rng = np.random.default_rng([frame.seed, _SEED_EDGE, axis, k])
    return mains[(k * slots) % len(mains)], float(np.round(rng.uniform(*_MAIN_WIDTH)))


@dataclass(frozen=True)
class _Road:
    """A street edge's attributes; ``drawn`` False: a tile edge road the neighbour draws."""

    road_class: str
    width: float
    name: str
    drawn: bool = True
    tags: tuple[str, ...] = ("class=道路交通",)


@dataclass(frozen=True)
class _Typology:
    """A kind of block: how its buildings are laid out in rows and what they hold."""

    use: str
    share: float                 # of the blocks' land given to this kind
    along: tuple[float, float]   # building length along the row (metres)
    across: tuple[float, float]  # building depth
    gap: tuple[float, float]     # clear distance between neighbours in a row
    spacing: tuple[float, float]  # clear distance between rows (sunlight, fire spacing)
    floors: tuple[int, ...]
    built: tuple[int, int]
    unit_m2: float               # gross floor area per household; 0: nobody lives there
    ancillary: float = 0.0       # share of the spots left over taken by sheds and service rooms


# Shanghai forms: 新村 slabs facing south, towers, old lanes and self-built village houses,
# slabs with shops below, schools and markets, offices; and the small service buildings of
# estates (bike sheds, waste rooms, management offices).
_TYPOLOGIES = {
    "slab": _Typology("residential", 0.29, (45, 70), (11, 14), (6, 14), (14, 20),
                      (4, 5, 6, 6, 6, 6, 7), (1978, 1999), 55, ancillary=0.6),
    "tower": _Typology("residential", 0.11, (20, 30), (20, 30), (18, 30), (20, 30),
                       (11, 14, 18, 18, 24, 28, 33), (1995, 2016), 95, ancillary=0.4),
    "lane": _Typology("residential", 0.42, (8, 12), (9, 13), (2.5, 4), (3, 5),
                      (2, 2, 3), (1930, 1975), 38),
    "mixed": _Typology("mixed", 0.07, (40, 64), (12, 16), (8, 14), (14, 20),
                       (4, 5, 6, 7, 8), (1985, 2010), 60, ancillary=0.3),
    "public": _Typology("public", 0.06, (30, 55), (18, 32), (12, 20), (15, 25),
                        (2, 3, 4, 5, 6), (1960, 2015), 0),
    "commercial": _Typology("commercial", 0.05, (25, 45), (18, 30), (10, 16), (12, 20),
                            (3, 4, 5, 8, 12, 18, 24), (1990, 2018), 0),
}
_ANCILLARY = _Typology("public", 0.0, (6, 14), (5, 9), (4, 8), (4, 8), (1, 1, 2), (1980, 2010), 0)
_ANCILLARY_CLEARANCE = 4.0  # from the estate's main buildings
_LAYOUT_STEP = 2.0          # how finely a row is searched for room


# ---------------------------------------------------------------------------------------
# One tile: a whole subdistrict

class _Tile:
    """One tile, built stage by stage in frame metres, then projected."""

    def __init__(self, frame: _Frame, k: int, c: int, r: int, s: int) -> None:
        self.frame, self.k, self.c, self.r, self.s = frame, k, c, r, s
        self.rng = np.random.default_rng([frame.seed, _SEED_TILE, k])
        self.xs = _Lines.make(frame, 0, c)
        self.ys = _Lines.make(frame, 1, r)

    def features(self) -> dict[str, list[SampleFeature]]:
        """All features of the tile by layer."""
        out: dict[str, list[SampleFeature]] = {}
        self._lattice()
        out["streets"] = self._streets()
        out["water"] = self._water()
        self._blocks()
        self._areas()
        out["buildings"] = self._buildings()
        out["waste_points"] = self._waste_points()
        out["charging_points"] = self._charging_points()
        out["fire_passages"] = self._fire_passages()
        out.update(self._places())
        out["residential_areas"], out["micro_grids"] = self._area_features()
        out["subdistricts"] = [self._subdistrict()]
        return out

    # -- streets --------------------------------------------------------------------------

    def _lattice(self) -> None:
        """Nodes where lines cross, and which edges between them are streets."""
        xs, ys, rng = self.xs, self.ys, self.rng
        nx, ny = len(xs.kind), len(ys.kind)
        bx = np.broadcast_to(xs.base[:, None], (nx, ny))
        y = ys.base[None, :] + _bend(ys.bend[None, :], bx)
        x = xs.base[:, None] + _bend(xs.bend[:, None], y)
        inner = (np.isin(xs.kind, ("main", "minor"))[:, None]
                 & np.isin(ys.kind, ("main", "minor"))[None, :])
        x = x + np.where(inner, rng.uniform(-_NODE_JITTER, _NODE_JITTER, (nx, ny)), 0.0)
        y = y + np.where(inner, rng.uniform(-_NODE_JITTER, _NODE_JITTER, (nx, ny)), 0.0)
        self.nodes = np.stack([x, y], axis=-1)
        # v[i][j]: edge (i, j)-(i, j+1) along x-line i; h[i][j]: edge (i, j)-(i+1, j).
        self.v: list[list[_Road | None]] = [[self._major(xs, i, self.c)] * (ny - 1)
                                            for i in range(nx)]
        self.h: list[list[_Road | None]] = [
            [None if xs.kind[i] == "river" else self._major(ys, j, self.r) for j in range(ny)]
            for i in range(nx - 1)]
        for i in range(nx):
            if xs.kind[i] == "minor":
                for a, b in self._pieces(ys.kind):
                    self.v[i][a:b] = self._piece(b - a, xs.name[i], ys.name[a])
        for j in range(ny):
            if ys.kind[j] == "minor":
                for a, b in self._pieces(xs.kind):
                    if xs.kind[a] != "river":
                        for i, road in enumerate(self._piece(b - a, ys.name[j], xs.name[a]), a):
                            self.h[i][j] = road

    def _major(self, lines: _Lines, i: int, index: int) -> _Road | None:
        """The road on a major line; the first edge line belongs to the previous tile."""
        kind = lines.kind[i]
        if kind in ("river", "minor"):
            return None
        road_class = "secondary" if kind == "riverside" else "main"
        return _Road(road_class, float(lines.width[i]), lines.name[i],
                     drawn=not (kind == "edge" and i == 0 and index > 0))

    @staticmethod
    def _pieces(kinds: tuple[str, ...]) -> list[tuple[int, int]]:
        """Spans between consecutive major lines: a minor street runs piece by piece."""
        majors = [i for i, kind in enumerate(kinds) if kind != "minor"]
        return list(itertools.pairwise(majors))

    def _piece(self, edges: int, name: str, crossing: str) -> list[_Road | None]:
        """The edges of one piece of a minor line: kept, dropped or a dead end from one of
        its ends; one class and width for the piece. Alleys take the crossing road's name."""
        rng = self.rng
        u = rng.random()
        keep = np.ones(edges, dtype=bool)
        if u >= _MINOR_KEEP[0] + _MINOR_KEEP[1] and edges >= 2:
            cut = int(rng.integers(1, edges))
            keep[:] = False
            keep[:cut] = True
            if rng.random() < 0.5:
                keep = keep[::-1]
        elif u >= _MINOR_KEEP[0]:
            keep[:] = False
        road_class = str(rng.choice(_MINOR_CLASSES, p=_MINOR_CLASS_P))
        width = float(np.round(rng.uniform(*_MINOR_WIDTH[road_class]) * 2) / 2)
        tags: tuple[str, ...] = ("class=道路交通",)
        if road_class == "alley":
            name = f"{crossing}{2 * int(rng.integers(1, 400))}弄"
        elif road_class == "branch" and rng.random() < _ONE_WAY_P:
            tags = ("class=道路交通", "单行道")
        road = _Road(road_class, width, name, tags=tags)
        return [road if k else None for k in keep]

    def _vcoords(self, i: int, j: int) -> Floats:
        """Vertices of edge (i, j)-(i, j+1); the river bank and riverside road follow the bends."""
        p, q = self.nodes[i, j], self.nodes[i, j + 1]
        if self.xs.kind[i] not in ("river", "riverside"):
            return np.array([p, q])
        t = np.arange(math.floor(p[1] / _WAVE_STEP) + 1, math.ceil(q[1] / _WAVE_STEP)) * _WAVE_STEP
        t = t[(t > p[1]) & (t < q[1])]
        mid = np.column_stack([self.xs.base[i] + _bend(self.xs.bend[i], t), t])
        return np.vstack([p, mid, q])

    def _streets(self) -> list[SampleFeature]:
        """One feature per run of edges between junctions, with shared end coordinates."""
        nx, ny = len(self.xs.kind), len(self.ys.kind)
        degree = np.zeros((nx, ny), dtype=np.int64)
        for i in range(nx):
            for j in range(ny - 1):
                if (road := self.v[i][j]) is not None and road.drawn:
                    degree[i, j] += 1
                    degree[i, j + 1] += 1
        for i in range(nx - 1):
            for j in range(ny):
                if (road := self.h[i][j]) is not None and road.drawn:
                    degree[i, j] += 1
                    degree[i + 1, j] += 1
        runs: list[tuple[_Road, Floats]] = []
        for i in range(nx):
            runs += self._runs([(self.v[i][j], (i, j), self._vcoords(i, j))
                                for j in range(ny - 1)], degree, self.xs.kind[i] == "edge")
        for j in range(ny):
            runs += self._runs([(self.h[i][j], (i, j), self.nodes[[i, i + 1], j])
                                for i in range(nx - 1)], degree, self.ys.kind[j] == "edge")
        self.roads = [road for road, _ in runs]
        self.road_lines = _array([shapely.LineString(coords) for _, coords in runs])
        # Every road, drawn or not, keeps buildings and facilities back from the kerb.
        lines, widths = [], []
        for i in range(nx):
            for j in range(ny):
                if j < ny - 1 and (road := self.v[i][j]) is not None:
                    lines.append(self._vcoords(i, j))
                    widths.append(road.width)
                if i < nx - 1 and (road := self.h[i][j]) is not None:
                    lines.append(self.nodes[[i, i + 1], j])
                    widths.append(road.width)
        self.all_road_lines = _array([shapely.LineString(coords) for coords in lines])
        self.all_road_widths = np.array(widths)
        lonlat = self.frame.to_lonlat(self.road_lines)
        return [SampleFeature("streets", road.name,
                              {"road_class": road.road_class, "width_m": road.width,
                               "fire_engine": road.road_class != "alley"}, road.tags, geom)
                for road, geom in zip(self.roads, lonlat, strict=True)]

    def _water(self) -> list[SampleFeature]:
        """The river beyond the bank line, in the tiles of the river's column: drawn from the
        street lattice's own bank vertices, so water and riverside meet without a gap."""
        if self.xs.kind[0] != "river":
            return []
        ny = len(self.ys.kind)
        bank = np.vstack([*(self._vcoords(0, j)[:-1] for j in range(ny - 1)),
                          self.nodes[0, -1:]])
        far = bank[::-1] - [self.frame.spec.river_width_m, 0.0]
        water = self.frame.to_lonlat(np.array([shapely.Polygon(np.vstack([bank, far]))],
                                              dtype=object), snap=True)
        return [SampleFeature("water", self.frame.spec.river,
                              {"kind": "river", "width_m": self.frame.spec.river_width_m},
                              ("通航",), _polygonal(water[0]))]

    @staticmethod
    def _runs(edges: list[tuple[_Road | None, tuple[int, int], Floats]], degree: Ints,
              edge: bool) -> list[tuple[_Road, Floats]]:
        """Join consecutive edges of one line with equal attributes through degree-2 nodes.
        A tile edge road is cut where every line meets it: the next tile's streets join there."""
        runs: list[tuple[_Road, Floats]] = []
        current: tuple[_Road, list[Floats]] | None = None
        for road, start, coords in edges:
            if road is None or not road.drawn:
                current = None
                continue
            if current is not None and current[0] == road and degree[start] == 2 and not edge:
                current[1].append(coords[1:])
                runs[-1] = (road, np.vstack(current[1]))
                continue
            current = (road, [coords])
            runs.append((road, coords))
        return runs

    # -- blocks and areas -----------------------------------------------------------------

    def _blocks(self) -> None:
        """Cells between lines, merged across non-street edges into blocks."""
        nx, ny = len(self.xs.kind), len(self.ys.kind)
        cx, cy = nx - 1, ny - 1
        parent = list(range(cx * cy))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        def cell(i: int, j: int) -> int:
            return j * cx + i

        for j in range(cy):
            for i in range(cx):
                if i + 1 < cx and self.v[i + 1][j] is None:
                    parent[find(cell(i + 1, j))] = find(cell(i, j))
                # River strip cells stay apart: each joins the area east of it.
                if j + 1 < cy and self.h[i][j + 1] is None and self.xs.kind[i] != "river":
                    parent[find(cell(i, j + 1))] = find(cell(i, j))
        roots = [find(a) for a in range(cx * cy)]
        ids = {root: n for n, root in enumerate(dict.fromkeys(roots))}
        self.cell_block = np.array([ids[root] for root in roots]).reshape(cy, cx)
        cells = _array([shapely.Polygon(np.vstack([self._vcoords(i + 1, j),
                                                   self._vcoords(i, j)[::-1]]))
                         for j in range(cy) for i in range(cx)])
        members: list[list[int]] = [[] for _ in ids]
        for a, block in enumerate(self.cell_block.ravel()):
            members[block].append(a)
        self.block_polys: Geoms = np.array(
            [shapely.coverage_union_all(cells[m]) for m in members], dtype=object)
        self.block_green = np.array([self.xs.kind[m[0] % cx] == "river" for m in members])
        pairs: set[tuple[int, int]] = set()
        for j in range(cy):
            for i in range(cx):
                for i2, j2 in ((i + 1, j), (i, j + 1)):
                    if i2 < cx and j2 < cy:
                        a, b = self.cell_block[j, i], self.cell_block[j2, i2]
                        if a != b and not (self.block_green[a] or self.block_green[b]):
                            pairs.add((int(min(a, b)), int(max(a, b))))
        self.block_neighbours: list[list[int]] = [[] for _ in ids]
        for a, b in sorted(pairs):
            self.block_neighbours[a].append(b)
            self.block_neighbours[b].append(a)

    def _areas(self) -> None:
        """Grow one area per committee from blocks, then split each area into micro-grids."""
        spec, rng = self.frame.spec, self.rng
        blocks = np.flatnonzero(~self.block_green)
        n_areas = len(spec.committees)
        if len(blocks) < n_areas:
            raise InvalidInput(f"{len(blocks)} blocks cannot hold {n_areas} committee areas; "
                               "make area_km2 larger", [Problem("area_km2", spec.area_km2,
                                                                "too small", "面积太小")])
        centroids = shapely.get_coordinates(shapely.centroid(self.block_polys))
        sizes = shapely.area(self.block_polys)
        label = np.full(len(self.block_polys), -1)
        label[blocks] = _grow(centroids[blocks], sizes[blocks],
                              [[int(np.searchsorted(blocks, n)) for n in self.block_neighbours[b]]
                               for b in blocks], n_areas, rng)
        for row in self.cell_block:
            if self.block_green[row[0]]:
                label[row[0]] = label[row[1]]
        self.block_area = label
        self.area_polys: Geoms = np.array(
            [shapely.coverage_union_all(self.block_polys[label == a]) for a in range(n_areas)],
            dtype=object)
        area_sizes = shapely.area(self.area_polys)
        grids_per_area = _allocate(area_sizes, spec.counts.micro_grids)
        self.grid_polys: list[list[Any]] = [
            _split(poly, int(n), rng) for poly, n in zip(self.area_polys, grids_per_area,
                                                         strict=True)]
        # Squads take bands of areas along the river, numbered on from earlier tiles.
        rank = np.argsort(np.argsort(shapely.get_coordinates(
            shapely.centroid(self.area_polys))[:, 1], kind="stable"), kind="stable")
        squads = spec.counts.squads
        self.area_squad = self.k * squads + rank * squads // n_areas + 1
        self.model_areas = _pick(rng, np.ones(n_areas, dtype=bool),
                                 spec.counts.model_waste_areas)

    def _area_code(self, a: int) -> tuple[str, str]:
        """Code and committee name of area a, suffixed in tiles after the first."""
        code, committee = self.frame.spec.committees[a]
        if self.k == 0:
            return code, committee
        return f"{code}-t{self.k}", f"{committee}（{self.k}）"

    def _fit_grids(self) -> None:
        """Give each building a grid line cuts wholly to the grid holding its inside point: a
        grid worker answers for whole buildings. The grids still tile their area."""
        inside = shapely.point_on_surface(self.buildings)
        for a, grids in enumerate(self.grid_polys):
            mine = np.flatnonzero(self.building_area == a)
            if len(grids) == 1 or not len(mine):
                continue
            tree = shapely.STRtree(grids)
            found, grid = tree.query(inside[mine], predicate="intersects")
            _, first = np.unique(found, return_index=True)  # a point on a grid line: the first
            owner = grid[first]
            cut, into = tree.query(self.buildings[mine], predicate="overlaps")
            for n in np.unique(into):
                take = self.buildings[mine[cut[(into == n) & (owner[cut] == n)]]]
                give = self.buildings[mine[cut[(into == n) & (owner[cut] != n)]]]
                grids[n] = _polygonal(shapely.union_all(
                    [shapely.difference(grids[n], shapely.union_all(give)), *take]))

    def _subdistrict(self) -> SampleFeature:
        """The tile's outline, the union of its areas (which tile it whole), in subdistrict
        s: s > 0 suffixes the spec's code with ``-s{s}`` (a subdistrict of several tiles has
        an outline for each)."""
        spec = self.frame.spec
        outline = self.frame.to_lonlat(
            np.array([shapely.coverage_union_all(self.area_polys)], dtype=object), snap=True)[0]
        code = spec.code if self.s == 0 else f"{spec.code}-s{self.s}"
        name = spec.name_zh if self.s == 0 else f"{spec.name_zh}（{self.s}）"
        return SampleFeature("subdistricts", name, {"code": code}, (), _polygonal(outline))

    def _area_features(self) -> tuple[list[SampleFeature], list[SampleFeature]]:
        """Areas and their grids, last: areas count the households of their buildings."""
        self._fit_grids()
        areas = self.frame.to_lonlat(self.area_polys, snap=True)
        areas_out: list[SampleFeature] = []
        grids_out: list[SampleFeature] = []
        for a, geom in enumerate(areas):
            code, committee = self._area_code(a)
            name = _area_name(committee)
            model = a in self.model_areas
            areas_out.append(SampleFeature(
                "residential_areas", name,
                {"code": code, "committee": committee,
                 "households": int(self.households[self.building_area == a].sum()),
                 "model_waste_area": model},
                ("示范居民区",) if model else (), _polygonal(geom)))
            grids = self.frame.to_lonlat(np.array(self.grid_polys[a], dtype=object), snap=True)
            for n, grid in enumerate(grids, start=1):
                grids_out.append(SampleFeature(
                    "micro_grids", f"{name}{n:02d}网格",
                    {"code": f"{code}-{n:02d}", "squad": f"第{self.area_squad[a]}中队"}, (),
                    _polygonal(grid)))
        return areas_out, grids_out

    # -- buildings ------------------------------------------------------------------------

    def _block_kinds(self) -> dict[int, str]:
        """A typology per block, so that each typology gets about its share of the land;
        the report's project areas get the kind of housing the project is about."""
        spec = self.frame.spec
        codes = [code for code, _ in spec.committees]
        forced = {codes.index(spec.projects.housing_repair): "slab",
                  codes.index(spec.projects.expropriation): "lane",
                  codes.index(spec.projects.unfinished_building): "tower"}
        sizes = shapely.area(self.block_polys)
        names = list(_TYPOLOGIES)
        shares = np.array([t.share for t in _TYPOLOGIES.values()])
        given = np.zeros(len(names))
        kinds: dict[int, str] = {}
        blocks = np.flatnonzero(~self.block_green)
        for b in blocks:
            if (kind := forced.get(int(self.block_area[b]))) is not None:
                kinds[int(b)] = kind
                given[names.index(kind)] += sizes[b]
        for b in self.rng.permutation(blocks):
            if int(b) not in kinds:
                t = int(np.argmax(shares * (given.sum() + sizes[b]) - given))
                kinds[int(b)] = names[t]
                given[t] += sizes[b]
        return kinds

    def _lay_out(self) -> tuple[Geoms, list[_Typology], Ints, Ints, Ints]:
        """Buildings of every block in rows turned to its streets, with service buildings
        in the room an estate leaves: geometry, typology, block, floors, year built."""
        rng = self.rng
        land = shapely.difference(self.block_polys, self._kerb_buffer(_SETBACK_BUILDING))
        envelopes = shapely.oriented_envelope(self.block_polys)
        polys: list[Geoms] = []
        kinds: list[_Typology] = []
        block: list[int] = []
        floors: list[Ints] = []
        built: list[Ints] = []
        self.block_kind = self._block_kinds()
        self.block_land = land
        for b, kind in sorted(self.block_kind.items()):
            typ = _TYPOLOGIES[kind]
            corners = shapely.get_coordinates(envelopes[b])
            dx, dy = corners[1] - corners[0]
            angle = (math.atan2(dy, dx) + math.pi / 4) % (math.pi / 2) - math.pi / 4
            main = _rows(land[b], angle, typ, rng)
            laid = [(main, typ)]
            if typ.ancillary > 0 and len(main):
                room = shapely.difference(land[b], shapely.buffer(shapely.union_all(main),
                                                                  _ANCILLARY_CLEARANCE))
                sheds = _rows(room, angle, _ANCILLARY, rng)
                laid.append((sheds[rng.random(len(sheds)) < typ.ancillary], _ANCILLARY))
            year = int(rng.integers(typ.built[0], typ.built[1] + 1))
            for geoms, t in laid:
                n = len(geoms)
                polys.append(geoms)
                kinds += [t] * n
                block += [b] * n
                floors.append(rng.choice(t.floors, n).astype(np.int64))
                built.append(np.clip(year + rng.integers(-2, 3, n), *t.built).astype(np.int64))
        return (np.concatenate(polys), kinds, np.array(block, dtype=np.int64),
                np.concatenate(floors), np.concatenate(built))

    def _buildings(self) -> list[SampleFeature]:
        """Lay out buildings, keep the spec's number of them, tag the report's projects."""
        spec, rng = self.frame.spec, self.rng
        codes = [code for code, _ in spec.committees]
        polys, kind_list, block, floors, built = self._lay_out()
        kinds = np.array(kind_list, dtype=object)
        lonlat = self.frame.to_lonlat(polys)
        keep = np.flatnonzero(shapely.is_valid(lonlat))  # a rounding that breaks one drops it
        if len(keep) > spec.counts.buildings:
            keep = np.sort(rng.choice(keep, spec.counts.buildings, replace=False))
        polys, lonlat, kinds = polys[keep], lonlat[keep], kinds[keep]
        block, floors, built = block[keep], floors[keep], built[keep]
        n = len(keep)
        use = np.array([k.use for k in kinds])
        unit = np.array([k.unit_m2 for k in kinds])
        living_floors = np.where(use == "mixed", floors - 1, floors)
        households = np.where(unit > 0, np.round(shapely.area(polys) * living_floors * 0.8
                                                 / np.maximum(unit, 1)), 0).astype(np.int64)
        area = self.block_area[block]
        built_year: list[int | None] = [int(y) for y in built]
        tags: list[list[str]] = [["class=房屋土地"] for _ in range(n)]
        old = (built < 2000) & (use == "residential")
        tall = (floors >= 11) & (use == "residential")
        for i in _pick(rng, tall, spec.counts.old_highrises):
            built_year[i] = int(rng.integers(1985, 2000))
            tags[i] += ["老旧高层", "project=消防安全工程"]
        free = np.array([len(t) == 1 for t in tags])
        repair_area = codes.index(spec.projects.housing_repair)
        for i in _pick(rng, old & free & (area == repair_area), spec.counts.housing_repair):
            tags[i].append("project=旧住房修缮")
        free = np.array([len(t) == 1 for t in tags])
        for i in _pick(rng, old & free & (floors >= 4), spec.counts.aging_retrofit):
            tags[i].append("project=适老化改造")
        for i in np.flatnonzero((area == codes.index(spec.projects.expropriation)) & (floors <= 3)):
            tags[i].append("project=征收地块")
        for i in np.flatnonzero((built < 1980) & (rng.random(n) < 0.05)):
            tags[i].append("condition=破损")
        free = np.array([len(t) == 1 for t in tags])
        unfinished_area = area == codes.index(spec.projects.unfinished_building)
        candidates = np.flatnonzero(free & unfinished_area) if (free & unfinished_area).any() \
            else np.flatnonzero(free)
        unfinished = int(candidates[np.argmax(floors[candidates])])
        tags[unfinished] += ["烂尾楼", "安全观察"]
        households[unfinished] = 0
        built_year[unfinished] = None
        share = np.clip(rng.normal(*_ELDERLY_SHARE, n), 0.15, 0.6)
        elderly = np.round(households * _PERSONS_PER_HOUSEHOLD * share).astype(np.int64)
        self.buildings, self.building_use, self.households = polys, use, households
        self.building_floors, self.building_built = floors, built_year
        self.building_area, self.building_block = area, block
        addresses: list[str | None] = list(self._addresses(block, use))
        addresses[unfinished] = None
        self.building_addresses = addresses
        return [SampleFeature("buildings", None,
                              {"use": str(use[i]), "floors": int(floors[i]),
                               "households": int(households[i]), "elderly": int(elderly[i]),
                               "built_year": built_year[i], "address": addresses[i]},
                              tuple(tags[i]), lonlat[i]) for i in range(n)]

    def _streets_proper(self) -> NDArray[np.bool_]:
        """Which roads are streets, not alleys (弄): door plates are on them, engines drive them."""
        return np.array([road.road_class != "alley" for road in self.roads])

    def _kerb_buffer(self, offset: float) -> Any:
        """Every road widened to its kerbs plus ``offset`` metres, as one geometry."""
        return shapely.union_all(shapely.buffer(self.all_road_lines,
                                                self.all_road_widths / 2 + offset))

    def _addresses(self, block: Ints, use: NDArray[np.str_]) -> list[str]:
        """Addresses on the nearest named street: lanes (弄) for housing, numbers for the rest."""
        named = self._streets_proper()
        lines = self.road_lines[named]
        streets = [road.name for road, keep in zip(self.roads, named, strict=True) if keep]
        nearest = shapely.STRtree(lines).nearest(shapely.centroid(self.block_polys))
        lanes = self.rng.integers(1, 800, len(self.block_polys))
        numbers = self.rng.integers(1, 1600, len(block))
        house = np.zeros(len(self.block_polys), dtype=np.int64)
        out: list[str] = []
        for i, b in enumerate(block):
            street = streets[nearest[b]]
            if use[i] in ("residential", "mixed"):
                house[b] += 1
                out.append(f"{street}{lanes[b]}弄{house[b]}号")
            else:
                out.append(f"{street}{numbers[i]}号")
        return out

    # -- facilities -----------------------------------------------------------------------

    def _kerb_points(self, offset: float, buildings: Ints) -> Floats:
        """For each building, the point ``offset`` metres off the kerb of its block nearest it."""
        rings = shapely.boundary(shapely.difference(self.block_polys, self._kerb_buffer(offset)))
        lines = shapely.shortest_line(rings[self.building_block[buildings]],
                                      self.buildings[buildings])
        points: Floats = shapely.get_coordinates(lines)[::2]
        return points

    def _waste_points(self) -> list[SampleFeature]:
        """Drop points by the kerb near homes, more where more households live."""
        counts, rng = self.frame.spec.counts, self.rng
        homes = np.flatnonzero(np.isin(self.building_use, ("residential", "mixed"))
                               & (self.households > 0))
        order = homes[np.argsort(-rng.random(len(homes)) ** (1 / self.households[homes]),
                                 kind="stable")]
        spots = self._kerb_points(_SETBACK_WASTE, order)
        chosen = _spaced(spots, counts.waste_points, _WASTE_SPACING, np.empty((0, 2)))
        self.waste_xy = spots[chosen]
        n = len(chosen)
        served = order[chosen]
        states = rng.choice(_WASTE_STATES, n, p=_WASTE_STATE_P)
        off_hour = np.isin(np.arange(n), _pick(rng, np.ones(n, dtype=bool),
                                               counts.waste_off_hour))
        renewed = np.isin(np.arange(n), _pick(rng, np.ones(n, dtype=bool),
                                              counts.waste_micro_update))
        bins = rng.integers(2, 9, n)
        lonlat = self.frame.to_lonlat(shapely.points(self.waste_xy))
        out = []
        for i in range(n):
            tags = ["class=市容环境"]
            if states[i] == "damaged":
                tags.append("condition=破损")
            if renewed[i]:
                tags.append("微更新")
            if self.building_area[served[i]] in self.model_areas:
                tags.append("示范点")
            if self.building_use[served[i]] == "mixed":
                tags.append("商铺")
            out.append(SampleFeature("waste_points", None,
                                     {"state": str(states[i]), "bins": int(bins[i]),
                                      "off_hour": bool(off_hour[i])}, tuple(tags), lonlat[i]))
        return out

    def _charging_points(self) -> list[SampleFeature]:
        """Remediated sites under and beneath buildings; the planned street sites by the kerb."""
        counts, rng = self.frame.spec.counts, self.rng
        homes = (self.building_use == "residential") & (self.households > 0)
        floors = self.building_floors
        below = _pick(rng, homes & (floors >= 5), counts.charging_underground)
        free = homes & ~np.isin(np.arange(len(homes)), below)
        raised = _pick(rng, free & (floors >= 5) & (floors <= 7), counts.charging_elevated)
        order = rng.permutation(np.flatnonzero(homes))
        spots = self._kerb_points(_SETBACK_CHARGER, order)
        street = _spaced(spots, counts.charging_street, _CHARGER_SPACING, self.waste_xy)
        sites: list[tuple[Any, dict[str, Any], tuple[str, ...]]] = []
        inside = shapely.point_on_surface(self.buildings)
        for b in below:
            site = "underground" if floors[b] >= 10 else "semi_underground"
            sites.append((inside[b], {"site_type": site, "sockets": int(rng.integers(20, 81)),
                                      "state": "safe", "remediated": True},
                          ("class=公用设施", "地下空间")))
        for b in raised:
            sites.append((inside[b], {"site_type": "elevated_floor",
                                      "sockets": int(rng.integers(10, 41)), "state": "safe",
                                      "remediated": True}, ("class=公用设施", "架空层")))
        for s in street:
            site = str(rng.choice(_CHARGER_STREET_TYPES, p=_CHARGER_STREET_P))
            sockets = {"street_cabinet": (6, 13), "street_pile": (2, 11),
                       "centralized_parking": (20, 61)}[site]
            sites.append((shapely.Point(spots[s]),
                          {"site_type": site, "sockets": int(rng.integers(*sockets)),
                           "state": _planned(rng), "remediated": False},
                          ("class=公用设施", "规划")))
        lonlat = self.frame.to_lonlat(np.array([g for g, _, _ in sites], dtype=object))
        return [SampleFeature("charging_points", None, props, tags, geom)
                for (_, props, tags), geom in zip(sites, lonlat, strict=True)]

    def _fire_passages(self) -> list[SampleFeature]:
        """Fire lanes (消防车通道) into each residential estate's block, from the kerb of a
        street an engine may use to a building, crossing no other: the deepest first, then
        those entering farthest from the lanes already chosen, as many as the spec gives an
        estate (GB 50180-2018 §6.0.4 asks two vehicle entrances; data/SOURCES.md §6.2)."""
        counts, rng = self.frame.spec.counts, self.rng
        usable = self._streets_proper()
        lines, widths = self.road_lines[usable], np.array([r.width for r in self.roads])[usable]
        nearest = shapely.STRtree(lines).nearest(self.buildings)
        ends = shapely.get_coordinates(shapely.shortest_line(lines[nearest], self.buildings))
        p, q = ends[::2], ends[1::2]
        gap = np.hypot(*(q - p).T)
        unit = (q - p) / np.maximum(gap, 1e-9)[:, None]
        start = p + unit * (widths[nearest] / 2)[:, None]
        end = q - unit
        length = gap - widths[nearest] / 2 - 1
        estate = np.array([_TYPOLOGIES[self.block_kind[int(b)]].use in ("residential", "mixed")
                           for b in self.building_block])
        ok = estate & (length >= _PASSAGE_LENGTH[0]) & (length <= _PASSAGE_LENGTH[1])
        passages = shapely.linestrings(np.stack([start, end], axis=1))
        hits, _ = shapely.STRtree(self.buildings).query(passages[ok], predicate="intersects")
        clear = np.flatnonzero(ok)
        clear = np.setdiff1d(clear, clear[hits])
        chosen: list[int] = []
        for b in np.unique(self.building_block[clear]):
            mine = clear[self.building_block[clear] == b]
            picks = [int(mine[np.argmax(length[mine])])]
            while len(picks) < min(counts.fire_lanes_per_estate, len(mine)):
                apart = np.hypot(*(start[mine][:, None] - start[picks][None]).transpose(2, 0, 1))
                spread = apart.min(axis=1)
                spread[np.isin(mine, picks)] = -1.0
                picks.append(int(mine[np.argmax(spread)]))
            chosen += picks[:counts.fire_lanes_per_estate]
        chosen_at = np.sort(np.array(chosen, dtype=np.int64))
        n = len(chosen_at)
        blocked = rng.random(n) < _PASSAGE_BLOCKED_P
        width = np.round(rng.uniform(*_PASSAGE_WIDTH, n) * 2) / 2
        blockers = rng.choice(_BLOCKERS, n)
        lonlat = self.frame.to_lonlat(passages[chosen_at])
        return [SampleFeature(
            "fire_passages", None,
            {"state": "blocked" if blocked[i] else "open", "width_m": float(width[i]),
             "blocked_by": str(blockers[i]) if blocked[i] else None},
            ("class=道路交通", "condition=占用") if blocked[i] else ("class=道路交通",),
            lonlat[i]) for i in range(n)]

    def _places(self) -> dict[str, list[SampleFeature]]:
        """The places the report counts in and along the buildings (twin.sample.places), each
        layer from its own stream of random numbers."""
        named = self._streets_proper()
        roads = [road for road, keep in zip(self.roads, named, strict=True) if keep]
        committees = [self._area_code(a)[1] for a in range(len(self.area_polys))]
        schools_and_markets = [b for b, kind in sorted(self.block_kind.items()) if kind == "public"]
        ground = Ground(
            buildings=self.buildings, use=self.building_use, floors=self.building_floors,
            households=self.households, built=self.building_built,
            addresses=self.building_addresses, area=self.building_area,
            block=self.building_block,
            open_blocks=np.array(schools_and_markets + np.flatnonzero(self.block_green).tolist(),
                                 dtype=np.int64),
            block_land=self.block_land, areas=self.area_polys, committees=committees,
            subdistrict=self.frame.spec.name_zh + (f"（{self.k}）" if self.k else ""),
            streets=self.road_lines[named], street_names=[road.name for road in roads],
            street_widths=np.array([road.width for road in roads]))
        sites = places(ground, self.frame.spec.counts, lambda layer: np.random.default_rng(
            [self.frame.seed, _SEED_PLACES, self.k, zlib.crc32(layer.encode())]))
        out = {}
        for layer, found in sites.items():
            lonlat = self.frame.to_lonlat(_array([site.geometry for site in found]))
            out[layer] = [SampleFeature(layer, site.name, site.props, site.tags, geom)
                          for site, geom in zip(found, lonlat, strict=True)]
        return out


# ---------------------------------------------------------------------------------------
# Helpers

def _grow(centroids: Floats, sizes: Floats, neighbours: list[list[int]], k: int,
          rng: np.random.Generator) -> Ints:
    """Label blocks with k contiguous areas: far-apart seeds, the smallest area grows first."""
    seeds = [int(rng.integers(len(sizes)))]
    distance = np.hypot(*(centroids - centroids[seeds[0]]).T)
    while len(seeds) < k:
        seeds.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.hypot(*(centroids - centroids[seeds[-1]]).T))
    label = np.full(len(sizes), -1, dtype=np.int64)
    label[seeds] = np.arange(k)
    members = [[s] for s in seeds]
    total = sizes[seeds].astype(np.float64)
    for _ in range(len(sizes) - k):
        for a in np.argsort(total, kind="stable"):
            frontier = sorted({n for b in members[a] for n in neighbours[b] if label[n] < 0})
            if frontier:
                gaps = np.hypot(*(centroids[frontier] - centroids[seeds[a]]).T)
                pick = frontier[int(np.argmin(gaps))]
                label[pick] = a
                members[a].append(pick)
                total[a] += sizes[pick]
                break
    return label


def _array(geoms: list[Any]) -> Geoms:
    """Geometries as a numpy object array, for shapely's vectorised functions."""
    out = np.empty(len(geoms), dtype=object)
    out[:] = geoms
    return out


def _allocate(weights: Floats, total: int) -> Ints:
    """Split ``total`` in proportion to ``weights``, at least 1 each (largest remainders)."""
    n = len(weights)
    share = weights / weights.sum() * (total - n)
    out = np.floor(share).astype(np.int64)
    rest = total - n - int(out.sum())
    out[np.argsort(-(share - out), kind="stable")[:rest]] += 1
    counts: Ints = out + 1
    return counts


def _split(area: Any, k: int, rng: np.random.Generator) -> list[Any]:
    """Cut an area into k grids: Voronoi cells of k-means centres of points inside it."""
    if k == 1:
        return [area]
    minx, miny, maxx, maxy = area.bounds
    step = math.sqrt(area.area / (k * _GRID_SAMPLES))
    while True:
        gx, gy = np.meshgrid(np.arange(minx + step / 2, maxx, step),
                             np.arange(miny + step / 2, maxy, step))
        # Shaken off the lattice: cocircular seeds make degenerate Voronoi cells.
        gx = gx + rng.uniform(-step / 3, step / 3, gx.shape)
        gy = gy + rng.uniform(-step / 3, step / 3, gy.shape)
        inside = shapely.contains_xy(area, gx, gy)
        if inside.sum() >= 4 * k:
            break
        step /= 2
    points = np.column_stack([gx[inside], gy[inside]])
    centres = points[rng.choice(len(points), k, replace=False)]
    for _ in range(_KMEANS_ROUNDS):
        label = _nearest(points, centres)
        for c in np.unique(label):
            centres[c] = points[label == c].mean(axis=0)
    label = _nearest(points, centres)
    for c in range(k):  # an emptied cluster takes the point farthest from its own centre
        if not (label == c).any():
            far = np.hypot(*(points - centres[label]).T)
            counts = np.bincount(label, minlength=k)
            far[counts[label] < 2] = -1
            label[int(np.argmax(far))] = c
    # Each grid is seeded at the member nearest its cluster's mean: a point inside the area,
    # so every grid has land and no two seeds coincide.
    seeds = np.array([points[label == c][np.argmin(np.hypot(
        *(points[label == c] - points[label == c].mean(axis=0)).T))] for c in range(k)])
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seeds),
                                                       extend_to=area))
    grids = [_polygonal(g) for g in shapely.intersection(cells, area)]
    grids = [g for g in grids if not g.is_empty]
    at = shapely.get_coordinates(shapely.centroid(np.array(grids, dtype=object)))
    order = np.lexsort((at[:, 0], -np.round(at[:, 1] / 50)))  # north to south, west to east
    return [grids[i] for i in order]


def _nearest(points: Floats, centres: Floats) -> Ints:
    """Index of the nearest centre to each point."""
    d = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    label: Ints = np.argmin(d, axis=1).astype(np.int64)
    return label


def _polygonal(geom: Any) -> Any:
    """The polygons of a geometry as one MultiPolygon, as areas and grids are even in one
    piece (drops stray lines and points that clipping leaves)."""
    parts = shapely.get_parts(shapely.get_parts(geom))
    polygons = [p for p in parts if p.geom_type == "Polygon" and not p.is_empty]
    return shapely.MultiPolygon(polygons)


def _area_name(committee: str) -> str:
    """The area a committee serves: 居委会 → 居民区."""
    return committee.replace("居委会", "居民区")


def _pick(rng: np.random.Generator, mask: NDArray[np.bool_], n: int) -> Ints:
    """Up to n indices where ``mask`` holds, at random, in index order."""
    where = np.flatnonzero(mask)
    chosen: Ints = np.sort(rng.permutation(where)[:n])
    return chosen


def _spaced(points: Floats, n: int, spacing: float, taken: Floats) -> Ints:
    """The first n of ``points`` (in their order) at least ``spacing`` from each other and
    from ``taken``."""
    placed = np.empty((len(taken) + n, 2))
    placed[:len(taken)] = taken
    count = len(taken)
    chosen: list[int] = []
    for i, p in enumerate(points):
        if count and np.min(np.hypot(*(placed[:count] - p).T)) < spacing:
            continue
        placed[count] = p
        count += 1
        chosen.append(i)
        if len(chosen) == n:
            break
    return np.array(chosen, dtype=np.int64)


def _rows(land: Any, angle: float, typ: _Typology, rng: np.random.Generator) -> Geoms:
    """Buildings in rows turned by ``angle``, packed from the west end of each row wherever a
    whole slot fits on the land; one slot size per block, as estates were built in one go.
    Each building lies within its slot, so neighbours keep the typology's clear distances."""
    if land.is_empty:
        return np.empty(0, dtype=object)
    centre = np.array(land.centroid.coords[0])
    cos, sin = math.cos(angle), math.sin(angle)
    local = affinity.rotate(land, -angle, origin=tuple(centre), use_radians=True)
    minx, miny, maxx, maxy = np.array(local.bounds) - np.tile(centre, 2)
    slot, depth = rng.uniform(*typ.along), rng.uniform(*typ.across)
    gap, pitch = rng.uniform(*typ.gap), depth + rng.uniform(*typ.spacing)
    xs = np.arange(minx, maxx - slot, _LAYOUT_STEP)
    ys = np.arange(miny, maxy - depth, pitch)
    if not (len(xs) and len(ys)):
        return np.empty(0, dtype=object)

    def rectangles(x: Floats, y: Floats, a: Floats, b: Floats) -> Geoms:
        px = x[:, None] + a[:, None] * np.array([0, 1, 1, 0, 0])
        py = y[:, None] + b[:, None] * np.array([0, 0, 1, 1, 0])
        polygons: Geoms = shapely.polygons(np.stack([centre[0] + px * cos - py * sin,
                                                     centre[1] + px * sin + py * cos], axis=-1))
        return polygons

    gx, gy = np.meshgrid(xs, ys)
    ones = np.ones(gx.size)
    shapely.prepare(land)
    fits = shapely.contains(land, rectangles(gx.ravel(), gy.ravel(), slot * ones, depth * ones))
    fits = fits.reshape(gx.shape)
    placed: list[tuple[float, float]] = []
    for r, y in enumerate(ys):
        end = -math.inf
        for c in np.flatnonzero(fits[r]):
            if xs[c] >= end:
                placed.append((xs[c], y))
                end = xs[c] + slot + gap
    n = len(placed)
    at = np.array(placed).reshape(n, 2)
    a = slot * rng.uniform(0.85, 1.0, n)
    b = depth * rng.uniform(0.9, 1.0, n)
    return rectangles(at[:, 0] + rng.uniform(0, 1, n) * (slot - a),
                      at[:, 1] + rng.uniform(0, 1, n) * (depth - b), a, b)
