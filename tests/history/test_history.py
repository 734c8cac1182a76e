"""History is the database's job: plain SQL leaves versions and change records too."""

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Database
from twin.store.db import EditContext, editing, set_context

POINT = "ST_SetSRID(ST_MakePoint(121.51, 31.195), 4326)"


def _changes(db: Database, fid: int) -> list[dict[str, object]]:
    with db.app.connect() as conn:
        rows = conn.execute(text("SELECT * FROM twin.changes WHERE feature_id = :id ORDER BY id"),
                            {"id": fid}).mappings().all()
    return [dict(r) for r in rows]


def _versions(db: Database, fid: int) -> list[dict[str, object]]:
    with db.app.connect() as conn:
        rows = conn.execute(text("SELECT version, props, valid, lower(valid) AS since, "
                                 "upper(valid) AS until, isempty(valid) AS empty "
                                 "FROM twin.feature_versions WHERE feature_id = :id "
                                 "ORDER BY version"), {"id": fid}).mappings().all()
    return [dict(r) for r in rows]


def test_plain_sql_insert_update_delete_are_recorded(db: Database) -> None:
    with db.app.begin() as conn:
        fid = conn.execute(text(f"INSERT INTO twin.features (layer, name, props, geom) VALUES "
                                f"('waste_points', 'p1', '{{\"state\": \"ok\"}}', {POINT}) "
                                f"RETURNING id")).scalar_one()
    with db.app.begin() as conn:
        conn.execute(text("UPDATE twin.features SET props = props || '{\"state\": \"full\"}' "
                          "WHERE id = :id"), {"id": fid})
    with db.app.begin() as conn:
        version = conn.execute(text("SELECT version FROM twin.features WHERE id = :id"),
                               {"id": fid}).scalar()
        conn.execute(text("DELETE FROM twin.features WHERE id = :id"), {"id": fid})
    assert version == 2

    insert, update, delete = _changes(db, fid)
    for change in (insert, update, delete):
        # no actor was set: the change is recorded under the database user
        assert change["actor"] == "twin_app" or change["actor"] == db.app.url.username
        assert change["role"] == "database"
        assert change["layer"] == "waste_points"
    assert insert["operation"] == "insert" and insert["version_before"] is None
    assert insert["version_after"] == 1 and insert["old_values"] is None
    assert insert["new_values"]["state"] == "ok"
    assert insert["new_values"]["geometry"]["type"] == "Point"
    assert update["operation"] == "update"
    assert (update["version_before"], update["version_after"]) == (1, 2)
    assert update["changed"] == ["state"]
    assert update["old_values"] == {"state": "ok"} and update["new_values"] == {"state": "full"}
    assert update["geom_changed"] is False
    assert delete["operation"] == "delete" and delete["version_before"] == 2
    assert delete["version_after"] is None and delete["new_values"] is None
    assert delete["old_values"]["state"] == "full"
    assert delete["old_values"]["geometry"]["coordinates"] == [121.51, 31.195]

    v1, v2 = _versions(db, fid)
    assert v1["props"] == {"state": "ok"} and v2["props"] == {"state": "full"}
    assert v1["until"] == v2["since"]  # one version ends where the next begins
    assert v2["until"] is not None  # the delete closed the last version


def test_edit_context_is_recorded(db: Database) -> None:
    sent = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    ctx = EditContext(actor="worker-1", role="worker", device="tablet-9", reason="bin full",
                      client_time=sent, edit_id="edit-42")
    with editing(db.app, ctx) as conn:
        fid = conn.execute(text(f"INSERT INTO twin.features (layer, props, geom) VALUES "
                                f"('waste_points', '{{}}', {POINT}) RETURNING id")).scalar_one()
    (change,) = _changes(db, fid)
    assert (change["actor"], change["role"], change["device"]) == ("worker-1", "worker",
                                                                   "tablet-9")
    assert (change["reason"], change["edit_id"]) == ("bin full", "edit-42")
    assert change["client_time"] == sent
    with db.app.connect() as conn:
        assert conn.execute(text("SELECT changed_by FROM twin.features WHERE id = :id"),
                            {"id": fid}).scalar() == "worker-1"
        # the context lasts one transaction only
        assert conn.execute(text("SELECT twin.context('actor')")).scalar() is None


def test_an_update_that_changes_nothing_leaves_no_version(db: Database) -> None:
    with db.app.begin() as conn:
        fid = conn.execute(text(f"INSERT INTO twin.features (layer, props, geom) VALUES "
                                f"('waste_points', '{{}}', {POINT}) RETURNING id")).scalar_one()
        conn.execute(text("UPDATE twin.features SET props = props WHERE id = :id"), {"id": fid})
    assert len(_changes(db, fid)) == 1
    assert [v["version"] for v in _versions(db, fid)] == [1]


def test_version_is_counted_by_the_database_not_the_writer(db: Database) -> None:
    with db.app.begin() as conn:
        fid = conn.execute(text(f"INSERT INTO twin.features (layer, props, geom, version) "
                                f"VALUES ('waste_points', '{{}}', {POINT}, 99) RETURNING id")
                           ).scalar_one()
        conn.execute(text("UPDATE twin.features SET name = 'x', version = 50 WHERE id = :id"),
                     {"id": fid})
        assert conn.execute(text("SELECT version FROM twin.features WHERE id = :id"),
                            {"id": fid}).scalar() == 2


@pytest.mark.parametrize("statement", [
    "UPDATE twin.changes SET reason = 'rewritten'",
    "DELETE FROM twin.changes",
    "TRUNCATE twin.changes",
    "UPDATE twin.feature_versions SET props = '{\"state\": \"rewritten\"}'",
    "DELETE FROM twin.feature_versions",
    "TRUNCATE twin.feature_versions",
    "TRUNCATE twin.features",
])
@pytest.mark.parametrize("role", ["app", "admin"])
def test_history_cannot_be_rewritten(db: Database, statement: str, role: str) -> None:
    with db.app.begin() as conn:
        conn.execute(text(f"INSERT INTO twin.features (layer, props, geom) VALUES "
                          f"('waste_points', '{{}}', {POINT})"))
    engine = db.app if role == "app" else db.admin
    refused = r"refused|permission denied|is history"
    with pytest.raises(DBAPIError, match=refused), engine.begin() as conn:
        conn.execute(text(statement))
    with db.admin.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM twin.changes")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM twin.feature_versions")).scalar() == 1


def test_the_app_role_cannot_forge_a_change(db: Database) -> None:
    with pytest.raises(DBAPIError, match="permission denied"), db.app.begin() as conn:
        conn.execute(text("INSERT INTO twin.changes (actor, role, operation, layer, feature_id, "
                          "changed, geom_changed, geom) VALUES ('x', 'x', 'insert', 'x', 1, "
                          "'{}', false, ST_SetSRID(ST_MakePoint(0, 0), 4326))"))


# Edits of a few waste points, each a statement over all of them at once or one per point.
_EDITS = (
    "UPDATE twin.features SET props = props || '{\"state\": \"full\"}' WHERE id = ANY(:ids)",
    "UPDATE twin.features SET geom = ST_Translate(geom, 0.002, 0.001) WHERE id = ANY(:ids)",
    "UPDATE twin.features SET name = name WHERE id = ANY(:ids)",  # changes nothing
    "DELETE FROM twin.features WHERE id = ANY(:ids)",
    # brought back as the last version was
    "INSERT INTO twin.features (id, layer, name, props, tags, geom) "
    "SELECT DISTINCT ON (feature_id) feature_id, layer, name, props, tags, geom "
    "FROM twin.feature_versions WHERE feature_id = ANY(:ids) ORDER BY feature_id, version DESC",
)


def _logged_by(sample_db: Database, ids: list[int], together: bool) -> dict[str, Any]:
    """The log the edits leave, as statements over all the points or one per point (rolled
    back): every change (but its id and transaction), version, count and layer count."""
    with sample_db.admin.connect() as conn, conn.begin() as tx:
        conn.execute(text("SELECT set_config('twin.clock', '2026-03-02T10:00:00+08:00', true)"))
        set_context(conn, EditContext(actor="worker-x", role="worker", reason="sweep"))
        since = conn.execute(text("SELECT max(id) FROM twin.changes")).scalar_one()
        for edit in _EDITS:
            for some in ([ids] if together else [[fid] for fid in ids]):
                conn.execute(text(edit), {"ids": some})
        logged = {
            "changes": conn.execute(text(
                "SELECT operation, layer, feature_id, version_before, version_after, changed, "
                "old_values, new_values, geom_changed, ST_AsEWKB(geom), grid_code, area_code, "
                "actor, role, reason, server_time FROM twin.changes WHERE id > :since "
                "ORDER BY feature_id, id"), {"since": since}).all(),
            "versions": conn.execute(text(
                "SELECT v.feature_id, v.version, v.props, ST_AsEWKB(v.geom), v.grid_code, "
                "v.valid, c.feature_id, c.version_after FROM twin.feature_versions v "
                "JOIN twin.changes c ON c.id = v.change_id WHERE v.feature_id = ANY(:ids) "
                "ORDER BY 1, 2"), {"ids": ids}).all(),
            "counts": conn.execute(text(
                "SELECT * FROM twin.change_counts ORDER BY period, day, layer, grid_code, "
                "area_code, actor, role, operation, state_from, state_to")).all(),
            "layers": conn.execute(text(
                "SELECT c.layer, c.features, (SELECT count(*) FROM twin.features f "
                "WHERE f.layer = c.layer) FROM twin.feature_counts c ORDER BY 1")).all(),
        }
        tx.rollback()
    return logged


def test_a_statement_of_many_rows_is_logged_as_its_rows_one_at_a_time(
        sample_db: Database) -> None:
    ids = [fid for (fid,) in sample_db.rows(
        "SELECT id FROM twin.features WHERE layer = 'waste_points' ORDER BY id LIMIT 6")]
    together = _logged_by(sample_db, ids, together=True)
    assert together == _logged_by(sample_db, ids, together=False)
    assert len(together["changes"]) == 4 * len(ids)  # the unchanged names leave nothing
    assert all(kept == counted for _, kept, counted in together["layers"])
