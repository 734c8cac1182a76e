"""`twin export`: a layer to GeoPackage, GeoJSON, FlatGeobuf, CSV or zipped Shapefile, now or
as it was, in WGS-84 or a web map's datum, checked against SQL (and prcoords for the datums)."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import prcoords
import pyogrio
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import text

from tests.conftest import Database, run_twin
from twin.datum import from_wgs84
from twin.features.export import shapefile_names
from twin.registry import get_layer

COLUMNS = ["id", "name", "tags", "micro_grid", "residential_area", "version", "updated",
           "changed_by", "use", "floors", "households", "elderly", "built_year", "address"]


def _export(db: Database, *args: str) -> subprocess.CompletedProcess[str]:
    done = run_twin("export", *args, env=db.env())
    assert done.returncode == 0, done.stderr
    return done


def _ids(db: Database, sql: str, **params: Any) -> list[int]:
    with db.app.connect() as conn:
        return list(conn.execute(text(sql), params).scalars())


def _stamped(db: Database, when: datetime, sql: str) -> int:
    """One edit as the schema's owner, stamped ``when`` through twin.clock; its feature id."""
    with db.admin.begin() as conn:
        conn.execute(text("SELECT set_config('twin.clock', :t, true), "
                          "twin.set_context('pytest', 'admin')"), {"t": when.isoformat()})
        return int(conn.execute(text(sql)).scalar_one())


def test_the_present_buildings_as_a_geopackage(sample_db: Database, tmp_path: Path) -> None:
    path = tmp_path / "buildings.gpkg"
    done = _export(sample_db, "buildings", str(path))
    ids = _ids(sample_db, "SELECT id FROM twin.features WHERE layer = 'buildings' ORDER BY id")
    assert f"wrote {len(ids)} buildings features to {path}, as of now" in done.stdout

    info = pyogrio.read_info(path, layer="buildings")
    assert info["features"] == len(ids)
    assert list(info["fields"]) == COLUMNS
    types = dict(zip(info["fields"], info["ogr_types"], strict=True))
    assert types["floors"] == types["built_year"] == types["id"] == "OFTInteger64"
    assert types["updated"] == "OFTDateTime" and types["tags"] == "OFTString"
    assert info["geometry_type"] == "Polygon" and info["crs"] == "EPSG:4326"
    assert datetime.fromisoformat(info["layer_metadata"]["as_of"]).tzinfo is not None

    frame = pyogrio.read_dataframe(path)
    assert frame["id"].tolist() == ids
    with sample_db.app.connect() as conn:
        tagged = conn.execute(text(
            "SELECT id, array_to_string(tags, ','), (props->>'floors')::int FROM twin.features "
            "WHERE layer = 'buildings' AND cardinality(tags) > 1 ORDER BY id LIMIT 1")).one()
    row = frame.set_index("id").loc[tagged[0]]
    assert (row["tags"], row["floors"]) == (tagged[1], tagged[2])

    ogrinfo = subprocess.run(["ogrinfo", "-ro", "-so", str(path), "buildings"],
                             capture_output=True, text=True, check=True)
    assert f"Feature Count: {len(ids)}" in ogrinfo.stdout


def test_as_of_gives_the_layer_as_it_was(sample_db: Database, tmp_path: Path) -> None:
    loaded = _ids(sample_db, "SELECT id FROM twin.features WHERE layer = 'buildings' "
                             "ORDER BY id LIMIT 2")
    with sample_db.app.connect() as conn:
        start = conn.execute(text("SELECT max(valid_from) FROM twin.features")).scalar_one()
    updated, deleted = loaded
    old_floors = _ids(sample_db, "SELECT (props->>'floors')::int FROM twin.features "
                                 "WHERE id = :id", id=updated)[0]
    hour = timedelta(hours=1)
    floors = "UPDATE twin.features SET props = props || jsonb_build_object('floors', {}) " \
             f"WHERE id = {updated} RETURNING id"
    _stamped(sample_db, start + hour, floors.format(old_floors + 10))
    between = start + 2 * hour  # after the first edit, before the others
    _stamped(sample_db, start + 3 * hour, floors.format(old_floors + 20))
    _stamped(sample_db, start + 3 * hour, f"DELETE FROM twin.features WHERE id = {deleted} "
             "RETURNING id")
    inserted = _stamped(sample_db, start + 3 * hour,
                        "INSERT INTO twin.features (layer, name, props, geom) SELECT layer, "
                        "'新建 new', props, ST_Translate(geom, 0.00002, 0) FROM twin.features "
                        f"WHERE id = {updated} RETURNING id")

    path = tmp_path / "then.geojson"
    done = _export(sample_db, "buildings", str(path), "--as-of", between.isoformat())
    assert f"as of {between.isoformat()}" in done.stdout
    collection = json.loads(path.read_text(encoding="utf-8"))
    assert datetime.fromisoformat(collection["as_of"]) == between
    features = {f["properties"]["id"]: f["properties"] for f in collection["features"]}
    assert sorted(features) == _ids(
        sample_db, "SELECT feature_id FROM twin.feature_versions WHERE layer = 'buildings' "
                   "AND valid @> CAST(:t AS timestamptz) ORDER BY 1", t=between)
    assert features[updated]["floors"] == old_floors + 10 and features[updated]["version"] == 2
    assert deleted in features and inserted not in features
    assert isinstance(features[updated]["tags"], list)

    now = tmp_path / "now.geojson"
    _export(sample_db, "buildings", str(now))
    present = {f["properties"]["id"]: f["properties"]
               for f in json.loads(now.read_text(encoding="utf-8"))["features"]}
    assert present[updated]["floors"] == old_floors + 20
    assert deleted not in present and inserted in present


def test_before_the_twin_an_empty_file_with_the_schema(sample_db: Database,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "before.gpkg"
    done = _export(sample_db, "buildings", str(path), "--as-of", "2000-01-01T00:00:00+08:00")
    assert "note: the twin's history begins at" in done.stdout
    assert "wrote 0 buildings features" in done.stdout
    info = pyogrio.read_info(path, layer="buildings")
    assert info["features"] == 0 and list(info["fields"]) == COLUMNS
    assert info["geometry_type"] == "Polygon"


@pytest.mark.parametrize(("args", "message"), [
    (("buildings", "out.shp"), "its suffix .shp is not one of .gpkg, .geojson, .json, .fgb, "
                               ".csv, .zip (.shp.zip); a Shapefile is several files: name it "
                               ".shp.zip"),
    (("buildings", "out"), "its suffix (none) is not one of"),
    (("buildings", "out.kml"), "its suffix .kml is not one of"),
    (("buildings", "out.gpkg.zip"), "a .zip is a zipped Shapefile here, not a zipped .gpkg"),
    (("buildings", "out.csv", "--datum", "wgs84"), "unknown datum 'wgs84': one of gcj02, bd09"),
    (("buildings", "out.gpkg", "--datum", "GCJ-02"), "坐标偏移类型须为 gcj02 或 bd09"),
    (("nope", "out.gpkg"), "no layer 'nope'; layers: subdistricts, residential_areas"),
    (("buildings", "out.gpkg", "--as-of", "yesterday"), "is not an RFC 3339 time"),
    (("buildings", "out.gpkg", "--as-of", "2026-06-30T18:00:00"), "with an offset"),
])
def test_bad_input_is_a_clear_error_and_no_file(sample_db: Database, tmp_path: Path,
                                                args: tuple[str, ...], message: str) -> None:
    layer, name, *rest = args
    done = run_twin("export", layer, str(tmp_path / name), *rest, env=sample_db.env())
    assert done.returncode == 1
    assert message in " ".join(done.stderr.split()), done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []


# The twin's columns as SQL gives them, one query for any layer: what every format must hold.
_TWIN_SQL = """
    SELECT id, name, array_to_string(tags, ',') AS tags, grid_code AS micro_grid,
           area_code AS residential_area, version, valid_from AS updated, changed_by, props,
           ST_AsBinary(geom) AS wkb
    FROM twin.features WHERE layer = :layer ORDER BY id"""
GEOD = Geod(ellps="WGS84")


def _twin(db: Database, layer: str) -> dict[int, tuple[dict[str, Any], Any]]:
    """Each feature of the layer: its export columns (tags comma-joined) and its geometry."""
    attributes = list(get_layer(layer).attributes.model_fields)
    held = {}
    for row in db.rows(_TWIN_SQL, layer=layer):
        values = dict(row._mapping)
        props, wkb = values.pop("props"), values.pop("wkb")
        held[row.id] = ({**values, **{a: props.get(a) for a in attributes}},
                        shapely.from_wkb(bytes(wkb)))
    return held


def _same(expected: Any, got: Any) -> bool:
    """A value read back equals the twin's, read as the twin's type (a CSV gives text, a
    Shapefile a float for an integer column holding a NULL, GDAL keeps times to the ms)."""
    if expected is None or expected == "":
        return got is None or got == "" or (isinstance(got, float) and math.isnan(got))
    if isinstance(expected, bool):
        return bool(int(float(got))) == expected
    if isinstance(expected, int):
        return int(float(got)) == expected
    if isinstance(expected, float):
        return math.isclose(float(got), expected, rel_tol=1e-12)
    if isinstance(expected, datetime):
        moment = datetime.fromisoformat(got) if isinstance(got, str) else got.to_pydatetime()
        return abs(moment - expected) < timedelta(milliseconds=1)
    return str(got) == expected


def _same_shape(expected: Any, got: Any, tolerance: float = 1e-9) -> bool:
    """Equal vertex by vertex within ``tolerance`` degrees, whatever the ring order or
    orientation (a Shapefile turns rings clockwise) or a one-part Multi* read as its part."""
    def canonical(geometry: Any) -> Any:
        return shapely.normalize(shapely.GeometryCollection(list(shapely.get_parts(geometry))))
    return bool(shapely.equals_exact(canonical(expected), canonical(got), tolerance=tolerance))


def _read_back(path: Path) -> tuple[dict[str, Any], Any]:
    """The file's info and its rows, as a GIS reads it (a zip through GDAL's /vsizip/)."""
    source = f"/vsizip/{path}" if path.suffix == ".zip" else str(path)
    options = ({"GEOM_POSSIBLE_NAMES": "WKT", "KEEP_GEOM_COLUMNS": "NO"}
               if path.suffix == ".csv" else {})
    return (pyogrio.read_info(source, **options),
            pyogrio.read_dataframe(source, **options))


@pytest.mark.parametrize(("layer", "name"), [
    ("buildings", "buildings.fgb"), ("buildings", "buildings.shp.zip"),
    ("buildings", "buildings.csv"), ("waste_points", "waste.csv"),
    ("residential_areas", "areas.zip"), ("streets", "streets.fgb"),
    ("charging_points", "charging.shp.zip"),
])
def test_each_format_reads_back_as_the_twin_holds_it(sample_db: Database, tmp_path: Path,
                                                     layer: str, name: str) -> None:
    path = tmp_path / name
    done = _export(sample_db, layer, str(path))
    held = _twin(sample_db, layer)
    assert f"wrote {len(held)} {layer} features to {path}" in done.stdout
    assert "warning" not in done.stderr

    info, frame = _read_back(path)
    renamed = shapefile_names(list(next(iter(held.values()))[0]))
    if path.suffix == ".zip":
        assert info["encoding"] == "UTF-8"
        frame = frame.rename(columns={new: old for old, new in renamed.items()})
    assert info["crs"] == ("EPSG:4326" if path.suffix != ".csv" else None)
    assert len(frame) == len(held) == info["features"]
    point_csv = path.suffix == ".csv" and get_layer(layer).geometry_type == "Point"
    extra = ["lon", "lat"] if point_csv else []
    assert sorted(frame.columns.drop("geometry")) == sorted([*next(iter(held.values()))[0],
                                                             *extra])
    for row in frame.to_dict("records"):
        values, geometry = held[int(row["id"])]
        for column, expected in values.items():
            assert _same(expected, row[column]), (row["id"], column, expected, row[column])
        assert _same_shape(geometry, row["geometry"]), row["id"]
        if point_csv:
            assert float(row["lon"]) == pytest.approx(geometry.x, abs=1e-9)
            assert float(row["lat"]) == pytest.approx(geometry.y, abs=1e-9)


def test_the_shapefile_zip_holds_its_parts_and_renames_long_names(sample_db: Database,
                                                                  tmp_path: Path) -> None:
    path = tmp_path / "areas.zip"
    done = _export(sample_db, "residential_areas", str(path))
    assert ("note: Shapefile field names are at most 10 characters; renamed residential_area "
            "-> residentia, model_waste_area -> model_wast") in done.stdout
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == [f"residential_areas.{part}" for part in
                                              ("cpg", "dbf", "prj", "shp", "shx")]
        assert archive.read("residential_areas.cpg").decode().strip() == "UTF-8"
        assert 'GEOGCS["GCS_WGS_1984"' in archive.read("residential_areas.prj").decode()
    fields = list(pyogrio.read_info(f"/vsizip/{path}")["fields"])
    assert "residentia" in fields and "model_wast" in fields
    assert all(len(field.encode()) <= 10 for field in fields)
    assert [p.name for p in tmp_path.iterdir()] == ["areas.zip"]  # no scratch left behind

    again = _export(sample_db, "residential_areas", str(path))  # overwritten whole
    assert again.stdout.count("renamed") == 1
    with zipfile.ZipFile(path) as archive:
        assert len(archive.namelist()) == 5


def test_shapefile_names_are_cut_the_same_way_every_time() -> None:
    assert shapefile_names(["id", "households", "residential_area"]) == {
        "residential_area": "residentia"}
    # two names that cut to the same ten, and one that cuts to a name already there
    assert shapefile_names(["residential_area", "residential_code", "fire_engine",
                            "FIRE_ENGIN"]) == {"residential_area": "residentia",
                                               "residential_code": "resident_1",
                                               "fire_engine": "fire_eng_1"}
    # ten bytes, not ten characters, and never half a character: 建筑年份 is 12 bytes
    assert shapefile_names(["建筑年份", "a" * 10]) == {"建筑年份": "建筑年"}


def test_the_csv_opens_in_excel_with_wkt(sample_db: Database, tmp_path: Path) -> None:
    points, buildings = tmp_path / "waste.csv", tmp_path / "buildings.csv"
    _export(sample_db, "waste_points", str(points))
    _export(sample_db, "buildings", str(buildings))
    for path, shape in ((points, '"POINT (121.'), (buildings, '"POLYGON ((121.')):
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs to read UTF-8
        header, first = raw[3:].decode("utf-8").splitlines()[:2]
        assert header.split(",")[0] == "WKT" and first.startswith(shape)
        assert (header.split(",")[-2:] == ["lon", "lat"]) == (path == points)
    chinese = sample_db.scalar("SELECT props->>'address' FROM twin.features "
                               "WHERE layer = 'buildings' AND props->>'address' ~ '[一-龥]' "
                               "ORDER BY id LIMIT 1")
    assert chinese and chinese in buildings.read_text(encoding="utf-8-sig")


def _offset_metres(a: Any, b: Any) -> np.ndarray:
    pa, pb = shapely.get_coordinates(a), shapely.get_coordinates(b)
    return np.asarray(GEOD.inv(pa[:, 0], pa[:, 1], pb[:, 0], pb[:, 1])[2])


@pytest.mark.parametrize(("datum", "offset", "metres"), [
    ("gcj02", prcoords.wgs_gcj, (400, 650)), ("bd09", prcoords.wgs_bd, (900, 1300))])
def test_a_web_map_datum_shifts_every_vertex_and_says_so(
        sample_db: Database, tmp_path: Path, datum: str, offset: Any,
        metres: tuple[float, float]) -> None:
    points = tmp_path / "waste.csv"
    done = _export(sample_db, "waste_points", str(points), "--datum", datum)
    assert f"its datum column says {datum}" in done.stderr and "not WGS-84" in done.stderr
    held = _twin(sample_db, "waste_points")
    _, frame = _read_back(points)
    assert len(frame) == len(held) and set(frame["datum"]) == {datum}
    for row in frame.to_dict("records"):
        original = held[int(row["id"])][1]
        lat, lon = offset((original.y, original.x))  # prcoords: (lat, lon) in and out
        assert float(row["lon"]) == pytest.approx(lon, abs=1e-6)  # prcoords rounds: 0.1 m
        assert float(row["lat"]) == pytest.approx(lat, abs=1e-6)
        assert _same_shape(row["geometry"], shapely.Point(row["lon"], row["lat"]))
        assert metres[0] < _offset_metres(original, row["geometry"])[0] < metres[1]

    # every vertex of a polygon layer, in a file that keeps the note in its description
    path = tmp_path / "buildings.fgb"
    _export(sample_db, "buildings", str(path), "--datum", datum)
    info, frame = _read_back(path)
    assert info["crs"] == "EPSG:4326" and info["layer_metadata"]["datum"] == datum
    assert "not WGS-84" in info["layer_metadata"]["DESCRIPTION"]
    buildings = _twin(sample_db, "buildings")
    for row in frame.to_dict("records"):
        original = buildings[int(row["id"])][1]
        xy = shapely.get_coordinates(original)
        shifted = shapely.set_coordinates(original, np.column_stack(
            from_wgs84(datum, xy[:, 0], xy[:, 1])))
        assert _same_shape(shifted, row["geometry"])
        assert row["datum"] == datum


@pytest.mark.parametrize("name", ["areas.gpkg", "areas.geojson"])
def test_the_datum_is_noted_in_geopackage_and_geojson(sample_db: Database, tmp_path: Path,
                                                     name: str) -> None:
    path = tmp_path / name
    _export(sample_db, "residential_areas", str(path), "--datum", "gcj02")
    if path.suffix == ".gpkg":
        info = pyogrio.read_info(path, layer="residential_areas")
        assert info["layer_metadata"]["datum"] == "gcj02" and info["crs"] == "EPSG:4326"
        described = _gpkg_description(path)
    else:
        collection = json.loads(path.read_text(encoding="utf-8"))
        assert collection["datum"] == "gcj02"
        described = collection["description"]
        assert {f["properties"]["datum"] for f in collection["features"]} == {"gcj02"}
    assert "GCJ-02" in described and "not WGS-84" in described


def _gpkg_description(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT description FROM gpkg_contents "
                           "WHERE table_name = 'residential_areas'").fetchone()
    return str(row[0])
