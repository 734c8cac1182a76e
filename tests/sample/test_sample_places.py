"""The places the report counts, in the sample twin: 32 gas hazards fixed on the spot, 198
premises checked in 拆窗破网 and the 489 escape openings made at them, and the shops, key
places, shelters and stores placed from the twin's own buildings and streets; loaded through
the real triggers, each feature logged and placed in its micro-grid."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
import shapely

from tests.conftest import SPEC, Database
from twin.registry import get_layer
from twin.sample.generator import SampleFeature, SampleTwin, generate
from twin.sample.places import PLACE_LAYERS
from twin.sample.spec import load_spec


@pytest.fixture(scope="module")
def twin() -> SampleTwin:
    """The sample as `make run` loads it (the spec's seed)."""
    return generate(load_spec(SPEC))


def layer(twin: SampleTwin, name: str) -> list[SampleFeature]:
    return [f for f in twin.features if f.layer == name]


def building_of(twin: SampleTwin, places: list[SampleFeature]) -> list[int]:
    """The index of the one building each place lies in (-1: none)."""
    buildings = [b.geometry for b in layer(twin, "buildings")]
    place, building = shapely.STRtree(buildings).query([p.geometry for p in places], "within")
    assert len(set(place.tolist())) == len(place)  # never in two
    found = np.full(len(places), -1)
    found[place] = building
    return found.tolist()


def test_the_counts_are_the_reports_and_the_specs(twin: SampleTwin) -> None:
    counts = Counter(f.layer for f in twin.features)
    spec = twin.spec.counts
    assert counts["gas_hazards"] == spec.gas_hazards == 32
    assert counts["escape_checks"] == spec.escape_checks == 198
    assert counts["escape_openings"] == spec.escape_openings == 489
    assert (counts["shops"], counts["key_places"]) == (spec.shops, spec.key_places)
    gas = layer(twin, "gas_hazards")
    assert all(g.props["state"] == "fixed" and g.props["fixed_on_spot"] for g in gas)  # 即查即改
    checks = layer(twin, "escape_checks")
    assert sum(c.props["openings"] for c in checks) == 489
    assert all((c.props["state"] == "fixed") == (c.props["openings"] > 0) for c in checks)
    assert all("拆窗破网" in c.tags for c in checks + layer(twin, "escape_openings"))
    assert all(o.props["state"] == "open" for o in layer(twin, "escape_openings"))


def test_each_escape_opening_is_on_the_building_of_one_checked_premises(
        twin: SampleTwin) -> None:
    checks = layer(twin, "escape_checks")
    openings = layer(twin, "escape_openings")
    premises = building_of(twin, checks)
    assert -1 not in premises and len(set(premises)) == len(premises)  # one a building
    on = Counter(building_of(twin, openings))
    assert -1 not in on and set(on) <= set(premises)
    assert [on[b] for b in premises] == [c.props["openings"] for c in checks]
    floors = [b.props["floors"] for b in layer(twin, "buildings")]
    assert all(1 <= o.props["floor"] <= floors[b]
               for o, b in zip(openings, building_of(twin, openings), strict=True))


def test_places_stand_where_such_places_are(twin: SampleTwin) -> None:
    buildings = layer(twin, "buildings")
    use = [b.props["use"] for b in buildings]
    shops = layer(twin, "shops")
    streets = {s.name for s in layer(twin, "streets")}
    assert all(use[b] in ("mixed", "commercial", "residential")
               for b in building_of(twin, shops))
    plates = [re.fullmatch(r"(.+?)(\d+)号", s.props["address"]) for s in shops]
    assert all(m is not None and m[1] in streets for m in plates)
    assert all(use[b] in ("mixed", "commercial")
               for b in building_of(twin, layer(twin, "key_places")))
    gas = layer(twin, "gas_hazards")
    shop_points = {s.geometry.wkb for s in shops if s.props["trade"] == "food"}
    for hazard, b in zip(gas, building_of(twin, gas), strict=True):
        if "居民户" in hazard.tags:
            assert use[b] == "residential" and buildings[b].props["households"] > 0
        else:
            assert hazard.geometry.wkb in shop_points  # in a restaurant
    shelters = layer(twin, "shelters")
    under = building_of(twin, shelters)
    for shelter, b in zip(shelters, under, strict=True):
        assert shelter.props["capacity"] > 0
        if shelter.props["kind"] == "civil_defence":  # 结建: under a building of 10+ floors
            assert buildings[b].props["floors"] >= 10
        else:  # on open ground
            assert b == -1
    assert sum(s.props["kind"] == "emergency_shelter" for s in shelters) == (
        twin.spec.counts.emergency_shelters)
    stores = layer(twin, "emergency_stores")
    committees = [committee for _, committee in twin.spec.committees]
    assert sorted(s.name for s in stores if s.props["kind"] == "general") == sorted(
        f"{c}应急物资储备点" for c in committees)
    assert [s.name for s in stores if s.props["kind"] == "flood"] == [
        f"{twin.spec.name_zh}防汛物资仓库"]
    assert -1 not in building_of(twin, stores)


def test_the_loaded_places_are_logged_valid_and_inside_the_subdistrict(
        sample_db: Database) -> None:
    rows = sample_db.rows(
        "SELECT f.layer, f.props, f.tags, f.grid_code, f.area_code, "
        "(SELECT count(*) FROM twin.changes c WHERE c.feature_id = f.id "
        " AND c.operation = 'insert') AS logged FROM twin.features f "
        "WHERE f.layer = ANY(:layers)", layers=list(PLACE_LAYERS))
    assert {r.layer for r in rows} == set(PLACE_LAYERS)
    for r in rows:
        spec = get_layer(r.layer)
        spec.attributes.model_validate(r.props)
        assert spec.tags.problems(list(r.tags)) == [], (r.layer, r.tags)
        assert r.grid_code and r.area_code and r.logged == 1, r
    counts = Counter(r.layer for r in rows)
    assert (counts["gas_hazards"], counts["escape_checks"], counts["escape_openings"]) == (
        32, 198, 489)
    # every opening inside the building of one checked premises, counted by its premises
    linked = sample_db.one("""
        WITH premises AS (
            SELECT c.id, (c.props ->> 'openings')::int AS openings, b.id AS building
              FROM twin.features c JOIN twin.features b
                ON b.layer = 'buildings' AND ST_Within(c.geom, b.geom)
             WHERE c.layer = 'escape_checks'),
        opened AS (
            SELECT o.id, b.id AS building
              FROM twin.features o JOIN twin.features b
                ON b.layer = 'buildings' AND ST_Within(o.geom, b.geom)
             WHERE o.layer = 'escape_openings')
        SELECT (SELECT count(*) FROM premises) AS premises,
               (SELECT count(DISTINCT building) FROM premises) AS buildings,
               (SELECT count(*) FROM opened JOIN premises USING (building)) AS at_premises,
               (SELECT count(*) FROM premises p WHERE p.openings <>
                    (SELECT count(*) FROM opened o WHERE o.building = p.building)) AS miscounted
        """)
    assert (linked.premises, linked.buildings, linked.at_premises, linked.miscounted) == (
        198, 198, 489, 0)
