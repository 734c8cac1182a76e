"""The database itself refuses what must never be stored, whoever writes it, and keeps nothing."""

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Database

POINT = "ST_SetSRID(ST_MakePoint(121.51, 31.195), 4326)"
REFUSED = {
    "wrong geometry type": ("waste_points", "ST_SetSRID(ST_MakeLine(ST_MakePoint(121.51, 31.19),"
                            " ST_MakePoint(121.52, 31.19)), 4326)", "must_be_point"),
    "polygon where a line belongs": ("streets", "ST_MakeEnvelope(121.5, 31.19, 121.51, 31.2, "
                                     "4326)", "must_be_linestring"),
    "invalid geometry": ("buildings", "'SRID=4326;POLYGON((121.5 31.19, 121.51 31.2, "
                         "121.51 31.19, 121.5 31.2, 121.5 31.19))'::geometry", "geom_valid"),
    "empty geometry": ("waste_points", "'SRID=4326;POINT EMPTY'::geometry", "not_empty"),
    "wrong SRID": ("waste_points", "ST_SetSRID(ST_MakePoint(13526000, 3656000), 3857)", "SRID"),
    "longitude out of range": ("waste_points", "ST_SetSRID(ST_MakePoint(221.51, 31.195), 4326)",
                               "in_range"),
    "latitude out of range": ("waste_points", "ST_SetSRID(ST_MakePoint(121.51, 91.5), 4326)",
                              "in_range"),
    "unknown layer": ("rivers", POINT, "partition"),
    "tags holding NULL": ("waste_points", POINT, "tags"),
}


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(conn.execute(text(  # type: ignore[return-value]
            "SELECT (SELECT count(*) FROM twin.features), (SELECT count(*) FROM twin.changes),"
            " (SELECT count(*) FROM twin.feature_versions)")).one())


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_and_nothing_written(db: Database, case: str) -> None:
    layer, geometry, message = REFUSED[case]
    tags = "ARRAY['a', NULL]" if case == "tags holding NULL" else "'{}'"
    before = _counts(db.app)
    with pytest.raises(DBAPIError) as refused, db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO twin.features (layer, props, tags, geom) "
                          f"VALUES (:layer, '{{}}', {tags}, {geometry})"), {"layer": layer})
    assert message in str(refused.value)
    assert _counts(db.app) == before


def test_an_update_to_a_bad_geometry_is_refused_too(db: Database) -> None:
    with db.app.begin() as conn:
        fid = conn.execute(text(f"INSERT INTO twin.features (layer, props, geom) VALUES "
                                f"('waste_points', '{{}}', {POINT}) RETURNING id")).scalar()
    before = _counts(db.app)
    with pytest.raises(DBAPIError, match="must_be_point"), db.app.begin() as conn:
        conn.execute(text("UPDATE twin.features SET geom = ST_Buffer(geom, 0.001) "
                          "WHERE id = :id"), {"id": fid})
    assert _counts(db.app) == before


def test_a_geometry_without_srid_is_taken_as_wgs84(db: Database) -> None:
    """PostGIS gives an SRID-less value the column's SRID; it is stored as EPSG:4326."""
    with db.app.begin() as conn:
        srid = conn.execute(text("INSERT INTO twin.features (layer, props, geom) VALUES "
                                 "('waste_points', '{}', ST_MakePoint(121.51, 31.195)) "
                                 "RETURNING ST_SRID(geom)")).scalar()
    assert srid == 4326
