"""Bring a database to the current schema and register every layer of ``layers/``."""

from __future__ import annotations

import json
from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from twin.registry import all_layers
from twin.settings import DEFAULT_TIME_ZONE
from twin.store.layerspecs import record_files, refresh_layers
from twin.store.live import apply_live
from twin.store.maintain import make_partitions


def alembic_config() -> Config:
    """Alembic's configuration: the revisions in ``twin/store/migrations``, run on the
    connection a caller puts in ``attributes["connection"]``."""
    config = Config()
    config.set_main_option("script_location", str(files("twin.store") / "migrations"))
    return config


def migrate(engine: Engine, app_role: str | None = None,
            time_zone: str = DEFAULT_TIME_ZONE) -> None:
    """Run Alembic to head, apply the live definitions (twin.store.live), then give each layer
    its partition and the app role its rights.

    Layers are registered after the migrations because they are data in ``layers/``: a new
    layer is a new file, and the next ``twin db migrate`` creates its partition and records
    its spec (a changed file: its next version; twin.store.layerspecs). The change
    counts learn the time zone and the layers' state fields here too (a change of either
    recounts the log), in the migrations' transaction, so they are never left uncounted.
    The versions get this and next month's partitions (``twin db maintain`` keeps that up).
    """
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        apply_live(conn)
        conn.execute(text("SELECT twin.fill_work_days()"))  # the working calendar's days
        record_files(conn)
        refresh_layers(conn)  # with those an admin declared in the running twin
        layers = all_layers().values()
        conn.execute(text("SELECT twin.configure_change_counts(:zone, CAST(:fields AS jsonb))"),
                     {"zone": time_zone, "fields": json.dumps(
                         {layer.name: layer.state_field for layer in layers if layer.state_field})})
        if app_role:
            conn.execute(text("SELECT twin.grant_app(:role)"), {"role": app_role})
        make_partitions(conn)
