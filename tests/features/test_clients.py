"""Real GIS clients read the twin: GDAL's OAPIF driver and OWSLib, over real HTTP."""

import os
import re
import subprocess

from owslib.ogcapi.features import Features
from sqlalchemy import text

from tests.conftest import Database, bearer
from twin.registry import all_layers

BBOX = (121.505, 31.19, 121.515, 31.198)


def _ogrinfo(url: str, token: str, *args: str) -> str:
    env = {**os.environ, "GDAL_HTTP_HEADERS": f"Authorization: Bearer {token}"}
    done = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{url}/", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ogrinfo_lists_the_layers_and_counts_a_bbox(live_url: str,
                                                     sample_db: Database) -> None:
    token = bearer(live_url)
    listing = _ogrinfo(live_url, token)
    for name in all_layers():
        assert re.search(rf"^\d+: {name}\b", listing, re.MULTILINE), listing
    summary = _ogrinfo(live_url, token, "-spat", *map(str, BBOX), "buildings")
    counted = int(re.search(r"Feature Count: (\d+)", summary).group(1))  # type: ignore[union-attr]
    with sample_db.app.connect() as conn:
        expected = conn.execute(text(
            "SELECT count(*) FROM twin.features WHERE layer = 'buildings' AND "
            "ST_Intersects(geom, ST_MakeEnvelope(:a, :b, :c, :d, 4326))"),
            dict(zip("abcd", BBOX, strict=True))).scalar()
    assert counted == expected


def test_owslib_reads_collections_and_items(live_url: str) -> None:
    api = Features(live_url, headers={"Authorization": f"Bearer {bearer(live_url)}"})
    assert api.conformance()["conformsTo"]
    ids = {c["id"] for c in api.collections()["collections"]}
    assert ids == set(all_layers())
    page = api.collection_items("waste_points", limit=7, bbox=list(BBOX))
    assert page["type"] == "FeatureCollection" and 0 < len(page["features"]) <= 7
