"""Migrations build the whole model on an empty database, and can be run again."""


from alembic.script import ScriptDirectory
from sqlalchemy import text

from tests.conftest import Database, Server, run_twin
from twin.registry import all_layers
from twin.store.migrate import alembic_config, migrate


def test_migrate_an_empty_database_twice(server: Server) -> None:
    db = server.create("twin_test_fresh_migrate")
    try:
        role = None if server.settings.database_url else server.settings.app_role
        migrate(db.admin, role)
        migrate(db.admin, role)  # a second run changes nothing and does not fail
        with db.admin.connect() as conn:
            layers = dict(conn.execute(text("SELECT name, geometry_type FROM twin.layers")).all())
            partitions = set(conn.execute(text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'twin.features'::regclass")).scalars())
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert layers == {name: layer.postgis_type for name, layer in all_layers().items()}
        assert partitions == {f"features_{name}" for name in all_layers()}
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert version == head and head is not None
    finally:
        server.drop(db)


def test_tags_are_indexed(db: Database) -> None:
    with db.admin.connect() as conn:
        indexes = conn.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'twin' "
            "AND tablename = 'features_waste_points'")).scalars().all()
    assert any("gin (tags)" in definition for definition in indexes)


def test_twin_database_url_points_the_cli_at_an_existing_postgis(server: Server) -> None:
    db = server.create("twin_test_external_url")
    try:
        env = {**db.env(), "TWIN_DATABASE_URL": db.admin_url}
        started = run_twin("db", "start", env=env)
        assert started.returncode == 0 and "nothing to start" in started.stdout
        migrated = run_twin("db", "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        status = run_twin("db", "status", env=env)
        assert status.returncode == 0 and "status: up" in status.stdout
        assert db.name in status.stdout
        with db.admin.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM twin.layers")).scalar() == len(
                all_layers())
    finally:
        server.drop(db)
