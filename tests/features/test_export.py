"""`twin export`: a layer to GeoPackage or GeoJSON, now or as it was, checked against SQL."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyogrio
import pytest
from sqlalchemy import text

from tests.conftest import Database, run_twin

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
    (("buildings", "out.shp"), "its suffix .shp is not one of .gpkg, .geojson, .json"),
    (("buildings", "out"), "its suffix (none) is not one of"),
    (("nope", "out.gpkg"), "no layer 'nope'; layers: residential_areas, micro_grids"),
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
