"""The database's code lives in twin/store/sql/live/, one file per function or view, applied
after the revisions. A database migrated from empty and one upgraded a revision at a time
have the same schema; the live files give the bodies the revisions built, with one setting
a replacement had lost put back."""

from __future__ import annotations

import re
import uuid
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from tests.conftest import Database, Server
from twin.store.live import LAST_REVISION_WITH_CODE, LIVE
from twin.store.migrate import alembic_config, migrate
from twin.store.sqlfiles import sql

# What makes a schema, read from the catalog: each query gives (key, definition) rows.
CATALOG = {
    "columns": """
        SELECT c.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'twin'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped""",
    "relations": """
        SELECT relname, relkind::text || coalesce(' ' || pg_get_expr(relpartbound, oid), '')
          FROM pg_class WHERE relnamespace = 'twin'::regnamespace""",
    "indexes": """
        SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'twin'""",
    "constraints": """
        SELECT conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'twin'::regnamespace""",
    "triggers": """
        SELECT tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid)
          FROM pg_trigger WHERE NOT tgisinternal
           AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'twin'::regnamespace)""",
    "functions": """
        SELECT oid::regprocedure::text, pg_get_functiondef(oid)
          FROM pg_proc WHERE pronamespace = 'twin'::regnamespace""",
    "views": """
        SELECT relname, pg_get_viewdef(oid) FROM pg_class
         WHERE relnamespace = 'twin'::regnamespace AND relkind = 'v'""",
    "grants": """
        SELECT grantee || ' ' || table_name, string_agg(privilege_type, ',' ORDER BY
               privilege_type) FROM information_schema.role_table_grants
         WHERE table_schema = 'twin' GROUP BY grantee, table_name""",
}


def catalog(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {part: dict(conn.execute(text(query)).all()) for part, query in CATALOG.items()}


def test_every_function_and_view_has_its_live_file(server: Server, db: Database) -> None:
    found = catalog(db.admin)
    names = {key.split("(")[0].removeprefix("twin.") for key in found["functions"]}
    assert names == set(LIVE) - set(found["views"])
    assert set(found["views"]) <= set(LIVE)
    for name in LIVE:
        assert f"twin.{name}" in sql(f"live/{name}"), name


def test_migrated_from_empty_equals_upgraded_a_revision_at_a_time(server: Server) -> None:
    app_role = None if server.settings.database_url else server.settings.app_role
    whole = server.create(f"twin_live_whole_{uuid.uuid4().hex[:10]}")
    steps = server.create(f"twin_live_steps_{uuid.uuid4().hex[:10]}")
    try:
        migrate(whole.admin, app_role)
        config = alembic_config()
        script = ScriptDirectory.from_config(config)
        for revision in reversed(list(script.walk_revisions())):
            with steps.admin.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, revision.revision)
        built = catalog(steps.admin)  # what the revisions alone built
        migrate(steps.admin, app_role)
        assert catalog(steps.admin) == catalog(whole.admin)
        # the live bodies are the revisions' own, but for sort_versions' lost setting,
        # grant_app, whose four wrappings are one function now, and what changed since the
        # live files came: reassign re-derives open cases too (revision 0014's cases), and
        # features_after writes each change's import (0017) and each version's source id,
        # and a statement's changes as a set (0019); code_at reads each region layer's
        # partition; register_layer grants a new partition to the roles that write features
        # (a layer declared in a running twin, 0018); features_before numbers a feature
        # brought back from its last change (0019)
        live = catalog(whole.admin)["functions"]
        for key, body in built["functions"].items():
            if key.startswith(("twin.grant_app", "twin.sort_versions", "twin.reassign",
                               "twin.features_after", "twin.code_at",
                               "twin.register_layer", "twin.features_before")):
                continue
            assert live[key] == body, key
        assert not any(key.startswith("twin.grant_app_") for key in built["functions"])
        assert "maintenance_work_mem TO '512MB'" not in built["functions"][
            "twin.sort_versions(regclass)"]
        assert "maintenance_work_mem TO '512MB'" in live["twin.sort_versions(regclass)"]
        # the revisions' views are as they built them (later views live in the live files only)
        views = catalog(steps.admin)["views"]
        assert {name: views[name] for name in built["views"]} == built["views"]
        # down to before the live files and the unwrapping, and up again: the same schema
        with steps.admin.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")
        migrate(steps.admin, app_role)
        assert catalog(steps.admin) == catalog(whole.admin)
    finally:
        server.drop(whole)
        server.drop(steps)


def test_revisions_after_the_live_files_define_no_function() -> None:
    """From revision 0013 on, a revision changes tables and data: a function or view it
    needs goes into twin/store/sql/live/ (and LIVE), where the next reader looks for it."""
    from twin.store.sqlfiles import SQL_DIR

    later = [path for path in sorted(SQL_DIR.glob("[0-9][0-9][0-9][0-9]_*.sql"))
             if int(path.name[:4]) > LAST_REVISION_WITH_CODE]
    for path in later:
        found = re.search(r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(FUNCTION|VIEW|PROCEDURE)\b",
                          path.read_text(encoding="utf-8"), flags=re.M | re.I)
        assert found is None, f"{path.name} defines code: put it in twin/store/sql/live/"
