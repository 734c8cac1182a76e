"""CQL2 filters run against the sample twin and agree with the same selection made another way.

Each filter is translated by twin.features.cql and run in PostgreSQL; the expected ids come
from Python over the rows (attributes, tags, times) or shapely (spatial predicates), never from the
translation itself, and never from a hard-coded count.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import shapely
from sqlalchemy import Connection, text

from tests.conftest import Database, Server
from twin.errors import InvalidInput
from twin.features.cql import CONFORMANCE, SqlFilter, parse_filter, queryables
from twin.registry import all_layers, get_layer

INJECTION = "x'; DROP TABLE twin.features; --"
Row = dict[str, Any]


@pytest.fixture(scope="module")
def twin(server: Server, sample_template: str) -> Iterator[Database]:
    """The sample twin, with some charging points renamed (so they have a newer version)."""
    database = server.create(f"twin_cql_{uuid.uuid4().hex[:10]}", template=sample_template)
    with database.app.begin() as conn:
        conn.execute(text("UPDATE twin.features SET name = CASE WHEN id % 3 = 0 THEN :evil "
                          "ELSE 'Station ' || id END "
                          "WHERE layer = 'charging_points' AND id % 2 = 0"), {"evil": INJECTION})
    yield database
    server.drop(database)


_ROWS: dict[tuple[str, str], list[Row]] = {}


def rows(db: Database, layer: str) -> list[Row]:
    """Every feature of the layer as plain Python values, geometry as shapely."""
    if (db.name, layer) not in _ROWS:
        with db.app.connect() as conn:
            found = conn.execute(text(
                "SELECT id, name, props, tags, grid_code, area_code, version, valid_from, "
                "ST_AsBinary(geom) AS wkb FROM twin.features WHERE layer = :layer"),
                {"layer": layer}).mappings().all()
        _ROWS[db.name, layer] = [{**r, "geom": shapely.from_wkb(bytes(r["wkb"]))} for r in found]
    return _ROWS[db.name, layer]


def driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under SQLAlchemy's, which takes %(name)s placeholders."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def run(db: Database, layer: str, sql_filter: SqlFilter) -> set[int]:
    with db.app.connect() as conn:
        cursor = driver(conn).execute(
            f"SELECT f.id FROM twin.features f WHERE f.layer = %(layer)s AND ({sql_filter.sql})",
            {**sql_filter.params, "layer": layer})
        return {row[0] for row in cursor.fetchall()}


def select(db: Database, layer: str, cql: str, lang: str = "cql2-text") -> set[int]:
    """The ids the filter selects, after checking every value is bound, none inlined."""
    sql_filter = parse_filter(cql, lang, get_layer(layer))
    placeholders = re.findall(r"%\((\w+)\)s", sql_filter.sql)
    assert set(placeholders) == set(sql_filter.params)
    assert "%" not in re.sub(r"%\(\w+\)s", "", sql_filter.sql)
    return run(db, layer, sql_filter)


def expect(db: Database, layer: str, keep: Callable[[Row], bool]) -> set[int]:
    return {row["id"] for row in rows(db, layer) if keep(row)}


def attr(row: Row, key: str) -> Any:
    return row["props"].get(key)


def nonnull(row: Row, key: str) -> bool:
    return attr(row, key) is not None


# (layer, cql2-text, the same selection in Python)
CASES: list[tuple[str, str, Callable[[Row], bool]]] = [
    ("buildings", "floors > 5", lambda r: attr(r, "floors") > 5),
    ("buildings", "floors >= 5 AND households < 10",
     lambda r: attr(r, "floors") >= 5 and attr(r, "households") < 10),
    ("buildings", "floors <= 2 OR elderly = 0",
     lambda r: attr(r, "floors") <= 2 or attr(r, "elderly") == 0),
    ("buildings", "use = 'public'", lambda r: attr(r, "use") == "public"),
    ("buildings", "use <> 'residential'", lambda r: attr(r, "use") != "residential"),
    ("buildings", "NOT (floors > 5 OR use = 'public')",
     lambda r: not (attr(r, "floors") > 5 or attr(r, "use") == "public")),
    ("buildings", "floors BETWEEN 3 AND 6", lambda r: 3 <= attr(r, "floors") <= 6),
    ("buildings", "floors NOT BETWEEN 3 AND 6", lambda r: not 3 <= attr(r, "floors") <= 6),
    ("buildings", "use IN ('public', 'commercial')",
     lambda r: attr(r, "use") in ("public", "commercial")),
    ("buildings", "use NOT IN ('public', 'commercial')",
     lambda r: attr(r, "use") not in ("public", "commercial")),
    ("buildings", "built_year IS NULL", lambda r: not nonnull(r, "built_year")),
    ("buildings", "built_year IS NOT NULL AND built_year < 1960",
     lambda r: nonnull(r, "built_year") and attr(r, "built_year") < 1960),
    ("buildings", "address LIKE '%弄1号'",
     lambda r: nonnull(r, "address") and attr(r, "address").endswith("弄1号")),
    ("buildings", "address NOT LIKE '%弄1_号'",
     lambda r: nonnull(r, "address") and not re.search(r"弄1.号$", attr(r, "address"))),
    ("buildings", "CASEI(use) = CASEI('PUBLIC')", lambda r: attr(r, "use") == "public"),
    ("buildings", "CASEI(use) LIKE CASEI('Res%')", lambda r: attr(r, "use") == "residential"),
    ("buildings", "CASEI(use) IN (CASEI('MIXED'), 'commercial')",
     lambda r: attr(r, "use") in ("mixed", "commercial")),
    # property-property, literal on the left, arithmetic
    ("buildings", "elderly > households", lambda r: attr(r, "elderly") > attr(r, "households")),
    ("buildings", "10 < floors", lambda r: attr(r, "floors") > 10),
    ("buildings", "floors * 3 > households",
     lambda r: attr(r, "floors") * 3 > attr(r, "households")),
    ("buildings", "households - elderly <= 1",
     lambda r: attr(r, "households") - attr(r, "elderly") <= 1),
    ("buildings", "-floors < -10", lambda r: -attr(r, "floors") < -10),
    ("buildings", "elderly / households >= 0.9",
     lambda r: attr(r, "households") != 0 and attr(r, "elderly") / attr(r, "households") >= 0.9),
    # tags: the array functions, and the tags = 'k=v' convenience
    ("buildings", "tags = 'project=征收地块'", lambda r: "project=征收地块" in r["tags"]),
    ("buildings", "A_CONTAINS(tags, ('class=房屋土地', 'project=适老化改造'))",
     lambda r: {"class=房屋土地", "project=适老化改造"} <= set(r["tags"])),
    ("buildings", "A_OVERLAPS(tags, ('老旧高层', 'project=旧住房修缮'))",
     lambda r: bool({"老旧高层", "project=旧住房修缮"} & set(r["tags"]))),
    ("buildings", "A_CONTAINEDBY(tags, ('class=房屋土地', 'project=征收地块'))",
     lambda r: set(r["tags"]) <= {"class=房屋土地", "project=征收地块"}),
    ("buildings", "A_EQUALS(tags, ('project=征收地块', 'class=房屋土地'))",
     lambda r: set(r["tags"]) == {"class=房屋土地", "project=征收地块"}),
    ("buildings", "NOT A_CONTAINS(tags, ('project=征收地块'))",
     lambda r: "project=征收地块" not in r["tags"]),
    # booleans, floats, enumerations on other layers
    ("charging_points", "remediated = TRUE", lambda r: attr(r, "remediated") is True),
    ("charging_points", "remediated <> true AND sockets >= 10",
     lambda r: attr(r, "remediated") is False and attr(r, "sockets") >= 10),
    ("charging_points", "state IN ('hazard', 'planned')",
     lambda r: attr(r, "state") in ("hazard", "planned")),
    ("fire_passages", "width_m > 4.5", lambda r: attr(r, "width_m") > 4.5),
    ("fire_passages", "blocked_by IS NOT NULL", lambda r: nonnull(r, "blocked_by")),
    ("streets", "road_class = 'main' OR width_m < 8.5",
     lambda r: attr(r, "road_class") == "main" or attr(r, "width_m") < 8.5),
    ("streets", "fire_engine = FALSE", lambda r: attr(r, "fire_engine") is False),
    ("waste_points", "off_hour = TRUE AND bins > 3",
     lambda r: attr(r, "off_hour") is True and attr(r, "bins") > 3),
    ("micro_grids", "code LIKE '%-0_'", lambda r: bool(re.fullmatch(r".*-0.", attr(r, "code")))),
    ("residential_areas", "model_waste_area = TRUE", lambda r: attr(r, "model_waste_area")),
    # common fields
    ("charging_points", "name LIKE 'Station %'",
     lambda r: (r["name"] or "").startswith("Station ")),
    ("charging_points", "CASEI(name) LIKE 'station %2'",
     lambda r: (r["name"] or "").lower().startswith("station ")
     and (r["name"] or "").endswith("2")),
    ("charging_points", "name IS NULL", lambda r: r["name"] is None),
    ("charging_points", "version = 2", lambda r: r["version"] == 2),
    ("charging_points", "version > 1 AND id > 0", lambda r: r["version"] > 1),
    ("charging_points", "\"name\" = 'x''; DROP TABLE twin.features; --'",
     lambda r: r["name"] == INJECTION),
    ("waste_points", "micro_grid LIKE '%-01' OR residential_area = '310115010002'",
     lambda r: (r["grid_code"] or "").endswith("-01") or r["area_code"] == "310115010002"),
]


@pytest.mark.parametrize(("layer", "cql", "keep"), CASES, ids=[c[1] for c in CASES])
def test_text_filter_selects_what_python_selects(twin: Database, layer: str, cql: str,
                                                 keep: Callable[[Row], bool]) -> None:
    expected = expect(twin, layer, keep)
    assert 0 < len(expected) < len(rows(twin, layer)), "the case should select some, not all"
    assert select(twin, layer, cql) == expected


# (layer, cql2-json, cql2-text with the same meaning)
JSON_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("buildings", {"op": "and", "args": [
        {"op": ">=", "args": [{"property": "floors"}, 5]},
        {"op": "<", "args": [{"property": "households"}, 10]}]},
     "floors >= 5 AND households < 10"),
    ("buildings", {"op": "not", "args": [{"op": "in", "args": [
        {"property": "use"}, ["public", "commercial"]]}]}, "use NOT IN ('public', 'commercial')"),
    ("buildings", {"op": "between", "args": [{"property": "floors"}, 3, 6]},
     "floors BETWEEN 3 AND 6"),
    ("buildings", {"op": "like", "args": [{"op": "casei", "args": [{"property": "use"}]},
                                          {"op": "casei", "args": ["Res%"]}]},
     "CASEI(use) LIKE CASEI('Res%')"),
    ("buildings", {"op": "isNull", "args": [{"property": "built_year"}]}, "built_year IS NULL"),
    ("buildings", {"op": "a_overlaps", "args": [{"property": "tags"}, ["老旧高层", "烂尾楼"]]},
     "A_OVERLAPS(tags, ('老旧高层', '烂尾楼'))"),
    ("buildings", {"op": "a_equals", "args": [{"property": "tags"}, ["class=房屋土地"]]},
     "A_EQUALS(tags, ('class=房屋土地'))"),
    ("buildings", {"op": ">", "args": [{"op": "*", "args": [{"property": "floors"}, 3]},
                                       {"property": "households"}]}, "floors * 3 > households"),
    ("charging_points", {"op": "=", "args": [{"property": "remediated"}, True]},
     "remediated = TRUE"),
    ("charging_points", {"op": "=", "args": [{"property": "name"}, INJECTION]},
     "name = 'x''; DROP TABLE twin.features; --'"),
]


@pytest.mark.parametrize(("layer", "document", "cql"), JSON_CASES,
                         ids=[c[2] for c in JSON_CASES])
def test_json_filter_selects_what_text_selects(twin: Database, layer: str,
                                               document: dict[str, Any], cql: str) -> None:
    from_json = select(twin, layer, json.dumps(document, ensure_ascii=False), "cql2-json")
    assert from_json == select(twin, layer, cql)
    assert 0 < len(from_json) < len(rows(twin, layer))


def test_injection_is_a_value(twin: Database) -> None:
    sql_filter = parse_filter("name = 'x''; DROP TABLE twin.features; --'", "cql2-text",
                              get_layer("charging_points"))
    assert "DROP" not in sql_filter.sql and "'x" not in sql_filter.sql
    assert list(sql_filter.params.values()) == [INJECTION]
    named = run(twin, "charging_points", sql_filter)
    assert named == expect(twin, "charging_points", lambda r: r["name"] == INJECTION)
    assert named  # the fixture named some features so
    with twin.app.connect() as conn:  # and the table is still there
        assert conn.execute(text("SELECT count(*) FROM twin.features")).scalar()


def test_timestamps_and_dates_compare_with_updated(twin: Database) -> None:
    points = rows(twin, "charging_points")
    oldest = min(r["valid_from"] for r in points)
    assert oldest < max(r["valid_from"] for r in points)  # the fixture's renames are newer
    stamp = oldest.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert select(twin, "charging_points", f"updated > TIMESTAMP('{stamp}')") == \
        expect(twin, "charging_points", lambda r: r["valid_from"] > oldest)
    assert select(twin, "charging_points", f"updated <= TIMESTAMP('{stamp}')") == \
        expect(twin, "charging_points", lambda r: r["valid_from"] <= oldest)
    day = oldest.astimezone(UTC).date()
    for cql, keep in [
        (f"updated >= DATE('{day}')", lambda r: r["valid_from"].astimezone(UTC).date() >= day),
        (f"updated < DATE('{day}')", lambda r: r["valid_from"].astimezone(UTC).date() < day),
        (f"updated = DATE('{day}')", lambda r: r["valid_from"].astimezone(UTC).date() == day),
    ]:
        assert select(twin, "charging_points", cql) == expect(twin, "charging_points", keep)
    as_json = {"op": ">", "args": [{"property": "updated"}, {"timestamp": stamp}]}
    assert select(twin, "charging_points", json.dumps(as_json), "cql2-json") == \
        expect(twin, "charging_points", lambda r: r["valid_from"] > oldest)


def _extent(db: Database, layer: str) -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = shapely.GeometryCollection([r["geom"] for r in rows(db, layer)]).bounds
    return minx, miny, maxx, maxy


def _quarter(db: Database, layer: str) -> shapely.Polygon:
    """The south-west quarter of the layer's extent."""
    minx, miny, maxx, maxy = _extent(db, layer)
    return shapely.box(minx, miny, (minx + maxx) / 2, (miny + maxy) / 2)


def _wkt(geometry: shapely.Geometry) -> str:
    return str(shapely.to_wkt(geometry, rounding_precision=-1))


def spatial_cases(db: Database) -> list[tuple[str, str, Callable[[shapely.Geometry], bool]]]:
    quarter = _quarter(db, "buildings")
    minx, miny, maxx, maxy = quarter.bounds
    building = rows(db, "buildings")[len(rows(db, "buildings")) // 2]["geom"]
    inside = building.representative_point()
    street = rows(db, "streets")[len(rows(db, "streets")) // 3]["geom"]
    sminx, sminy, smaxx, smaxy = _extent(db, "streets")
    diagonal = shapely.LineString([(sminx, sminy), (smaxx, smaxy)])
    cx, cy = quarter.centroid.x, quarter.centroid.y
    d = (maxx - minx) / 4
    multipoint = shapely.MultiPoint([inside, (cx, cy)])
    multiline = shapely.MultiLineString([[(minx, miny), (maxx, maxy)],
                                         [(minx, maxy), (maxx, miny)]])
    multipolygon = shapely.MultiPolygon([shapely.box(minx, miny, minx + d, miny + d),
                                         shapely.box(maxx - d, maxy - d, maxx, maxy)])
    collection = shapely.GeometryCollection([inside, shapely.box(cx, cy, cx + d, cy + d)])
    return [
        ("buildings", f"S_INTERSECTS(geometry, BBOX({minx}, {miny}, {maxx}, {maxy}))",
         quarter.intersects),
        ("buildings", f"S_INTERSECTS(geometry, {_wkt(inside)})", inside.intersects),
        ("buildings", f"S_CONTAINS(geometry, {_wkt(inside)})", lambda g: g.contains(inside)),
        ("buildings", f"S_WITHIN(geometry, {_wkt(quarter)})", lambda g: g.within(quarter)),
        ("buildings", f"S_OVERLAPS(geometry, {_wkt(quarter)})", quarter.overlaps),
        ("buildings", f"S_DISJOINT(geometry, {_wkt(quarter)})", quarter.disjoint),
        ("buildings", f"S_EQUALS(geometry, {_wkt(building)})", building.equals),
        ("streets", f"S_TOUCHES(geometry, {_wkt(street)})", street.touches),
        ("streets", f"S_CROSSES(geometry, {_wkt(diagonal)})", diagonal.crosses),
        ("buildings", f"S_INTERSECTS(geometry, {_wkt(multipoint)})", multipoint.intersects),
        ("buildings", f"S_INTERSECTS(geometry, {_wkt(multiline)})", multiline.intersects),
        ("buildings", f"S_INTERSECTS(geometry, {_wkt(multipolygon)})", multipolygon.intersects),
        ("buildings", f"S_INTERSECTS(geometry, {_wkt(collection)})", collection.intersects),
        ("buildings", f"S_INTERSECTS({_wkt(quarter)}, geometry)", quarter.intersects),
        ("buildings", f"BBOX(geometry, {minx}, {miny}, {maxx}, {maxy})", quarter.intersects),
        ("buildings", json.dumps({"op": "s_intersects", "args": [
            {"property": "geometry"}, {"bbox": [minx, miny, maxx, maxy]}]}), quarter.intersects),
        ("buildings", json.dumps({"op": "s_within", "args": [
            {"property": "geometry"}, shapely.geometry.mapping(quarter)]}),
         lambda g: g.within(quarter)),
        ("streets", json.dumps({"op": "s_crosses", "args": [
            {"property": "geometry"}, shapely.geometry.mapping(diagonal)]}), diagonal.crosses),
    ]


def test_spatial_functions_agree_with_shapely(twin: Database) -> None:
    for layer, cql, keep in spatial_cases(twin):
        expected = {r["id"] for r in rows(twin, layer) if keep(r["geom"])}
        assert expected, cql
        lang = "cql2-json" if cql.startswith("{") else "cql2-text"
        assert select(twin, layer, cql, lang) == expected, cql


def _within_metres(db: Database, layer: str, wkt: str, metres: float) -> set[int]:
    """The independent answer: geodesic distance, no index, no bounding box."""
    with db.app.connect() as conn:
        return set(conn.execute(text(
            "SELECT id FROM twin.features WHERE layer = :layer AND ST_Distance(geom::geography, "
            "ST_GeomFromText(:wkt, 4326)::geography) <= :metres"),
            {"layer": layer, "wkt": wkt, "metres": metres}).scalars())


def test_dwithin_is_metres_on_the_ground(twin: Database) -> None:
    minx, miny, maxx, maxy = _extent(twin, "waste_points")
    centre = shapely.Point((minx + maxx) / 2, (miny + maxy) / 2)
    edge = shapely.LineString([(minx, miny), ((minx + maxx) / 2, maxy)])
    for geometry, metres, units in [(centre, 150, ""), (centre, 600, ", 'm'"),
                                    (edge, 80, ", meters"), (centre, 0, "")]:
        expected = _within_metres(twin, "waste_points", _wkt(geometry), metres)
        cql = f"S_DWITHIN(geometry, {_wkt(geometry)}, {metres}{units})"
        assert select(twin, "waste_points", cql) == expected, cql
        if metres:
            assert 0 < len(expected) < len(rows(twin, "waste_points")), cql
    document = {"op": "s_dwithin", "args": [{"property": "geometry"},
                                            shapely.geometry.mapping(centre), 300]}
    assert select(twin, "waste_points", json.dumps(document), "cql2-json") == \
        _within_metres(twin, "waste_points", _wkt(centre), 300)


def test_dwithin_uses_the_spatial_index(twin: Database) -> None:
    sql_filter = parse_filter("S_DWITHIN(geometry, POINT(121.51 31.195), 100)", "cql2-text",
                              get_layer("buildings"))
    assert "f.geom && ST_Expand(" in sql_filter.sql
    with twin.app.connect() as conn:
        driver(conn).execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(row[0] for row in driver(conn).execute(
            f"EXPLAIN SELECT f.id FROM twin.features f WHERE f.layer = 'buildings' "
            f"AND ({sql_filter.sql})", sql_filter.params).fetchall())
    assert "geom_idx" in plan, plan


def test_every_queryable_is_valid_sql(twin: Database) -> None:
    """IS NULL / IS NOT NULL over every row runs each column mapping and cast on real data."""
    for layer in all_layers().values():
        names = queryables(layer, "http://x")["properties"]
        every = " AND ".join(f"({name} IS NULL OR {name} IS NOT NULL)" for name in names)
        assert select(twin, layer.name, every) == expect(twin, layer.name, lambda r: True)


def test_queryables_document() -> None:
    layer = get_layer("charging_points")
    doc = queryables(layer, "https://twin.example")
    assert doc["$schema"] == "https://json-schema.org/draft/2019-09/schema"
    assert doc["$id"] == "https://twin.example/collections/charging_points/queryables"
    assert doc["type"] == "object" and doc["additionalProperties"] is False
    assert doc["title"] == layer.title
    props = doc["properties"]
    assert set(props) == set(layer.attributes.model_fields) | {
        "id", "name", "tags", "micro_grid", "residential_area", "version", "updated", "geometry"}
    assert props["geometry"]["format"] == "geometry-point"
    assert props["updated"] == {**props["updated"], "type": "string", "format": "date-time"}
    assert props["tags"]["type"] == "array" and props["tags"]["items"]["type"] == "string"
    assert "condition=完好" in props["tags"]["items"]["enum"]
    assert props["state"]["enum"] == ["safe", "hazard", "out_of_service", "planned"]
    assert props["state"]["title"] == "状态 State"
    assert props["sockets"]["type"] == "integer" and props["sockets"]["maximum"] == 500
    assert props["remediated"]["type"] == "boolean"
    assert props["remediated"]["description"] == "in the report's remediation list"
    buildings = queryables(get_layer("buildings"), "")["properties"]
    assert buildings["built_year"]["type"] == "integer"  # int | None is an integer
    assert buildings["geometry"]["format"] == "geometry-polygon"
    assert queryables(get_layer("streets"), "")["properties"]["width_m"]["type"] == "number"
    assert queryables(get_layer("micro_grids"), "")["properties"]["geometry"]["format"] == \
        "geometry-multipolygon"


def test_conformance_uris() -> None:
    assert len(set(CONFORMANCE)) == len(CONFORMANCE)
    for uri in CONFORMANCE:
        assert re.fullmatch(r"http://www\.opengis\.net/spec/(ogcapi-features-3|cql2)/1\.0/"
                            r"conf/[a-z0-9-]+", uri), uri


def test_param_prefix_keeps_two_filters_apart(twin: Database) -> None:
    layer = get_layer("buildings")
    first = parse_filter("floors > 5", "cql2-text", layer, param_prefix="a")
    second = parse_filter("use = 'public'", "cql2-text", layer, param_prefix="b")
    both = SqlFilter(f"{first.sql} AND {second.sql}", {**first.params, **second.params})
    assert run(twin, "buildings", both) == expect(
        twin, "buildings", lambda r: attr(r, "floors") > 5 and attr(r, "use") == "public")


# (layer, lang, filter, words the reason must contain)
ERRORS: list[tuple[str, str, str, str]] = [
    ("buildings", "cql2-text", "floors >> 3", "line 1, column 9"),
    ("buildings", "cql2-text", "floors > 3 AND", "ends too early"),
    ("buildings", "cql2-text", "floors @ 3", "unexpected character '@'"),
    ("buildings", "cql2-text", "name = 'unterminated", "syntax error"),
    ("buildings", "cql2-text", "nope = 1", "unknown property 'nope'"),
    ("buildings", "cql2-text", "remediated = TRUE", "queryables of buildings: address"),
    ("buildings", "cql2-text", "ACCENTI(name) = 'a'", "unknown function or operator 'accenti'"),
    ("buildings", "cql2-text", "MYFUNC(floors) > 1", "'myfunc'"),
    ("buildings", "cql2-text", "S_DWITHIN(geometry, POINT(121.5 31.2), 10, feet)",
     "units 'feet'"),
    ("buildings", "cql2-text", "S_DWITHIN(geometry, POINT(121.5 31.2), -10)", "metres >= 0"),
    ("buildings", "cql2-text", "floors = 'three'", "cannot compare floors (an integer)"),
    ("buildings", "cql2-text", "floors LIKE '1%'", "LIKE needs a string"),
    ("buildings", "cql2-text", "address LIKE address", "string literal"),
    ("buildings", "cql2-text", "address LIKE 'a\\'", "escape character"),
    ("buildings", "cql2-text", "use = 'palace'", "never 'palace'"),
    ("buildings", "cql2-text", "use IN ('public', 'palace')", "never 'palace'"),
    ("buildings", "cql2-text", "floors + use > 1", "arithmetic needs numbers"),
    ("buildings", "cql2-text", "CASEI(floors) = 'a'", "CASEI needs a string"),
    ("buildings", "cql2-text", "updated > '2025-01-01'", "TIMESTAMP("),
    ("buildings", "cql2-text", "updated > TIMESTAMP('2025-13-01T00:00:00Z')", "not a timestamp"),
    ("buildings", "cql2-text", "geometry = POINT(1 2)", "S_EQUALS"),
    ("buildings", "cql2-text", "S_INTERSECTS(geometry, floors)", "needs geometries"),
    ("buildings", "cql2-text", "S_INTERSECTS(geometry, POINT(200 1))", "longitude"),
    ("buildings", "cql2-text", "S_INTERSECTS(geometry, SRID=3857;POINT(1 1))", "SRID 3857"),
    ("buildings", "cql2-text", "S_WITHIN(geometry, POLYGON((0 0, 1 1, 0 1, 1 0, 0 0)))",
     "Self-intersection"),
    ("buildings", "cql2-text", "S_INTERSECTS(geometry, BBOX(3, 0, 1, 1))", "minx <= maxx"),
    ("buildings", "cql2-text", "tags IN ('a', 'b')", "A_OVERLAPS"),
    ("buildings", "cql2-text", "A_CONTAINS(tags, (1, 2))", "hold strings"),
    ("buildings", "cql2-text", "A_CONTAINS(floors, ('a'))", "compares arrays"),
    ("buildings", "cql2-text", "updated T_AFTER TIMESTAMP('2025-01-01T00:00:00Z')",
     "T_AFTER"),
    ("buildings", "cql2-text", "floors > 1e999", "finite"),
    ("buildings", "cql2-text", "floors = TRUE", "a boolean"),
    ("charging_points", "cql2-text", "remediated > FALSE", "does not apply to a boolean"),
    ("buildings", "cql2-json", "{\"op\": ", "not JSON"),
    ("buildings", "cql2-json", json.dumps({"op": "accenti", "args": ["a"]}), "'accenti'"),
    ("buildings", "cql2-json", json.dumps({"op": "=", "args": [{"property": "floors"}]}),
     "not valid CQL2 JSON"),
    ("buildings", "cql2-json", json.dumps({"op": "in", "args": [{"property": "use"}, []]}),
     "non-empty list"),
    ("buildings", "cql2-json", json.dumps({"op": "s_intersects", "args": [
        {"property": "geometry"}, {"bbox": [1, 2]}]}), "4 or 6 numbers"),
    ("buildings", "cql2-json", json.dumps({"op": "s_dwithin", "args": [
        {"property": "geometry"}, {"type": "Point", "coordinates": [121.5, 31.2]}, 5, "km"]}),
     "units 'km'"),
    ("buildings", "cql2-json", json.dumps({"op": "s_intersects", "args": [
        {"property": "geometry"}, {"type": "Point", "coordinates": "x"}]}), "geometry literal"),
    ("buildings", "cql2-json", json.dumps({"property": "floors"}), "expected a condition"),
    ("buildings", "ecql", "floors > 3", "unknown filter-lang 'ecql'"),
]


@pytest.mark.parametrize(("layer", "lang", "cql", "words"), ERRORS,
                         ids=[f"{e[1]}: {e[2]}" for e in ERRORS])
def test_errors_are_invalid_input_with_a_reason(layer: str, lang: str, cql: str,
                                                words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filter(cql, lang, get_layer(layer))
    (problem,) = caught.value.problems
    assert problem.field == "filter" and problem.reason_zh
    assert words in problem.reason, problem.reason
    assert problem.reason in str(caught.value)


@pytest.mark.parametrize("cql", [
    "", "(((", "'", "POINT(1 2)", "S_INTERSECTS(", "floors BETWEEN 1", "NOT", "floors IN ()",
    "A_CONTAINS(tags)", "S_DWITHIN(geometry, POINT(1 2))", "BBOX(geometry, 1, 2)", "-",
    "NOT (" * 3000 + "floors > 1" + ")" * 3000, "INTERVAL('2025-01-01T00:00:00Z', "
    "'2025-02-01T00:00:00Z') = updated",
])
def test_garbage_text_is_invalid_input(cql: str) -> None:
    with pytest.raises(InvalidInput):
        parse_filter(cql, "cql2-text", get_layer("buildings"))


@pytest.mark.parametrize("document", [
    "null", "[]", "1", "\"floors\"", "{}", "{\"op\": \"and\", \"args\": []}",
    "{\"op\": \"not\", \"args\": []}", "{\"op\": \"=\", \"args\": [1, 2, 3]}",
    "{\"op\": \"like\", \"args\": [{\"property\": \"address\"}]}", "{\"op\": 1, \"args\": []}",
    "{\"op\": \"in\", \"args\": [{\"property\": \"floors\"}, 3]}",
    "{\"filter-lang\": \"cql2-text\", \"filter\": {}}",
    "[" * 100000 + "]" * 100000,
    json.dumps({"op": "not", "args": [{"op": "not", "args": [{}]}]}),
])
def test_garbage_json_is_invalid_input(document: str) -> None:
    with pytest.raises(InvalidInput):
        parse_filter(document, "cql2-json", get_layer("buildings"))


def test_json_true_and_include_select_everything(twin: Database) -> None:
    everything = expect(twin, "streets", lambda r: True)
    assert select(twin, "streets", "true", "cql2-json") == everything
    assert select(twin, "streets", "INCLUDE") == everything
    assert select(twin, "streets", "EXCLUDE") == set()


def test_created_timestamps_are_read_strictly() -> None:
    sql_filter = parse_filter("updated > TIMESTAMP('2025-01-31T08:00:00+08:00')", "cql2-text",
                              get_layer("buildings"))
    assert list(sql_filter.params.values()) == [datetime(2025, 1, 31, 0, 0, tzinfo=UTC)]
