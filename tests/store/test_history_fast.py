"""Migration 0003's cheaper triggers log the same history: a feature that did not move keeps
its micro-grid and residential area, one that moved or whose grid changed gets them anew,
and only the schema's owner moves the clock. Also how a generated history is shared out."""

from collections.abc import Iterator
from contextlib import contextmanager
from random import Random

import psycopg
from alembic import command
from sqlalchemy import Connection, text

from tests.conftest import Database, Server
from twin.sample.history import WORKER, _read_actors, _read_features, _shares
from twin.store.db import EditContext, libpq_conninfo, set_context
from twin.store.migrate import alembic_config, migrate
from twin.store.sqlfiles import sql

POINT = "(SELECT min(id) FROM twin.features WHERE layer = 'waste_points')"
CODES = "SELECT grid_code, area_code FROM twin.features WHERE id = :id"


def _logged(conn: Connection, fid: int) -> list[list[str]]:
    """The fields each change of a feature changed, oldest first."""
    return [list(changed) for (changed,) in conn.execute(text(
        "SELECT changed FROM twin.changes WHERE feature_id = :id ORDER BY id"), {"id": fid})]


@contextmanager
def _stale(db: Database) -> Iterator[tuple[Connection, int]]:
    """A waste point whose stored codes are wrong (written with the triggers off, in a
    transaction that is rolled back): only a look-up would correct them."""
    with db.admin.connect() as conn, conn.begin() as tx:
        fid = conn.execute(text(f"SELECT {POINT}")).scalar_one()
        conn.execute(text("ALTER TABLE twin.features DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE twin.features SET grid_code = 'stale', area_code = 'stale' "
                          "WHERE id = :id"), {"id": fid})
        conn.execute(text("ALTER TABLE twin.features ENABLE TRIGGER USER"))
        set_context(conn, EditContext(actor="worker-x", role="worker"))
        yield conn, fid
        tx.rollback()


def test_an_attribute_update_keeps_the_codes_without_looking_them_up(
        sample_db: Database) -> None:
    with _stale(sample_db) as (conn, fid):
        conn.execute(text("UPDATE twin.features SET props = props || '{\"state\": \"full\"}' "
                          "WHERE id = :id"), {"id": fid})
        assert conn.execute(text(CODES), {"id": fid}).one() == ("stale", "stale")
        assert _logged(conn, fid)[-1] == ["state"]


def test_a_moved_point_gets_the_codes_of_its_new_place(sample_db: Database) -> None:
    with _stale(sample_db) as (conn, fid):
        # into the grid (and so the area) holding the most buildings
        grid, area, x, y = conn.execute(text(
            "SELECT g.props ->> 'code', g.area_code, ST_X(p), ST_Y(p) FROM twin.features g, "
            "ST_PointOnSurface(g.geom) p WHERE g.layer = 'micro_grids' AND g.props ->> 'code' = "
            "(SELECT grid_code FROM twin.features WHERE layer = 'buildings' "
            " GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1)")).one()
        conn.execute(text("UPDATE twin.features SET geom = ST_SetSRID(ST_MakePoint(:x, :y), "
                          "4326) WHERE id = :id"), {"x": x, "y": y, "id": fid})
        assert conn.execute(text(CODES), {"id": fid}).one() == (grid, area)
        assert _logged(conn, fid)[-1] == ["micro_grid", "residential_area", "geometry"]


def test_a_recoded_grid_reassigns_the_features_that_did_not_move(sample_db: Database) -> None:
    with sample_db.app.begin() as conn:
        set_context(conn, EditContext(actor="admin", role="admin", reason="grid recoded"))
        code, members = conn.execute(text(
            "SELECT grid_code, array_agg(id ORDER BY id) FROM twin.features WHERE layer = "
            "'waste_points' AND grid_code IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 "
            "LIMIT 1")).one()
        conn.execute(text("UPDATE twin.features SET props = props || "
                          "jsonb_build_object('code', CAST(:new AS text)) "
                          "WHERE layer = 'micro_grids' AND props ->> 'code' = :old"),
                     {"old": code, "new": f"{code}-R"})
        # the re-derivation is asked for the reassignment only, not for later edits
        assert conn.execute(text("SELECT current_setting('twin.rederive', true)")).scalar() == ""
        moved = conn.execute(text(
            "SELECT array_agg(id ORDER BY id) FROM twin.features WHERE grid_code = :new "
            "AND layer = 'waste_points'"), {"new": f"{code}-R"}).scalar_one()
        reasons = conn.execute(text(
            "SELECT DISTINCT reason FROM twin.changes WHERE feature_id = ANY(:ids) "
            "AND tx = pg_current_xact_id()"), {"ids": members}).scalars().all()
    assert moved == members
    assert reasons == [f"reassigned: micro_grids {code}-R changed"]


def test_a_derived_code_cannot_be_written(sample_db: Database) -> None:
    with sample_db.app.begin() as conn:
        fid = conn.execute(text(f"SELECT {POINT}")).scalar_one()
        before = conn.execute(text(CODES), {"id": fid}).one()
        changes = len(_logged(conn, fid))
        conn.execute(text("UPDATE twin.features SET grid_code = 'x', area_code = 'y' "
                          "WHERE id = :id"), {"id": fid})
        assert conn.execute(text(CODES), {"id": fid}).one() == before
        assert len(_logged(conn, fid)) == changes  # nothing changed, nothing logged


def test_only_the_schema_owner_moves_the_clock(sample_db: Database) -> None:
    asked = "2026-01-01T08:00:00+08:00"
    clock = "SELECT twin.clock() = CAST(:t AS timestamptz), twin.clock() = now()"
    for engine, expected in ((sample_db.admin, (True, False)), (sample_db.app, (False, True))):
        with engine.begin() as conn:
            conn.execute(text("SELECT set_config('twin.clock', :t, true)"), {"t": asked})
            assert conn.execute(text(clock), {"t": asked}).one() == expected


def _definitions(db: Database) -> dict[str, tuple[str, str, str]]:
    """Language, volatility and body of the functions 0003 replaces."""
    with db.admin.connect() as conn:
        return {name: (lang, volatility, body) for name, lang, volatility, body in conn.execute(
            text("SELECT p.proname, l.lanname, p.provolatile, p.prosrc FROM pg_proc p "
                 "JOIN pg_language l ON l.oid = p.prolang WHERE p.pronamespace = "
                 "'twin'::regnamespace AND p.proname IN ('clock', 'fields', 'features_before', "
                 "'reassign')"))}


def test_the_downgrade_restores_the_first_triggers(server: Server, db: Database) -> None:
    config = alembic_config()
    with db.admin.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    restored = _definitions(db)
    first = sql("0001_history")
    assert restored["clock"][:2] == ("plpgsql", "s") and "pg_has_role" in restored["clock"][2]
    assert restored["fields"][:2] == ("sql", "i")
    assert all(body in first for _, _, body in restored.values())
    migrate(db.admin, None if server.settings.database_url else server.settings.app_role)
    upgraded = _definitions(db)
    assert upgraded["clock"][:2] == ("sql", "s") and upgraded["fields"][:2] == ("sql", "s")
    assert "twin.rederive" in upgraded["features_before"][2]


def test_shares_edit_disjoint_grids_and_add_up_to_n(sample_db: Database) -> None:
    with sample_db.app.begin() as conn:  # a point outside every grid and area
        conn.execute(text("INSERT INTO twin.features (layer, props, geom) VALUES ('waste_points', "
                          "'{}', ST_SetSRID(ST_MakePoint(121.4, 31.1), 4326))"))
    with psycopg.connect(libpq_conninfo(sample_db.admin_url)) as conn:
        features, actors = _read_features(conn), _read_actors(conn)
    shares = _shares(features, actors, 7, 1001, 3)
    assert [share.n for share in shares] == [334, 334, 333]
    owned = [{f.grid for f in share.features} for share in shares]
    assert None in owned[0] and not any(None in grids for grids in owned[1:])
    assert not (owned[0] & owned[1] or owned[0] & owned[2] or owned[1] & owned[2])
    assert sum(len(share.features) for share in shares) == len(features)
    for share, grids_of_share in zip(shares, owned, strict=True):
        assert {a.grid for a in share.actors[WORKER]} <= grids_of_share
        assert {role: len(a) for role, a in share.actors.items() if role != WORKER} == {
            role: len(a) for role, a in actors.items() if role != WORKER}
    assert sum(len(share.actors[WORKER]) for share in shares) == len(actors[WORKER])
    # one share is the whole history, drawn from the seed as before there were shares
    (whole,) = _shares(features, actors, 7, 1001, 1)
    assert whole.n == 1001 and whole.features == features and whole.actors == actors
    assert whole.rng.random() == Random(7).random()  # noqa: S311
