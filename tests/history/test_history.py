"""History is the database's job: plain SQL leaves versions and change records too."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import Database
from twin.store.db import EditContext, editing

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
