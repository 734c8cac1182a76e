"""Each feature's micro-grid and residential area follow the grids and areas as they change."""

from sqlalchemy import text

from tests.conftest import Database
from twin.store.db import EditContext, editing

ADMIN = EditContext(actor="admin", role="admin", reason="grid split")


def _busiest(db: Database, layer: str) -> str:
    """The code of the area-layer feature holding the most buildings."""
    column = "grid_code" if layer == "micro_grids" else "area_code"
    with db.app.connect() as conn:
        return str(conn.execute(text(
            f"SELECT {column} FROM twin.features WHERE layer = 'buildings' "
            f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1")).scalar_one())


def _split(db: Database, layer: str, code: str, new_code: str, extra: str) -> None:
    """Cut off the east half of ``code`` as a new feature ``new_code`` (one transaction)."""
    half = ("ST_Multi(ST_CollectionExtract(ST_Intersection(geom, ST_MakeEnvelope("
            "{x0}, ST_YMin(geom) - 1, {x1}, ST_YMax(geom) + 1, 4326)), 3))")
    middle = "(ST_XMin(geom) + ST_XMax(geom)) / 2"
    with editing(db.app, ADMIN) as conn:
        conn.execute(text(
            f"INSERT INTO twin.features (layer, name, props, geom) SELECT layer, :code, "
            f"props || jsonb_build_object('code', CAST(:code AS text)) {extra}, "
            f"{half.format(x0=middle, x1='ST_XMax(geom) + 1')} FROM twin.features "
            f"WHERE layer = :layer AND props->>'code' = :old"),
            {"code": new_code, "old": code, "layer": layer})
        conn.execute(text(
            f"UPDATE twin.features SET geom = {half.format(x0='ST_XMin(geom) - 1', x1=middle)} "
            f"WHERE layer = :layer AND props->>'code' = :old"), {"layer": layer, "old": code})


def test_a_grid_split_reassigns_its_features_and_logs_it(sample_db: Database) -> None:
    code = _busiest(sample_db, "micro_grids")
    new_code = f"{code}-E"
    _split(sample_db, "micro_grids", code, new_code, "")
    with sample_db.app.connect() as conn:
        moved = conn.execute(text(
            "SELECT f.id, f.grid_code FROM twin.features f JOIN twin.features g "
            "ON g.layer = 'micro_grids' AND g.props->>'code' = :new "
            "AND ST_Contains(g.geom, ST_PointOnSurface(f.geom)) "
            "WHERE f.layer NOT IN ('micro_grids', 'residential_areas')"), {"new": new_code}).all()
        stayed = conn.execute(text(
            "SELECT count(*) FROM twin.features WHERE grid_code = :old AND layer = 'buildings'"),
            {"old": code}).scalar_one()
        logged = conn.execute(text(
            "SELECT feature_id, actor, reason, old_values, new_values FROM twin.changes "
            "WHERE changed = '{micro_grid}' AND new_values->>'micro_grid' = :new"),
            {"new": new_code}).all()
    assert moved and stayed, "the split should leave buildings on both sides"
    assert {grid for _, grid in moved} == {new_code}
    # strictly inside the new grid moved; a feature on its border may keep the old one
    assert {row.feature_id for row in logged} >= {fid for fid, _ in moved}
    with sample_db.app.connect() as conn:
        now_in = conn.execute(text("SELECT DISTINCT grid_code FROM twin.features "
                                   "WHERE id = ANY(:ids)"),
                              {"ids": [row.feature_id for row in logged]}).scalars().all()
    assert now_in == [new_code]
    for row in logged:
        assert row.actor == "admin"
        assert row.reason == f"reassigned: micro_grids {code} changed"
        assert row.old_values == {"micro_grid": code}


def test_a_new_residential_area_takes_over_its_grids_and_features(sample_db: Database) -> None:
    code = _busiest(sample_db, "residential_areas")
    new_code = "NEW-AREA-1"
    _split(sample_db, "residential_areas", code, new_code,
           "|| jsonb_build_object('committee', '璟尚居委会')")
    with sample_db.app.connect() as conn:
        inside = conn.execute(text(
            "SELECT f.layer, f.area_code FROM twin.features f JOIN twin.features a "
            "ON a.layer = 'residential_areas' AND a.props->>'code' = :new "
            "AND ST_Contains(a.geom, ST_PointOnSurface(f.geom)) "
            "WHERE f.layer <> 'residential_areas'"), {"new": new_code}).all()
        logged = conn.execute(text(
            "SELECT count(*) FROM twin.changes WHERE changed = '{residential_area}' "
            "AND new_values->>'residential_area' = :new"), {"new": new_code}).scalar_one()
    assert {layer for layer, _ in inside} >= {"buildings", "micro_grids"}
    assert {area for _, area in inside} == {new_code}
    assert logged >= len(inside)


def test_every_sample_feature_has_its_grid_and_area(sample_db: Database) -> None:
    """Every feature in its grid, area and subdistrict (the outlines, which hold the rest,
    in none but their own subdistrict)."""
    with sample_db.app.connect() as conn:
        missing = conn.execute(text(
            "SELECT layer, count(*) FROM twin.features WHERE layer NOT IN ('water', "
            "'subdistricts') AND ((grid_code IS NULL AND layer NOT IN ('residential_areas', "
            "'streets')) OR area_code IS NULL OR subdistrict_code IS NULL) GROUP BY layer")).all()
    assert missing == []
