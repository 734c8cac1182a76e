"""The map page works opened from disk in a real browser and asks nothing of the network."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from tests.browser import visit
from tests.conftest import Database, run_twin
from twin.maps.page import VENDOR_DIR, render_map
from twin.registry import all_layers, get_layer
from twin.settings import Settings

EXTERNAL_ASSET = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)\s*=\s*[\"']?https?://", re.I)
HAZARD = (121.4745, 31.2312)  # lon, lat of the point the test clicks


def _feature(fid: int, geometry: dict[str, Any], name: str, **attributes: Any) -> dict[str, Any]:
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": {
        "name": name, "tags": attributes.pop("tags", []), **attributes, "micro_grid": "MG-001",
        "version": 3, "changed_by": "wang.li", "changed_at": "2024-05-01T08:30:00+08:00"}}


def _collections() -> dict[str, dict[str, Any]]:
    def fc(*features: dict[str, Any]) -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": list(features)}

    area = [[[121.470, 31.229], [121.478, 31.229], [121.478, 31.235], [121.470, 31.235],
             [121.470, 31.229]]]
    block = [[[121.4715, 31.2300], [121.4735, 31.2300], [121.4735, 31.2320], [121.4715, 31.2320],
              [121.4715, 31.2300]]]
    return {
        "residential_areas": fc(_feature(1, {"type": "MultiPolygon", "coordinates": [area]},
                                         "福安居民区", code="310101-001", committee="福安居委会",
                                         households=1200)),
        "buildings": fc(_feature(2, {"type": "Polygon", "coordinates": block}, "福安小区3号楼",
                                 use="residential", floors=6, households=48, elderly=30,
                                 tags=["project=适老化改造"])),
        "fire_passages": fc(_feature(3, {"type": "LineString", "coordinates": [
            [121.4710, 31.2335], [121.4770, 31.2335], [121.4770, 31.2295]]}, "3号楼北侧通道",
            state="blocked", width_m=4.0, blocked_by="停放车辆")),
        "charging_points": fc(
            _feature(4, {"type": "Point", "coordinates": [121.4760, 31.2305]}, "福安充电棚",
                     site_type="street_cabinet", sockets=20, state="safe"),
            # A hostile name: if any popup or tooltip used innerHTML this would fetch a URL.
            _feature(5, {"type": "Point", "coordinates": list(HAZARD)},
                     '<img src="http://evil.example/x.png">地下车库充电点',
                     site_type="underground", sockets=12, state="hazard",
                     tags=["地下空间", "condition=占用"])),
    }


def _settings(**overrides: Any) -> Settings:
    return Settings(**{"basemap": "none", "map_review_number": "沪S(2024)001号",
                       "map_source": "网格化管理中心 grid centre", **overrides})


def test_page_served_by_the_api_references_only_vendored_assets() -> None:
    page = render_map(_collections(), _settings(), title="福安 Fu'an", standalone=False)
    refs = re.findall(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"([^\"]+)", page)
    assert refs and all(ref.startswith("/static/vendor/") for ref in refs)
    assert all((VENDOR_DIR / ref.removeprefix("/static/vendor/")).is_file() for ref in refs)


def test_tianditu_without_a_key_is_refused_by_the_settings() -> None:
    with pytest.raises(ValidationError, match="TWIN_TIANDITU_KEY"):
        _settings(basemap="tianditu")
    keyed = render_map(_collections(), _settings(basemap="tianditu", tianditu_key="k&1"),
                       title="t")
    assert "tianditu.gov.cn" in keyed and "tk=k%261" in keyed


def test_standalone_page_works_offline_in_chromium(tmp_path: Path) -> None:
    page_html = render_map(_collections(), _settings(), title="福安街道数字孪生 Fu'an twin",
                           note="数据来源：合成样例 Data: synthetic sample")
    assert not EXTERNAL_ASSET.search(page_html)
    path = tmp_path / "twin.html"
    path.write_text(page_html, encoding="utf-8")

    with visit(path.as_uri()) as seen:
        page = seen.page
        page.wait_for_selector(".leaflet-container .leaflet-overlay-pane canvas")
        control = page.inner_text(".leaflet-control-layers-overlays")
        for name in _collections():
            assert get_layer(name).title in control
        assert "片区 Areas" in control
        legend = page.inner_text(".twin-legend")
        assert "充电" in legend and "隐患 hazard" in legend
        assert "沪S(2024)001号" in page.inner_text(".leaflet-bottom.leaflet-right")
        assert "数据来源 Data source: 网格化管理中心" in page.inner_text(
            ".leaflet-bottom.leaflet-right")

        # Vector layers draw on a canvas: click where Leaflet puts the hazard point.
        x, y = page.evaluate("""([lon, lat]) => {
            const container = document.querySelector(".folium-map");
            const point = window[container.id].latLngToContainerPoint([lat, lon]);
            const box = container.getBoundingClientRect();
            return [box.left + point.x, box.top + point.y];
        }""", list(HAZARD))
        page.mouse.click(x, y)
        page.locator(".leaflet-popup-content").wait_for(timeout=5000)
        page.wait_for_function(  # let the popup finish fading in before the screenshot
            "getComputedStyle(document.querySelector('.leaflet-popup')).opacity === '1'")
        popup = page.inner_text(".leaflet-popup-content")
        for text in ("地下车库充电点", '<img src="http://evil.example/x.png">',
                     "电动自行车充电点 E-bike charging points", "插座数 Sockets", "12",
                     "隐患 hazard", "地下空间, condition=占用", "MG-001",
                     "wang.li · 2024/05/01 08:30"):
            assert text in popup
        seen.screenshot("map.png")

    assert seen.errors == []
    assert seen.external_requests() == []


def test_twin_map_writes_the_sample_twin_for_offline_use(sample_db: Database,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "twin.html"
    done = run_twin("map", "--out", str(out), env=sample_db.env())
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    assert not EXTERNAL_ASSET.search(html)
    with visit(out.as_uri()) as seen:
        seen.page.wait_for_selector(".leaflet-container .leaflet-overlay-pane canvas")
        control = seen.page.inner_text(".leaflet-control-layers-overlays")
        seen.screenshot("sample-map.png")
    for layer in all_layers().values():
        assert layer.title in control
    assert seen.errors == []
    assert seen.external_requests() == []


def test_twin_map_as_of_a_moment_draws_the_twin_as_it_was(sample_db: Database,
                                                           tmp_path: Path) -> None:
    with sample_db.admin.begin() as conn:
        moment = conn.execute(text("SELECT max(server_time) FROM twin.changes")).scalar_one()
        fid = conn.execute(text("SELECT min(id) FROM twin.features "
                                "WHERE layer = 'waste_points'")).scalar_one()
        conn.execute(text("DELETE FROM twin.features WHERE id = :id"), {"id": fid})
    then, now = tmp_path / "then.html", tmp_path / "now.html"
    done = run_twin("map", "--out", str(then), "--as-of", moment.isoformat(),
                    env=sample_db.env())
    assert done.returncode == 0, done.stderr
    assert run_twin("map", "--out", str(now), env=sample_db.env()).returncode == 0
    drawn = re.compile(rf'"id":\s*{fid}\b')
    assert drawn.search(then.read_text(encoding="utf-8"))
    assert not drawn.search(now.read_text(encoding="utf-8"))
    assert f"截至 As of {moment.isoformat()}" in then.read_text(encoding="utf-8")
    bad = run_twin("map", "--out", str(now), "--as-of", "yesterday", env=sample_db.env())
    assert bad.returncode == 1 and "--as-of" in bad.stderr and "Traceback" not in bad.stderr
