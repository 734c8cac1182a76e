"""Bring a database to the current schema and register every layer of ``layers/``."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from twin.registry import all_layers


def migrate(engine: Engine, app_role: str | None = None) -> None:
    """Run Alembic to head, then give each layer its partition and the app role its rights.

    Layers are registered after the migrations because they are data in ``layers/``: a new
    layer is a new file, and the next ``twin db migrate`` creates its partition.
    """
    config = Config()
    config.set_main_option("script_location", str(files("twin") / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with engine.begin() as conn:
        for layer in all_layers().values():
            conn.execute(text("SELECT twin.register_layer(:name, :type, :title)"),
                         {"name": layer.name, "type": layer.postgis_type, "title": layer.title})
        if app_role:
            conn.execute(text("SELECT twin.grant_app(:role)"), {"role": app_role})
