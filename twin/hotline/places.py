"""A hotline order's address text placed on the twin's own buildings and streets, or queued.

Rules (a person places whatever is queued; nothing is guessed silently):
- a door plate (road [+ lane] + number) on exactly one building: "building", at the
  building's point on surface; on two or more: queued, the buildings as candidates;
- a number the twin does not have: queued, the nearest numbers on that lane or road as
  candidates (a caller's "269号" may be the lane 269弄);
- a lane without a number: "lane", the centre of the lane's buildings (or the middle of an
  alley street of that name); a lane the twin does not have: queued;
- two roads and no number ("A路与B路交叉口", "A路B路口"): "crossing" where they meet; roads
  that do not meet, or meet more than once, are queued with both streets as candidates;
- a road alone: "street", the middle of its merged line; an unknown road or no road: queued
  (residential areas named in the text are offered as candidates).
Administrative prefixes (…省, …市, …区, …街道, …镇) are stripped by their form, not by name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import Connection, text

Precision = Literal["building", "lane", "crossing", "street"]

_CJK = "\u4e00-\u9fff"
# A road: a run of Chinese characters ending in a road word (shortest such run).
_ROAD = re.compile(rf"[{_CJK}]{{1,12}}?(?:大道|公路|路|街|巷)")
_ROAD_WORD = re.compile(r"大道|公路|路|街|巷")
# Administrative units, outermost first, each stripped at most once from the front. A unit's
# own name has 2+ characters and, except a subdistrict's (南码头路街道), no road word.
_ADMIN = (
    (re.compile(rf"[{_CJK}]{{2,10}}?省"), False),
    (re.compile(rf"[{_CJK}]{{2,10}}?市"), False),
    (re.compile(rf"[{_CJK}]{{2,10}}?(?:新区|(?<!小)区|县)"), False),
    (re.compile(rf"[{_CJK}]{{2,10}}?(?:街道|镇|乡)"), True),
)
_LANE = re.compile(r"(\d{1,6})弄")
_NUMBER = re.compile(r"(\d{1,6})(?:号楼|号|幢|栋|座)")
_BARE_NUMBER = re.compile(r"(\d{1,6})(?=$|[-,.;(])")  # "269弄16": a lane's number without 号
_CN_NUMBER = re.compile(r"(?<=[路街道巷弄])([一二两三四五六七八九十]{1,3})(?=号|弄|幢|栋|座)")
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
# Rooms, floors, units and where-about words: said by callers, no help in placing.
_DROP = re.compile(r"\d+(?:室|楼|层|单元)|楼下|楼上|楼道|门口|附近|旁边|边上|对面|里面|后面|前面")
# Words that may stand before a road ("家住临沂路", "与浦建路"): only these let a known road
# be read from the end of a longer run, so "东浦建路" is never taken for "浦建路".
_FILLERS = frozenset("在住于是址到近靠与和及跟同至往")
_JOINERS = frozenset("/、,&+")
CROSSING_SPREAD_M = 60  # two roads meeting at points farther apart meet "more than once"


@dataclass(frozen=True)
class Address:
    """What a caller's address says: a road, perhaps a lane and number, or a second road."""

    road: str | None
    lane: str | None = None     # "52弄"
    number: str | None = None   # "1号"
    crossing: str | None = None
    rest: str = ""

    @property
    def plate(self) -> str | None:
        """The door plate as the twin writes it (滨江大道52弄1号), when a number was given."""
        if self.road is None or self.number is None:
            return None
        return self.road + (self.lane or "") + self.number

    @property
    def lane_key(self) -> str | None:
        return self.road + self.lane if self.road and self.lane else None


@dataclass(frozen=True)
class Placement:
    """Where an order goes, or why it waits for a person (then ``placed`` is false)."""

    placed: bool
    precision: Precision | None
    lon: float | None
    lat: float | None
    feature_layer: str | None
    feature_id: int | None
    matched: str
    reason_en: str
    reason_zh: str
    candidates: list[dict[str, Any]] = field(default_factory=list)


def _queued(reason_en: str, reason_zh: str, matched: str = "",
            candidates: list[dict[str, Any]] | None = None) -> Placement:
    return Placement(False, None, None, None, None, None, matched, reason_en, reason_zh,
                     candidates or [])


# -- parsing -------------------------------------------------------------------------------

def _cn_int(numeral: str) -> str:
    """一..九十九 as digits; anything else left as it was."""
    tens, ten, ones = numeral.partition("十")
    if not ten:
        return str(_CN_DIGITS[numeral]) if len(numeral) == 1 else numeral
    if (tens and tens not in _CN_DIGITS) or (ones and ones not in _CN_DIGITS):
        return numeral
    return str((_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0))


def normalise(address: str) -> str:
    """NFKC (full-width digits and brackets), no whitespace, no administrative prefix."""
    s = "".join(unicodedata.normalize("NFKC", address).split())
    for unit, may_hold_road in _ADMIN:
        m = unit.match(s)
        if m and (may_hold_road or not _ROAD_WORD.search(m.group(0)[:-1])):
            s = s[m.end():].lstrip(",:;")
    return _CN_NUMBER.sub(lambda m: _cn_int(m.group(1)), s)


def _known(run: str, roads: Collection[str]) -> str | None:
    """The known road a run of characters names: itself, or its end after a filler word."""
    if run in roads:
        return run
    for k in range(1, len(run) - 1):
        if run[k - 1] in _FILLERS and run[k:] in roads:
            return run[k:]
    return None


def _road_at(m: re.Match[str], roads: Collection[str]) -> str | None:
    run = m.group(0)
    if roads:
        return _known(run, roads)
    return run[1:] if run[0] in _FILLERS and _ROAD.fullmatch(run[1:]) else run


def parse_address(address: str, roads: Collection[str] = ()) -> Address:
    """Read road, lane, number or crossing road from free text. With ``roads`` (the twin's
    street names) the road is the first run naming a known one; without, the first run."""
    s = normalise(address)
    first: re.Match[str] | None = None
    road: str | None = None
    for m in _ROAD.finditer(s):
        if s.startswith("街道", m.end()):  # a subdistrict named after its road
            continue
        name = _road_at(m, roads)
        if name is not None:
            first, road = m, name
            break
        first = first or m
    if first is None:
        return Address(None, rest=_DROP.sub("", s))
    if road is None:  # no run names a known road: keep the first as said
        road = first.group(0)
    pos = first.end()
    lane: str | None = None
    number: str | None = None
    crossing: str | None = None
    if said := _LANE.match(s, pos):
        lane, pos = f"{int(said.group(1))}弄", said.end()
    said = _NUMBER.match(s, pos) or (_BARE_NUMBER.match(s, pos) if lane else None)
    if said:
        number, pos = f"{int(said.group(1))}号", said.end()
    if lane is None and number is None:
        gap = pos
        while gap < len(s) and s[gap] in _JOINERS:
            gap += 1
        said = _ROAD.match(s, gap)
        if said and (name := _road_at(said, roads)) and name != road:
            crossing, pos = name, said.end()
    rest = _DROP.sub("", s[:first.start()] + s[pos:]).strip(",.;:()")
    return Address(road, lane, number, crossing, rest)


# -- the twin's side, one query per kind of fact for a whole batch ------------------------

def _upper(prefix: str) -> str:
    """The least string above every string starting with ``prefix`` (UTF-8 keeps code-point
    order), so a prefix is an index range of the text_pattern_ops address index."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


_ROADS = text("SELECT DISTINCT name FROM twin.features WHERE layer = 'streets' AND name <> ''")

_PLATES = text("""
SELECT f.props ->> 'address' AS plate, f.id, ST_X(p) AS lon, ST_Y(p) AS lat
  FROM twin.features f CROSS JOIN LATERAL ST_PointOnSurface(f.geom) AS p
 WHERE f.layer = 'buildings' AND f.props ->> 'address' = ANY(CAST(:plates AS text[]))
 ORDER BY f.id""")

# The range, not LIKE q.lo || '%': a pattern from a joined column never becomes an index range.
_LANES = text("""
SELECT q.lo AS lane, count(*) AS n, ST_X(ST_Centroid(ST_Collect(b.p))) AS lon,
       ST_Y(ST_Centroid(ST_Collect(b.p))) AS lat
  FROM unnest(CAST(:lo AS text[]), CAST(:hi AS text[])) AS q(lo, hi)
 CROSS JOIN LATERAL (
       SELECT ST_PointOnSurface(f.geom) AS p FROM twin.features f
        WHERE f.layer = 'buildings'
          AND f.props ->> 'address' ~>=~ q.lo AND f.props ->> 'address' ~<~ q.hi) AS b
 GROUP BY q.lo""")

_STREETS = text("""
WITH merged AS (
    SELECT name, ST_LineMerge(ST_Collect(geom)) AS g FROM twin.features
     WHERE layer = 'streets' AND name = ANY(CAST(:names AS text[])) GROUP BY name),
middle AS (
    SELECT name, CASE WHEN GeometryType(g) = 'LINESTRING' THEN ST_LineInterpolatePoint(g, 0.5)
                      ELSE ST_ClosestPoint(g, ST_Centroid(g)) END AS p FROM merged)
SELECT m.name, s.id, ST_X(m.p) AS lon, ST_Y(m.p) AS lat
  FROM middle m
 CROSS JOIN LATERAL (SELECT f.id FROM twin.features f
                      WHERE f.layer = 'streets' AND f.name = m.name
                      ORDER BY ST_Distance(f.geom, m.p), f.id LIMIT 1) AS s""")

_CROSSINGS = text("""
WITH q AS (SELECT * FROM unnest(CAST(:a AS text[]), CAST(:b AS text[])) AS q(a, b)),
roads AS (SELECT name, ST_Collect(geom) AS g FROM twin.features
           WHERE layer = 'streets' AND name = ANY(CAST(:a AS text[]) || CAST(:b AS text[]))
           GROUP BY name),
meet AS (SELECT q.a, q.b, ST_Intersection(ra.g, rb.g) AS g
           FROM q JOIN roads ra ON ra.name = q.a JOIN roads rb ON rb.name = q.b)
SELECT m.a, m.b, ST_Length(ST_LongestLine(m.g, m.g)::geography) AS spread,
       ST_X(p.p) AS lon, ST_Y(p.p) AS lat, s.id
  FROM meet m
 CROSS JOIN LATERAL (SELECT ST_ClosestPoint(m.g, ST_Centroid(m.g)) AS p) AS p
 CROSS JOIN LATERAL (SELECT f.id FROM twin.features f
                      WHERE f.layer = 'streets' AND f.name = m.a
                      ORDER BY ST_Distance(f.geom, p.p), f.id LIMIT 1) AS s
 WHERE NOT ST_IsEmpty(m.g)""")

# Up to five buildings of a road nearest the lane and number said: the lane (or plain
# number) first, then the number within the lane.
_NEAR = text("""
SELECT q.i, b.id, b.address
  FROM unnest(CAST(:i AS int[]), CAST(:lo AS text[]), CAST(:hi AS text[]),
              CAST(:n1 AS bigint[]), CAST(:n2 AS bigint[])) AS q(i, lo, hi, n1, n2)
 CROSS JOIN LATERAL (
       SELECT f.id, f.props ->> 'address' AS address
         FROM twin.features f
        CROSS JOIN LATERAL regexp_match(substr(f.props ->> 'address', char_length(q.lo) + 1),
                                        '^([0-9]{1,9})(弄([0-9]{1,9}))?') AS m(parts)
        WHERE f.layer = 'buildings'
          AND f.props ->> 'address' ~>=~ q.lo AND f.props ->> 'address' ~<~ q.hi
        ORDER BY abs(coalesce(m.parts[1]::bigint, 0) - q.n1),
                 abs(coalesce(m.parts[3]::bigint, 0) - q.n2), f.props ->> 'address', f.id
        LIMIT 5) AS b
 ORDER BY q.i""")

_AREAS = text("""
SELECT id, name, coalesce(props ->> 'committee', '') AS committee
  FROM twin.features WHERE layer = 'residential_areas' AND name <> '' ORDER BY id""")


def _building(row: Any) -> dict[str, Any]:
    return {"layer": "buildings", "id": int(row.id), "label": row.plate}


class _Twin:
    """The facts a batch needs, read with one query per kind."""

    def __init__(self, conn: Connection, addresses: Sequence[Address], roads: set[str]):
        self.conn, self.roads = conn, roads
        plates = sorted({a.plate for a in addresses if a.plate})
        self.plates: dict[str, list[Any]] = {}
        if plates:
            for row in conn.execute(_PLATES, {"plates": plates}):
                self.plates.setdefault(row.plate, []).append(row)
        lanes = sorted({a.lane_key for a in addresses if a.lane_key and not a.number})
        self.lanes: dict[str, Any] = {}
        if lanes:
            rows = conn.execute(_LANES, {"lo": lanes, "hi": [_upper(k) for k in lanes]})
            self.lanes = {row.lane: row for row in rows}
        names = {a.road for a in addresses if a.road in roads}
        names |= {a.crossing for a in addresses if a.crossing in roads}
        names |= {k for k in lanes if k in roads and k not in self.lanes}  # alley streets
        self.streets: dict[str, Any] = {}
        if names:
            rows = conn.execute(_STREETS, {"names": sorted(names)})
            self.streets = {row.name: row for row in rows}
        pairs = sorted({(a.road, a.crossing) for a in addresses
                        if a.road and a.crossing and not a.lane and not a.number})
        self.crossings: dict[tuple[str, str], Any] = {}
        if pairs:
            rows = conn.execute(_CROSSINGS, {"a": [p[0] for p in pairs],
                                             "b": [p[1] for p in pairs]})
            self.crossings = {(row.a, row.b): row for row in rows}
        self._areas: list[Any] | None = None

    def areas(self) -> list[Any]:
        if self._areas is None:
            self._areas = list(self.conn.execute(_AREAS))
        return self._areas

    def near(self, wanted: dict[int, tuple[str, int, int]]
             ) -> dict[int, list[dict[str, Any]]]:
        """For each index, the buildings of its road nearest its lane and number (each
        distinct question asked once: an import repeats them)."""
        asks = sorted(set(wanted.values()))
        found: dict[int, list[dict[str, Any]]] = {}
        if asks:
            rows = self.conn.execute(_NEAR, {
                "i": list(range(len(asks))), "lo": [a[0] for a in asks],
                "hi": [_upper(a[0]) for a in asks], "n1": [a[1] for a in asks],
                "n2": [a[2] for a in asks]})
            for row in rows:
                found.setdefault(row.i, []).append(
                    {"layer": "buildings", "id": int(row.id), "label": row.address})
        number = {ask: n for n, ask in enumerate(asks)}
        return {i: [dict(c) for c in found.get(number[ask], [])] for i, ask in wanted.items()}

    def street(self, name: str) -> dict[str, Any] | None:
        row = self.streets.get(name)
        return None if row is None else {"layer": "streets", "id": int(row.id), "label": name}


def _number(part: str | None) -> int:
    return int(part[:-1]) if part else 0


def _decide(a: Address, twin: _Twin, near: dict[int, tuple[str, int, int]], i: int,
            said: str) -> Placement:
    """The rules of the module docstring, for one address; ``near`` collects the indexes
    whose candidates are the buildings nearest a number (read afterwards for the batch)."""
    if a.road is None:
        said = normalise(said)
        named = [{"layer": "residential_areas", "id": int(r.id), "label": r.name}
                 for r in twin.areas()
                 if r.name in said or (r.committee and r.committee in said)
                 or (len(r.name) > 4 and r.name.removesuffix("居民区") in said)][:5]
        return _queued("no road recognised in the address", "地址中未识别出道路",
                       candidates=named)
    if a.plate:
        rows = twin.plates.get(a.plate, [])
        if len(rows) == 1:
            (row,) = rows
            return Placement(True, "building", float(row.lon), float(row.lat), "buildings",
                             int(row.id), a.plate, f"door plate {a.plate} is one building",
                             f"门牌{a.plate}唯一对应一栋建筑")
        if rows:
            return _queued(f"door plate {a.plate} is on {len(rows)} buildings: choose one",
                           f"门牌{a.plate}对应{len(rows)}栋建筑，请人工选择", a.plate,
                           [_building(r) for r in rows[:5]])
        near[i] = ((a.road, _number(a.lane), _number(a.number)) if a.lane
                   else (a.road, _number(a.number), 0))
        return _queued(f"no building has door plate {a.plate}", f"未找到门牌{a.plate}")
    if a.lane_key:
        lane = twin.lanes.get(a.lane_key)
        if lane is not None:
            near[i] = (a.lane_key, 0, 0)  # its buildings, by number
            return Placement(True, "lane", float(lane.lon), float(lane.lat), None, None,
                             a.lane_key,
                             f"lane {a.lane_key} without a number: centre of its "
                             f"{lane.n} buildings",
                             f"仅有弄号{a.lane_key}，定位于该弄{lane.n}栋建筑的中心")
        alley = twin.streets.get(a.lane_key)
        if alley is not None:
            return Placement(True, "lane", float(alley.lon), float(alley.lat), "streets",
                             int(alley.id), a.lane_key,
                             f"lane {a.lane_key} without a number: middle of the alley",
                             f"仅有弄号{a.lane_key}，定位于该弄中段")
        near[i] = (a.road, _number(a.lane), 0)
        return _queued(f"no lane {a.lane_key} in the twin", f"未找到{a.lane_key}")
    if a.crossing:
        both = [s for s in (twin.street(a.road), twin.street(a.crossing)) if s]
        at = twin.crossings.get((a.road, a.crossing))
        key = f"{a.road}与{a.crossing}"
        if len(both) < 2:
            return _queued(f"{key}: a road is not in the twin", f"{key}：道路不在孪生中",
                           candidates=both)
        if at is None:
            return _queued(f"{a.road} and {a.crossing} do not meet",
                           f"{a.road}与{a.crossing}不相交", candidates=both)
        if at.spread > CROSSING_SPREAD_M:
            return _queued(f"{a.road} and {a.crossing} meet in more than one place",
                           f"{a.road}与{a.crossing}有多处交汇", candidates=both)
        return Placement(True, "crossing", float(at.lon), float(at.lat), "streets",
                         int(at.id), key, f"crossing of {a.road} and {a.crossing}",
                         f"{a.road}与{a.crossing}交叉口")
    row = twin.streets.get(a.road)
    if row is None:
        return _queued(f"road {a.road} is not in the twin", f"孪生中没有道路{a.road}")
    return Placement(True, "street", float(row.lon), float(row.lat), "streets", int(row.id),
                     a.road, f"only the road {a.road}: the middle of it",
                     f"仅有路名{a.road}，定位于道路中段")


def road_names(conn: Connection) -> set[str]:
    """The twin's street names: what a road in an address is read against."""
    return {str(name) for name in conn.execute(_ROADS).scalars()}


def place_many(conn: Connection, texts: Iterable[str]) -> list[Placement]:
    """Place a batch of address texts with a handful of queries, whatever its size."""
    said = list(texts)
    roads = road_names(conn)
    addresses = [parse_address(t, roads) for t in said]
    twin = _Twin(conn, addresses, roads)
    near: dict[int, tuple[str, int, int]] = {}
    out = [_decide(a, twin, near, i, t)
           for i, (a, t) in enumerate(zip(addresses, said, strict=True))]
    for i, found in twin.near(near).items():
        if found:
            out[i] = replace(out[i], candidates=found)
    return out


def place(conn: Connection, address: str) -> Placement:
    """Place one address text: the batch of one, so both always agree."""
    return place_many(conn, [address])[0]
