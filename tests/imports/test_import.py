"""`twin import` as a data officer runs it, and the upload an admin sends: every format and
CRS a surveyor hands over, web-map offsets undone, bad rows reported and nothing written,
re-imports that change nothing, --sync, and an import reverted as one unit."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import geopandas as gpd
import prcoords
import pytest
import shapely
from fastapi.testclient import TestClient
from pyproj import Geod

from tests.conftest import Database, login, run_twin
from twin.features.edits import validate_attribute_columns, validate_attributes
from twin.registry import get_layer

GEOD = Geod(ellps="WGS84")


def _points(db: Database, n: int = 30) -> gpd.GeoDataFrame:
    """``n`` of the sample's waste points as a surveyor's table would hold them."""
    return gpd.read_postgis(
        "SELECT 'WP-' || id AS 编号, name, (props->>'bins')::int AS bins, "
        "props->>'state' AS state, geom FROM twin.features WHERE layer = 'waste_points' "
        f"ORDER BY id LIMIT {n}", db.admin, geom_col="geom")


def _imported(db: Database) -> dict[str, Any]:
    """The imported waste points by their file's id: (bins, lon, lat)."""
    return {r.source_id: (r.bins, r.x, r.y) for r in db.rows(
        "SELECT source_id, (props->>'bins')::int AS bins, ST_X(geom) AS x, ST_Y(geom) AS y "
        "FROM twin.features WHERE layer = 'waste_points' AND source_id IS NOT NULL")}


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(GEOD.inv(a[0], a[1], b[0], b[1])[2])


def _import(db: Database, path: Path, *args: str) -> Any:
    done = run_twin("import", str(path), "waste_points", "--id", "编号", *args, "--json",
                    env=db.env())
    return done


def _report(done: Any) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _write(frame: gpd.GeoDataFrame, path: Path, crs: int | None) -> Path:
    """The frame in ``crs`` (None: as it is), in the format the path's suffix says."""
    data = frame.to_crs(crs) if crs else frame
    if path.suffix == ".zip":
        shp = path.with_suffix(".shp")
        data.to_file(shp, driver="ESRI Shapefile", encoding="utf-8")
        with zipfile.ZipFile(path, "w") as z:
            for part in shp.parent.glob(shp.stem + ".*"):
                if part.suffix != ".zip":
                    z.write(part, part.name)
    else:
        driver = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".fgb": "FlatGeobuf"}[path.suffix]
        data.to_file(path, driver=driver)
    return path


@pytest.mark.parametrize(("suffix", "crs"), [
    (".gpkg", 4549), (".zip", 32651), (".geojson", None), (".fgb", 4490)],
    ids=["GeoPackage CGCS2000 Gauss-Kruger", "zipped Shapefile UTM 51N", "GeoJSON",
         "FlatGeobuf CGCS2000"])
def test_each_format_and_crs_lands_where_it_was(sample_db: Database, tmp_path: Path,
                                                suffix: str, crs: int | None) -> None:
    points = _points(sample_db)
    path = _write(points, tmp_path / f"points{suffix}", crs)
    report = _report(_import(sample_db, path))
    assert (report["read"], report["inserted"], report["skipped"]) == (30, 30, 0)
    assert "name" not in report["ignored_fields"] and report["written"]
    got = _imported(sample_db)
    for row in points.itertuples():
        bins, x, y = got[row.编号]
        assert bins == row.bins
        assert _metres((x, y), (row.geom.x, row.geom.y)) < 0.01


def test_csv_by_wkt_or_by_longitude_and_latitude(sample_db: Database, tmp_path: Path) -> None:
    points = _points(sample_db, 6)
    wkt = tmp_path / "wkt.csv"
    wkt.write_text("编号,WKT,bins\n" + "".join(
        f"{r.编号},{r.geom.wkt},{r.bins}\n" for r in points.itertuples()), encoding="utf-8")
    assert _report(_import(sample_db, wkt))["inserted"] == 6
    lonlat = tmp_path / "lonlat.csv"
    lonlat.write_text("编号,经度,纬度,bins\n" + "".join(
        f"L{r.编号},{r.geom.x:.8f},{r.geom.y:.8f},{r.bins + 1}\n" for r in points.itertuples()),
        encoding="utf-8")
    assert _report(_import(sample_db, lonlat))["inserted"] == 6
    got = _imported(sample_db)
    for r in points.itertuples():
        assert got[f"L{r.编号}"][0] == r.bins + 1
        assert _metres(got[f"L{r.编号}"][1:], (r.geom.x, r.geom.y)) < 0.01


@pytest.mark.parametrize(("datum", "offset"), [("gcj02", prcoords.wgs_gcj),
                                               ("bd09", prcoords.wgs_bd)])
def test_web_map_offsets_are_undone(sample_db: Database, tmp_path: Path, datum: str,
                                    offset: Any) -> None:
    """A file traced off a web map: offset by the independent implementation, undone by
    Twin's to within half a metre (and without --datum, refused as outside or far off)."""
    points = _points(sample_db, 12)
    shifted = tmp_path / f"{datum}.csv"
    rows = []
    for r in points.itertuples():
        lat, lon = offset((r.geom.y, r.geom.x))
        rows.append(f"{r.编号},{lon:.9f},{lat:.9f}\n")
    shifted.write_text("编号,lon,lat\n" + "".join(rows), encoding="utf-8")
    report = _report(_import(sample_db, shifted, "--datum", datum))
    assert report["inserted"] == 12
    got = _imported(sample_db)
    for r in points.itertuples():
        assert _metres(got[r.编号][1:], (r.geom.x, r.geom.y)) < 0.5


def test_a_bad_file_is_reported_row_by_row_and_writes_nothing(sample_db: Database,
                                                             tmp_path: Path) -> None:
    points = _points(sample_db, 4)
    p = list(points.itertuples())
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "编号,lon,lat,bins,state\n"
        f"A,{p[0].geom.x},{p[0].geom.y},4,ok\n"
        f"B,{p[1].geom.x},{p[1].geom.y},many,ok\n"       # not a number
        f"C,{p[2].geom.x},{p[2].geom.y},4,overflowing\n"  # not a state
        "D,116.39,39.91,4,ok\n"                           # Beijing: outside
        f"A,{p[3].geom.x},{p[3].geom.y},4,ok\n",          # the same id again
        encoding="utf-8")
    before = sample_db.scalar("SELECT count(*) FROM twin.changes")
    refused = _import(sample_db, bad)
    assert refused.returncode == 1 and not refused.stdout
    for reason in ("valid integer", "overflowing", "outside the subdistrict", "same id"):
        assert reason in refused.stderr
    assert sample_db.scalar("SELECT count(*) FROM twin.changes") == before
    assert sample_db.scalar("SELECT count(*) FROM twin.imports") == 0
    dry = _report(_import(sample_db, bad, "--dry-run"))
    assert (dry["inserted"], dry["skipped"], dry["written"]) == (1, 4, False)
    assert sorted((p["row"], p["field"]) for p in dry["problems"]) == [
        (2, "bins"), (3, "state"), (4, "geometry"), (5, "编号")]
    assert sample_db.scalar("SELECT count(*) FROM twin.changes") == before
    skipped = _report(_import(sample_db, bad, "--skip-bad"))
    assert (skipped["inserted"], skipped["skipped"], skipped["written"]) == (1, 4, True)
    assert set(_imported(sample_db)) == {"A"}


def test_import_again_changes_nothing_and_a_changed_row_is_one_change(
        sample_db: Database, tmp_path: Path) -> None:
    points = _points(sample_db, 10)
    path = _write(points, tmp_path / "points.gpkg", 4549)
    first = _report(_import(sample_db, path))
    before = sample_db.scalar("SELECT count(*) FROM twin.changes")
    again = _report(_import(sample_db, path))
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 10)
    assert sample_db.scalar("SELECT count(*) FROM twin.changes") == before
    points.loc[3, "bins"] = 9
    changed = _report(_import(sample_db, _write(points, tmp_path / "points.gpkg", 4549)))
    assert (changed["updated"], changed["unchanged"]) == (1, 9)
    (change,) = sample_db.rows(
        "SELECT changed, reason, import_id, actor FROM twin.changes WHERE id > :id", id=before)
    assert change.changed == ["bins"] and change.import_id == changed["import_id"]
    assert change.reason == f"import points.gpkg by {change.actor}"
    assert first["import_id"] < changed["import_id"]


def test_sync_deletes_what_the_file_no_longer_holds(sample_db: Database,
                                                   tmp_path: Path) -> None:
    points = _points(sample_db, 10)
    _report(_import(sample_db, _write(points, tmp_path / "p.gpkg", None)))
    fewer = _write(points.iloc[:7], tmp_path / "fewer.gpkg", None)
    without = _report(_import(sample_db, fewer))
    assert without["deleted"] == 0 and len(_imported(sample_db)) == 10
    kept = sample_db.scalar("SELECT count(*) FROM twin.features WHERE layer = 'waste_points'")
    synced = _report(_import(sample_db, fewer, "--sync"))
    # the three left out, and every waste point the file does not hold (the sample's own)
    assert synced["deleted"] == kept - 7
    assert set(_imported(sample_db)) == set(points["编号"].iloc[:7])


def test_an_import_over_http_and_its_revert(client: TestClient, sample_db: Database,
                                            tmp_path: Path) -> None:
    points = _points(sample_db, 8)
    path = _write(points, tmp_path / "points.geojson", None)
    admin, planner = login(client, "admin"), login(client, "planner")
    form = {"id": "编号", "map": ["bins=bins"]}

    def send(headers: dict[str, str], **extra: Any) -> Any:
        with path.open("rb") as f:
            return client.post("/collections/waste_points/import", headers=headers,
                                data={**form, **extra},
                                files={"file": ("points.geojson", f, "application/geo+json")})

    assert send(planner).status_code == 403
    assert send(admin, map=["nope=bins"]).status_code == 400
    done = send(admin)
    assert done.status_code == 200, done.text
    report = done.json()
    assert report["inserted"] == 8 and report["written"]
    listed = client.get("/imports", headers=admin).json()["imports"]
    assert listed[0]["id"] == report["import_id"] and listed[0]["inserted"] == 8
    assert client.get("/imports", headers=planner).status_code == 403
    reverted = client.post(f"/imports/{report['import_id']}/revert", headers=admin,
                           json={"reason": "wrong file"})
    assert reverted.status_code == 200, reverted.text
    assert len(reverted.json()["reverted"]) == 8 and _imported(sample_db) == {}
    assert client.post("/imports/999999/revert", headers=admin,
                       json={"reason": "x"}).status_code == 404


def test_a_file_without_its_crs_or_with_a_wrong_one_is_refused(sample_db: Database,
                                                               tmp_path: Path) -> None:
    points = _points(sample_db, 3)
    path = _write(points, tmp_path / "p.zip", 4549)
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith(".prj")]
        parts = {n: z.read(n) for n in names}
    bare = tmp_path / "bare.zip"
    with zipfile.ZipFile(bare, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    no_crs = _import(sample_db, bare)
    assert no_crs.returncode == 1 and "--crs" in no_crs.stderr
    wrong = _import(sample_db, bare, "--crs", "EPSG:32651")  # the wrong zone: far away
    assert wrong.returncode == 1 and "outside the subdistrict" in wrong.stderr
    right = _report(_import(sample_db, bare, "--crs", "EPSG:4549"))
    assert right["inserted"] == 3
    assert shapely.Point(_imported(sample_db)[points["编号"][0]][1:]).distance(
        points.geometry[0]) < 1e-7


def test_a_new_layer_is_proposed_from_a_file(sample_db: Database, tmp_path: Path) -> None:
    """--new-layer writes a spec that reads as a layer (the file's fields typed, the geometry
    its own) and the mapping that imports the file into it; it imports nothing."""
    from twin.imports.rows import read_mapping
    from twin.layerspec import read_spec

    frame = _points(sample_db, 5)
    frame["备注"] = "x"
    path = _write(frame, tmp_path / "benches.gpkg", 4549)
    done = run_twin("import", str(path), "--new-layer", "benches", "--out", str(tmp_path),
                    env=sample_db.env())
    assert done.returncode == 0, done.stderr
    layer = read_spec(tmp_path / "benches.toml")
    assert layer.name == "benches" and layer.geometry_type == "Point"
    kinds = {n: f.annotation for n, f in layer.attributes.model_fields.items()}
    assert kinds == {"bins": int | None, "state": str | None, "field_5": str | None}
    assert layer.attributes.model_fields["field_5"].title == "备注"
    pairs, id_field = read_mapping(tmp_path / "benches.mapping.toml")
    assert id_field == "编号"
    assert pairs == {"name": "name", "bins": "bins", "state": "state", "备注": "field_5"}
    assert sample_db.scalar("SELECT count(*) FROM twin.imports") == 0
    bad = run_twin("import", str(path), "--new-layer", "Bad Name", "--out", str(tmp_path),
                   env=sample_db.env())
    assert bad.returncode == 1 and "lower-case" in bad.stderr


def test_the_id_field_may_fill_an_attribute_too(sample_db: Database, tmp_path: Path) -> None:
    """A grid's code is both its id in the file and an attribute: --id F --map F=code."""
    path = _write(_points(sample_db, 4), tmp_path / "p.gpkg", None)
    report = _report(_import(sample_db, path, "--map", "编号=name"))
    assert report["inserted"] == 4
    assert {r.source_id: r.name for r in sample_db.rows(
        "SELECT source_id, name FROM twin.features WHERE source_id IS NOT NULL")} == {
        sid: sid for sid in _points(sample_db, 4)["编号"]}


def test_a_file_is_checked_a_column_at_a_time_as_the_model_checks_each_row() -> None:
    rows: list[dict[str, Any]] = [
        {"use": "residential", "floors": 3}, {"use": "castle", "floors": 0},
        {"floors": "7"}, {"use": "public", "floors": "12", "elderly": True},
        {"use": "mixed", "floors": 2, "built_year": 3000, "address": "x" * 201},
        {"use": "mixed", "floors": 2.5, "households": "many"}]
    buildings = get_layer("buildings")
    columns = {name: [row.get(name) for row in rows]
               for name in {name for row in rows for name in row}}
    made, problems = validate_attribute_columns(buildings, columns, len(rows))
    for i, row in enumerate(rows):
        props, row_problems = validate_attributes(buildings, row)
        assert (json.loads(made[i]) if made[i] else {}, problems.get(i, [])) == (
            props, row_problems)
    assert sorted(problems) == [1, 2, 4, 5]
