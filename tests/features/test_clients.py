"""Real GIS clients read the twin: GDAL's OAPIF driver and OWSLib, over real HTTP."""

import os
import re
import subprocess

from owslib.ogcapi.features import Features
from sqlalchemy import text

from tests.conftest import Database, bearer
from twin.registry import all_layers

BBOX = (121.505, 31.19, 121.515, 31.198)


def _ogrinfo(url: str, token: str, *args: str, debug: bool = False) -> str:
    """ogrinfo's summary; with ``debug`` its log too (which lists every request it made)."""
    env = {**os.environ, "GDAL_HTTP_HEADERS": f"Authorization: Bearer {token}",
           "CPL_DEBUG": "ON" if debug else "OFF"}
    done = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{url}/", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout + (done.stderr if debug else "")


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


def test_ogrinfo_counts_a_layer_from_one_page(live_url: str, sample_db: Database) -> None:
    """numberMatched on an unfiltered page: GDAL counts the layer from its first request
    instead of downloading all 4,500 buildings."""
    summary = _ogrinfo(live_url, bearer(live_url), "buildings", debug=True)
    counted = int(re.search(r"Feature Count: (\d+)", summary).group(1))  # type: ignore[union-attr]
    assert counted == sample_db.scalar("SELECT count(*) FROM twin.features "
                                       "WHERE layer = 'buildings'")
    fetched = re.findall(r"Fetch\((\S+)\)", summary)
    assert len([url for url in fetched if "/items" in url]) == 1, fetched


def test_owslib_sees_counts_and_links(live_url: str, sample_db: Database) -> None:
    api = Features(live_url, headers={"Authorization": f"Bearer {bearer(live_url)}"})
    count = sample_db.scalar("SELECT count(*) FROM twin.features WHERE layer = 'waste_points'")
    assert api.collection("waste_points")["itemCount"] == count
    page = api.collection_items("waste_points", limit=7)
    assert page["numberMatched"] == count and page["numberReturned"] == 7
    # the Link header names the next page as the body does
    assert api.response_headers["Link"].count('rel="next"') == 1
    assert "numberMatched" not in api.collection_items("waste_points", limit=7,
                                                       bbox=list(BBOX))
