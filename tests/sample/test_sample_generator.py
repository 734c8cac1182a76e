"""The sample-twin generator: a planner loads a plausible, valid, repeatable subdistrict.

No database needed: these tests look at what ``twin.sample.generate`` returns.
"""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import shapely

from twin.errors import InvalidInput
from twin.registry import get_layer
from twin.sample.generator import LAYER_ORDER, SampleFeature, SampleTwin, content_hash, generate
from twin.sample.places import PLACE_LAYERS
from twin.sample.spec import SampleSpec, load_spec

DATA = Path(__file__).resolve().parents[2] / "data"
SPEC_PATH = DATA / "nanmatou.toml"


@pytest.fixture(scope="module")
def spec() -> SampleSpec:
    return load_spec(SPEC_PATH)


@pytest.fixture(scope="module")
def twin(spec: SampleSpec) -> SampleTwin:
    return generate(spec)


def layer(twin: SampleTwin, name: str) -> list[SampleFeature]:
    return [f for f in twin.features if f.layer == name]


def test_same_seed_gives_the_same_twin_and_another_seed_another(
        spec: SampleSpec, twin: SampleTwin) -> None:
    assert content_hash(generate(spec)) == content_hash(twin)
    assert content_hash(generate(spec, seed=spec.seed + 1)) != content_hash(twin)
    assert twin.seed == spec.seed and twin.scale == 1
    assert twin.metadata["synthetic"] is True and "synthetic" in twin.metadata["source"]


def test_features_come_ordered_by_layer(twin: SampleTwin) -> None:
    order = [f.layer for f in twin.features]
    assert sorted(order, key=LAYER_ORDER.index) == order
    assert set(order) == set(LAYER_ORDER)


def test_areas_are_the_real_committees(twin: SampleTwin) -> None:
    with (DATA / "nanmatou_residential_committees_nbs2023.csv").open(encoding="utf-8") as f:
        committees = [(row["code"], row["name"]) for row in csv.DictReader(f)]
    areas = layer(twin, "residential_areas")
    assert [(a.props["code"], a.props["committee"]) for a in areas] == committees
    assert len(committees) == 27
    assert sum(a.props["model_waste_area"] for a in areas) == 3
    buildings = layer(twin, "buildings")
    inside = shapely.point_on_surface([b.geometry for b in buildings])
    building, area = shapely.STRtree([a.geometry for a in areas]).query(inside, "within")
    assert sorted(building.tolist()) == list(range(len(buildings)))
    households = np.bincount(area, [buildings[b].props["households"] for b in building],
                             minlength=len(areas))
    assert [a.props["households"] for a in areas] == households.astype(int).tolist()


def test_counts_match_the_report(twin: SampleTwin) -> None:
    counts = Counter(f.layer for f in twin.features)
    assert counts["micro_grids"] == 263
    assert (counts["gas_hazards"], counts["escape_checks"], counts["escape_openings"]) == (
        32, 198, 489)
    assert 3000 <= counts["buildings"] <= 6000
    assert 250 <= counts["waste_points"] <= 350
    assert counts["streets"] >= 100
    codes = [g.props["code"] for g in layer(twin, "micro_grids")]
    assert codes == twin.grid_codes and len(set(codes)) == 263
    sites = Counter(c.props["site_type"] for c in layer(twin, "charging_points"))
    assert sites["underground"] + sites["semi_underground"] == 32
    assert sites["elevated_floor"] == 16
    assert sum(c.props["remediated"] for c in layer(twin, "charging_points")) == 48
    assert sum(w.props["off_hour"] for w in layer(twin, "waste_points")) == 17
    tags = Counter(t for b in layer(twin, "buildings") for t in b.tags)
    assert tags["老旧高层"] == 14 and tags["烂尾楼"] == 1 and tags["project=适老化改造"] == 47
    # fire lanes: two into each residential estate's block where there is room, not the
    # report's 489 escape openings (data/SOURCES.md §6.2)
    passages = layer(twin, "fire_passages")
    assert 100 <= len(passages) <= 250
    assert all(p.props["width_m"] >= 4.0 for p in passages)
    blocked = [p for p in passages if p.props["state"] == "blocked"]
    assert 5 <= len(blocked) <= 30 and all(p.props["blocked_by"] for p in blocked)


def test_every_feature_fits_its_layer(twin: SampleTwin) -> None:
    for f in twin.features:
        spec = get_layer(f.layer)
        spec.attributes.model_validate(f.props)
        assert spec.tags.problems(list(f.tags)) == [], (f.layer, f.tags)
        assert f.geometry.geom_type == spec.geometry_type
        if f.layer in ("residential_areas", "micro_grids", "streets"):
            assert f.name


def test_geometries_are_valid_rounded_lonlat(twin: SampleTwin) -> None:
    geoms = np.array([f.geometry for f in twin.features], dtype=object)
    assert shapely.is_valid(geoms).all()
    assert not shapely.is_empty(geoms).any()
    coords = shapely.get_coordinates(geoms)
    assert np.array_equal(np.round(coords, 7), coords)
    lon, lat = twin.spec.centre
    assert np.abs(coords[:, 0] - lon).max() < 0.02 and np.abs(coords[:, 1] - lat).max() < 0.02


def test_grids_tile_the_areas(twin: SampleTwin) -> None:
    areas = layer(twin, "residential_areas")
    grids = layer(twin, "micro_grids")
    area_total = sum(a.geometry.area for a in areas)
    assert sum(g.geometry.area for g in grids) == pytest.approx(area_total, rel=0.005)
    by_code = {a.props["code"]: a.geometry for a in areas}
    for g in grids:
        area = by_code[g.props["code"].rsplit("-", 1)[0]]
        assert g.geometry.intersection(area).area >= 0.99 * g.geometry.area
        assert g.props["squad"].startswith("第") and g.props["squad"].endswith("中队")
    union = shapely.union_all([a.geometry for a in areas])
    assert sum(a.geometry.area for a in areas) == pytest.approx(union.area, rel=0.005)


def test_points_and_buildings_lie_inside_grids(twin: SampleTwin) -> None:
    grids = [g.geometry for g in layer(twin, "micro_grids")]
    tree = shapely.STRtree(grids)
    points = [f.geometry for f in twin.features if f.geometry.geom_type == "Point"]
    assert {f.layer for f in twin.features if f.geometry.geom_type == "Point"} == {
        "waste_points", "charging_points", *PLACE_LAYERS}
    inside, _ = tree.query(points, predicate="within")
    assert sorted(set(inside.tolist())) == list(range(len(points)))
    # No grid line cuts a building: each lies in one grid, but for the rounding of both.
    buildings = np.array([b.geometry for b in layer(twin, "buildings")], dtype=object)
    building, grid = tree.query(shapely.point_on_surface(buildings), predicate="within")
    assert sorted(building.tolist()) == list(range(len(buildings)))
    shared = shapely.area(shapely.intersection(buildings[building], np.array(grids)[grid]))
    assert (shared >= 0.999 * shapely.area(buildings[building])).all()


def test_streets_are_one_network(twin: SampleTwin) -> None:
    assert _components(layer(twin, "streets")) == 1


def _components(streets: list[SampleFeature]) -> int:
    graph = nx.Graph()
    for s in streets:
        coords = s.geometry.coords
        graph.add_edge(coords[0], coords[-1])
    return int(nx.number_connected_components(graph))


def test_buildings_overlap_neither_each_other_nor_streets(twin: SampleTwin) -> None:
    buildings = [b.geometry for b in layer(twin, "buildings")]
    left, right = shapely.STRtree(buildings).query(buildings, predicate="intersects")
    assert (left == right).all()
    hits, _ = shapely.STRtree([s.geometry for s in layer(twin, "streets")]).query(
        buildings, predicate="intersects")
    assert len(hits) == 0


def test_the_river_lies_on_the_spec_edge(spec: SampleSpec, twin: SampleTwin) -> None:
    east = generate(dataclasses.replace(spec, river_edge="east"))
    for t, sign in ((twin, -1), (east, 1)):
        riverside = [s.geometry for s in layer(t, "streets") if s.name == spec.streets.riverside]
        assert riverside
        x = shapely.centroid(shapely.union_all(riverside)).x - spec.centre[0]
        assert x * sign > 0.005  # at least ~500 m towards the river's edge


def test_the_river_is_drawn_beyond_the_areas_along_the_bank(spec: SampleSpec,
                                                          twin: SampleTwin) -> None:
    water = layer(twin, "water")
    assert [(w.name, w.props["kind"]) for w in water] == [(spec.river, "river")]
    river = water[0].geometry
    areas = shapely.union_all([a.geometry for a in layer(twin, "residential_areas")])
    assert shapely.area(shapely.intersection(river, areas)) < 1e-12
    assert shapely.distance(river, areas) < 1e-4  # on the bank, ~10 m at most
    assert shapely.centroid(river).x < shapely.centroid(areas).x  # west, as the spec says
    assert not any(shapely.intersects(river, s.geometry) for s in layer(twin, "streets"))


def test_a_larger_scale_repeats_the_subdistrict_with_unique_codes(
        spec: SampleSpec, twin: SampleTwin) -> None:
    seen = Counter[str]()
    twin = generate(spec, scale=2, progress=lambda stage, n: seen.update({stage: n}))
    assert seen == {"tiles": 2}
    areas = layer(twin, "residential_areas")
    assert len(areas) == 54 and len(set(a.props["code"] for a in areas)) == 54
    assert areas[27].props["code"] == "310115010001-t1"
    assert areas[27].props["committee"] == "西三里桥居委会（1）"
    assert len(twin.grid_codes) == 526 and len(set(twin.grid_codes)) == 526
    assert twin.grid_codes[263].startswith("310115010001-t1-")
    # The second tile lies east of the first and meets it: one street network.
    assert _components(layer(twin, "streets")) == 1
    # each copy its own subdistrict by default, or grouped: outlines that tile the areas
    outlines = layer(twin, "subdistricts")
    assert [(o.props["code"], o.name) for o in outlines] == [
        ("310115010", "南码头路街道"), ("310115010-s1", "南码头路街道（1）")]
    assert abs(shapely.union_all([o.geometry for o in outlines]).area
               - shapely.union_all([a.geometry for a in areas]).area) < 1e-9
    one = generate(spec, scale=2, subdistricts=1)
    assert [o.props["code"] for o in layer(one, "subdistricts")] == ["310115010"] * 2
    with pytest.raises(InvalidInput, match="subdistricts"):
        generate(spec, scale=2, subdistricts=3)
    assert sum(s.name == spec.streets.riverside for s in layer(twin, "streets")) == sum(
        s.name == spec.streets.riverside for s in layer(twin, "streets"))


def test_a_bad_spec_is_refused_with_reasons(tmp_path: Path) -> None:
    text = SPEC_PATH.read_text(encoding="utf-8")
    (tmp_path / "nanmatou_residential_committees_nbs2023.csv").write_text(
        (DATA / "nanmatou_residential_committees_nbs2023.csv").read_text(encoding="utf-8"),
        encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('river_edge = "west"', 'river_edge = "up"')
                   .replace('expropriation = "310115010027"', 'expropriation = "1"'),
                   encoding="utf-8")
    with pytest.raises(InvalidInput) as refused:
        load_spec(bad)
    assert [p.field for p in refused.value.problems] == ["river_edge"]
    bad.write_text(text.replace('expropriation = "310115010027"', 'expropriation = "1"'),
                   encoding="utf-8")
    with pytest.raises(InvalidInput) as refused:
        load_spec(bad)
    assert [p.field for p in refused.value.problems] == ["projects.expropriation"]
