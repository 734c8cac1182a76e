"""The places a subdistrict's report counts in and along its buildings, for the sample twin:
shops, key places, gas hazards, the premises checked in 拆窗破网 with the escape openings made
there, civil-defence works and emergency shelters, emergency stores (``layers/*.toml``).

Each is put where such a place is found, from the tile's own geometry: shops on the street
face of buildings by a street, key places in commercial buildings, gas hazards in homes and
restaurants, checked premises in homes, shops, lane houses and sheds with their openings on
the same building's walls (one premises a building, so an opening belongs to the premises of
its building), civil-defence works under the buildings the 结建 rule gives one, shelters on
the largest open ground, a store at each committee and the subdistrict's flood store. The
counts are the spec's (``data/SOURCES.md`` §4 says which are the report's); the shares and
sizes below are assumptions (§3). Each layer draws from its own random stream, so a change
to one leaves the others as they were.

Work is in the generator's frame metres; buildings are its rectangles (corners 0-3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from twin.sample.spec import SampleCounts

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Geoms = NDArray[np.object_]
Stream = Callable[[str], np.random.Generator]

PLACE_LAYERS = ("shops", "key_places", "gas_hazards", "escape_checks", "escape_openings",
                "shelters", "emergency_stores")

_INSET = 1.0               # a place's point this far inside its building's wall (metres)
_WINDOW_INSET = 0.3        # an opening's point, at the wall
_FRONTAGE_M = 12.0         # a building this close to a street's kerb has shops on that face
_SHOP_WIDTH = (5.0, 9.0)   # a shop's front along the facade
_PLATE_STEP = 4.0          # metres of street a door number stands for (odd one side, even other)
_SHOP_TRADES = ("food", "retail", "service", "repair", "other")
_SHOP_TRADE_P = (0.35, 0.33, 0.20, 0.07, 0.05)
_SHOP_STATES = ("open", "closed", "vacant")
_SHOP_STATE_P = (0.88, 0.04, 0.08)
_DOOR_DUTY_P = 0.85        # shops that signed the 门前责任区 (门责) pledge
_KEY_KINDS = ("internet_cafe", "ktv", "hostel", "other")
_KEY_KIND_P = (0.25, 0.20, 0.45, 0.10)
_KEY_STATES = ("ok", "hazard", "closed")
_KEY_STATE_P = (0.85, 0.10, 0.05)
_GAS_KINDS = ("aged_hose", "cylinder_indoors", "no_alarm", "illegal_connection", "other")
_GAS_KIND_P = (0.40, 0.20, 0.20, 0.15, 0.05)
_GAS_AT_RESTAURANTS = 0.25  # share of gas hazards found in restaurants, the rest in homes
_CHECK_USES = ("home", "shop", "workshop", "warehouse", "other")
_CHECK_USE_P = (0.50, 0.25, 0.10, 0.10, 0.05)
_CHECK_UNFIXED = 0.15       # share of checked premises with nothing opened: clear or to fix
_CHECK_TO_FIX_P = 1 / 3     # ... of which still to fix
_GROUP_RENTAL_P = 0.3       # checked homes that are group rentals (群租)
_BARRED_FLOORS = 6          # window bars and nets are on the floors up to this one
_OPENING_KINDS = ("window_bars", "security_net", "door")
_OPENING_KIND_P = (0.70, 0.20, 0.10)
# 结建: a civil building of ten floors or more has a shelter basement of its ground floor's
# area; GB 50038 gives a person 1 m² of sheltering area, of which the basement has this share.
_SHELTER_FLOORS = 10
_SHELTER_USABLE = 0.7
_OPEN_CLEARANCE = 5.0       # open ground starts this far from buildings (metres) ...
_OPEN_USABLE = 0.5          # ... of which a shelter may fill this share ...
_OPEN_M2_PER_PERSON = 1.5   # ... at this much a person
_SHELTER_STATES = ("ready", "in_repair", "closed")
_SHELTER_STATE_P = (0.85, 0.10, 0.05)
_STORE_STATES = ("stocked", "short", "empty")
_STORE_STATE_P = (0.80, 0.15, 0.05)
_STORE_ITEMS = {"general": "应急灯、急救包、灭火器、雨衣、饮用水",
                "flood": "沙袋、挡水板、抽水泵、救生衣"}


@dataclass(frozen=True)
class Site:
    """A place in frame metres, with its attributes, tags and name."""

    geometry: Any
    props: dict[str, Any]
    tags: tuple[str, ...] = ()
    name: str | None = None


@dataclass(frozen=True)
class Ground:
    """What a tile's places stand on, in frame metres."""

    buildings: Geoms           # rectangles
    use: NDArray[np.str_]
    floors: Ints
    households: Ints
    built: Sequence[int | None]
    addresses: Sequence[str | None]
    area: Ints                 # each building's residential area (of ``areas``) ...
    block: Ints                # ... and block (of ``block_land``)
    open_blocks: Ints          # blocks whose open ground may be a shelter (schools, parks)
    block_land: Geoms          # each block within its set-backs
    areas: Geoms
    committees: Sequence[str]  # of each area
    subdistrict: str
    streets: Geoms             # the named streets an address may be on
    street_names: Sequence[str]
    street_widths: Floats


def places(ground: Ground, counts: SampleCounts, stream: Stream) -> dict[str, list[Site]]:
    """Every place layer's sites, by layer."""
    shops, shop_building = _shops(ground, counts.shops, stream("shops"))
    checks, openings = _escape_checks(ground, counts, shops, shop_building,
                                      stream("escape_checks"))
    return {"shops": shops,
            "key_places": _key_places(ground, counts.key_places, stream("key_places")),
            "gas_hazards": _gas_hazards(ground, counts.gas_hazards, shops, shop_building,
                                        stream("gas_hazards")),
            "escape_checks": checks, "escape_openings": openings,
            "shelters": _shelters(ground, counts.emergency_shelters, stream("shelters")),
            "emergency_stores": _stores(ground, stream("emergency_stores"))}


def _corners(ground: Ground, which: Ints) -> Floats:
    """Corners 0-3 of buildings ``which``, shape (n, 4, 2)."""
    corners: Floats = shapely.get_coordinates(ground.buildings[which]).reshape(-1, 5, 2)[:, :4]
    return corners


def _inside(ground: Ground, which: Ints, rng: np.random.Generator) -> Geoms:
    """A point inside each of buildings ``which``, at least ``_INSET`` from its walls."""
    c = _corners(ground, which)
    a, b = c[:, 1] - c[:, 0], c[:, 3] - c[:, 0]
    margin = [_INSET / np.hypot(*a.T), _INSET / np.hypot(*b.T)]
    u = rng.uniform(margin[0], 1 - margin[0])
    v = rng.uniform(margin[1], 1 - margin[1])
    points: Geoms = shapely.points(c[:, 0] + u[:, None] * a + v[:, None] * b)
    return points


def _on_walls(ground: Ground, which: Ints, rng: np.random.Generator) -> Geoms:
    """A point at a random place of the walls of each of buildings ``which``, just inside."""
    c = _corners(ground, which)
    side = rng.integers(0, 4, len(which))
    t = rng.uniform(0.1, 0.9, len(which))
    rows = np.arange(len(which))
    start, end = c[rows, side], c[rows, (side + 1) % 4]
    along = start + t[:, None] * (end - start)
    inward = c.mean(axis=1) - (start + end) / 2
    inward /= np.hypot(*inward.T)[:, None]
    points: Geoms = shapely.points(along + _WINDOW_INSET * inward)
    return points


def _shops(ground: Ground, n: int, rng: np.random.Generator) -> tuple[list[Site], Ints]:
    """Shop fronts along the street face of the buildings by a street: all of mixed and
    commercial buildings' first, then some of the old lane houses' ground floors."""
    lines = ground.streets
    nearest = shapely.STRtree(lines).nearest(ground.buildings)
    kerb = shapely.distance(ground.buildings, lines[nearest]) - ground.street_widths[nearest] / 2
    lane = (ground.use == "residential") & (ground.floors <= 3)
    trading = np.isin(ground.use, ("mixed", "commercial"))
    hosts = np.flatnonzero((kerb <= _FRONTAGE_M) & (trading | lane))
    c = _corners(ground, hosts)
    starts, ends = c, np.roll(c, -1, axis=1)
    mids = (starts + ends) / 2
    gaps = shapely.distance(shapely.points(mids), lines[nearest[hosts]][:, None])
    face = np.argmin(gaps, axis=1)
    rows = np.arange(len(hosts))
    start, end = starts[rows, face], ends[rows, face]
    inward = c.mean(axis=1) - mids[rows, face]
    inward /= np.hypot(*inward.T)[:, None]
    units = np.maximum(1, np.floor(np.hypot(*(end - start).T)
                                   / rng.uniform(*_SHOP_WIDTH, len(hosts)))).astype(np.int64)
    building = np.repeat(hosts, units)
    host = np.repeat(rows, units)
    t = (np.concatenate([np.arange(k) for k in units]) + 0.5) / units[host]
    xy = start[host] + t[:, None] * (end - start)[host] + _INSET * inward[host]
    order = np.sort(np.lexsort((rng.random(len(building)), ~trading[building]))[:n])
    building, xy = building[order], xy[order]
    street = nearest[building]
    trades = rng.choice(_SHOP_TRADES, len(order), p=_SHOP_TRADE_P)
    states = rng.choice(_SHOP_STATES, len(order), p=_SHOP_STATE_P)
    duty = rng.random(len(order)) < _DOOR_DUTY_P
    plates = _plates(xy, lines[street])
    sites = []
    for i, (x, y) in enumerate(xy):
        tags = ["门责"] if duty[i] else []
        if trades[i] == "food":
            tags.append("餐饮油烟")
        sites.append(Site(shapely.Point(x, y),
                          {"trade": str(trades[i]), "state": str(states[i]),
                           "address": f"{ground.street_names[street[i]]}{plates[i]}号"},
                          tuple(tags)))
    return sites, building


def _plates(xy: Floats, streets: Geoms) -> Ints:
    """Door numbers along each point's street: counted along the street's run (east or north
    from the frame's origin), odd on one side and even on the other."""
    bounds = shapely.bounds(streets)
    across = (bounds[:, 2] - bounds[:, 0]) >= (bounds[:, 3] - bounds[:, 1])  # runs along x
    on = shapely.get_coordinates(shapely.line_interpolate_point(
        streets, shapely.line_locate_point(streets, shapely.points(xy))))
    along = np.where(across, xy[:, 0], xy[:, 1])
    side = np.where(across, xy[:, 1] > on[:, 1], xy[:, 0] > on[:, 0])
    plates: Ints = 2 * np.floor(np.maximum(along, 0) / _PLATE_STEP).astype(np.int64) + 1 + side
    return plates


def _key_places(ground: Ground, n: int, rng: np.random.Generator) -> list[Site]:
    """Internet cafés, KTV and hostels in commercial and mixed buildings, one a building."""
    at = np.sort(rng.permutation(np.flatnonzero(np.isin(ground.use, ("commercial", "mixed"))))[:n])
    points = _inside(ground, at, rng)
    kinds = rng.choice(_KEY_KINDS, len(at), p=_KEY_KIND_P)
    states = rng.choice(_KEY_STATES, len(at), p=_KEY_STATE_P)
    return [Site(points[i], {"kind": str(kinds[i]), "state": str(states[i])})
            for i in range(len(at))]


def _gas_hazards(ground: Ground, n: int, shops: list[Site], shop_building: Ints,
                 rng: np.random.Generator) -> list[Site]:
    """Gas hazards found and fixed on the spot (即查即改): in restaurants among the shops and
    in homes, each in a building of its own."""
    restaurants = np.flatnonzero([s.props["trade"] == "food" for s in shops])
    _, first = np.unique(shop_building[restaurants], return_index=True)
    at_shops = np.sort(rng.permutation(restaurants[first])[:round(n * _GAS_AT_RESTAURANTS)])
    homes = np.flatnonzero((ground.use == "residential") & (ground.households > 0))
    homes = np.setdiff1d(homes, shop_building[at_shops])
    at_homes = np.sort(rng.permutation(homes)[:n - len(at_shops)])
    kinds = rng.choice(_GAS_KINDS, n, p=_GAS_KIND_P)
    fixed = {"state": "fixed", "fixed_on_spot": True}
    sites = [Site(shops[s].geometry, {"kind": str(kinds[i]), **fixed,
                                      "premises": shops[s].props["address"]},
                  ("沿街商铺", "餐饮")) for i, s in enumerate(at_shops)]
    points = _inside(ground, at_homes, rng)
    floors = rng.integers(1, ground.floors[at_homes] + 1)
    rooms = rng.integers(1, 5, len(at_homes))
    for j, b in enumerate(at_homes):
        sites.append(Site(points[j], {"kind": str(kinds[len(at_shops) + j]), **fixed,
                                      "premises": f"{ground.addresses[b]}{floors[j]}0{rooms[j]}室"},
                          ("居民户",)))
    return sites


def _escape_checks(ground: Ground, counts: SampleCounts, shops: list[Site],
                   shop_building: Ints, rng: np.random.Generator
                   ) -> tuple[list[Site], list[Site]]:
    """The premises checked in 拆窗破网, one a building, and the escape openings made at them:
    every opening on the walls of its premises' building, as many as the premises' count."""
    n, total = counts.escape_checks, counts.escape_openings
    homes = (ground.use == "residential") & (ground.households > 0)
    pools = {"home": np.flatnonzero(homes & (ground.floors < _SHELTER_FLOORS)),
             "shop": np.unique(shop_building),
             "workshop": np.flatnonzero(homes & (ground.floors <= 3)),
             "warehouse": np.flatnonzero((ground.use == "public") & (ground.floors <= 2)),
             "other": np.flatnonzero(ground.use == "public")}
    drawn = {use: list(rng.permutation(pool)) for use, pool in pools.items()}
    uses = rng.choice(_CHECK_USES, n, p=_CHECK_USE_P)
    taken: set[int] = set()
    premises: list[tuple[str, int]] = []
    for use in uses:
        left = drawn[str(use)]
        while left and left[0] in taken:
            left.pop(0)
        if left:
            taken.add(int(left[0]))
            premises.append((str(use), int(left.pop(0))))
    at = np.array([b for _, b in premises], dtype=np.int64)
    fixed_n = min(max(len(at) - round(len(at) * _CHECK_UNFIXED), 1 if total else 0), total)
    fixed = np.zeros(len(at), dtype=bool)
    fixed[rng.permutation(len(at))[:fixed_n]] = True
    weight = np.minimum(ground.floors[at[fixed]], _BARRED_FLOORS).astype(np.float64)
    made = np.zeros(len(at), dtype=np.int64)
    made[fixed] = 1 + rng.multinomial(total - fixed_n, weight / weight.sum()) if fixed_n else 0
    idle = np.where(rng.random(len(at)) < _CHECK_TO_FIX_P, "to_fix", "clear")
    shop_at = {int(b): s for s, b in reversed(list(enumerate(shop_building)))}
    inside = _inside(ground, at, rng)
    rental = rng.random(len(at)) < _GROUP_RENTAL_P
    checks = []
    for i, (use, b) in enumerate(premises):
        shop = shops[shop_at[b]] if use == "shop" else None
        tags = ("拆窗破网", "群租") if use == "home" and rental[i] else ("拆窗破网",)
        checks.append(Site(shop.geometry if shop else inside[i],
                           {"use": use, "state": "fixed" if fixed[i] else str(idle[i]),
                            "openings": int(made[i])}, tags,
                           shop.props["address"] if shop else ground.addresses[b]))
    walls = np.repeat(at, made)
    points = _on_walls(ground, walls, rng)
    kinds = rng.choice(_OPENING_KINDS, len(walls), p=_OPENING_KIND_P)
    storeys = rng.integers(1, np.minimum(ground.floors[walls], _BARRED_FLOORS) + 1)
    openings = [Site(points[j], {"kind": str(kinds[j]), "state": "open",
                                 "floor": 1 if kinds[j] == "door" else int(storeys[j])},
                     ("拆窗破网",)) for j in range(len(walls))]
    return checks, openings


def _shelters(ground: Ground, n_open: int, rng: np.random.Generator) -> list[Site]:
    """Civil-defence works under every finished building of ``_SHELTER_FLOORS`` floors or
    more, holding a person a square metre of their share of its footprint; then the
    ``n_open`` largest open grounds of schools and parks as emergency shelters."""
    tall = np.flatnonzero((ground.floors >= _SHELTER_FLOORS)
                          & np.array([y is not None for y in ground.built]))
    blocks = ground.open_blocks
    built = shapely.union_all(ground.buildings[np.isin(ground.block, blocks)])
    grounds = shapely.difference(ground.block_land[blocks],
                                 shapely.buffer(built, _OPEN_CLEARANCE))
    largest = np.array([max(shapely.get_parts(g), key=lambda p: p.area, default=None)
                        for g in grounds], dtype=object)
    has = np.flatnonzero([g is not None for g in largest])
    best = largest[has[np.argsort(-shapely.area(largest[has]), kind="stable")[:n_open]]]
    at = np.concatenate([shapely.point_on_surface(ground.buildings[tall]),
                         shapely.point_on_surface(best)])
    kinds = ["civil_defence"] * len(tall) + ["emergency_shelter"] * len(best)
    capacity = _tens(np.concatenate([
        shapely.area(ground.buildings[tall]) * _SHELTER_USABLE,
        shapely.area(best) * _OPEN_USABLE / _OPEN_M2_PER_PERSON]))
    states = rng.choice(_SHELTER_STATES, len(at), p=_SHELTER_STATE_P)
    return [Site(at[i], {"kind": kinds[i], "capacity": int(capacity[i]),
                         "state": str(states[i])}, ("class=公用设施",)) for i in range(len(at))]


def _tens(people: Floats) -> Ints:
    """Capacities rounded down to tens."""
    rounded: Ints = (np.floor(people / 10) * 10).astype(np.int64)
    return rounded


def _stores(ground: Ground, rng: np.random.Generator) -> list[Site]:
    """A store at each committee, in the public building nearest its area's middle (its
    office), and the subdistrict's flood store in the public building nearest the river."""
    public = ground.use == "public"
    at: list[int] = []
    for a, area in enumerate(ground.areas):
        mine = np.flatnonzero((ground.area == a) & public)
        if not len(mine):
            mine = np.flatnonzero(ground.area == a)
        if len(mine):
            at.append(int(mine[np.argmin(shapely.distance(
                ground.buildings[mine], shapely.point_on_surface(area)))]))
    names = [f"{ground.committees[ground.area[b]]}应急物资储备点" for b in at]
    kinds = ["general"] * len(at)
    free = np.setdiff1d(np.flatnonzero(public), at)
    if len(free):
        west = shapely.bounds(ground.buildings[free])[:, 0]
        at.append(int(free[np.argmin(west)]))
        names.append(f"{ground.subdistrict}防汛物资仓库")
        kinds.append("flood")
    states = rng.choice(_STORE_STATES, len(at), p=_STORE_STATE_P)
    points = shapely.point_on_surface(ground.buildings[np.array(at, dtype=np.int64)])
    return [Site(points[i], {"kind": kinds[i], "state": str(states[i]),
                             "items": _STORE_ITEMS[kinds[i]]}, ("class=公用设施",), names[i])
            for i in range(len(at))]
