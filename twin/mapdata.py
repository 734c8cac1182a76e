"""Feed the map: every layer as GeoJSON built by PostgreSQL, handed to the renderer."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, text

from twin.maps import render_map
from twin.registry import all_layers
from twin.settings import Settings
from twin.sqlfiles import sql


def layer_collections(engine: Engine) -> dict[str, dict[str, Any]]:
    """Each layer of the registry as a FeatureCollection."""
    query = text(sql("layer_geojson"))
    with engine.connect() as conn:
        return {name: json.loads(conn.execute(query, {"layer": name}).scalar_one())
                for name in all_layers()}


def standalone_map(engine: Engine, settings: Settings) -> str:
    """The whole twin as one HTML file that opens with no network."""
    with engine.connect() as conn:
        meta = conn.execute(text("SELECT value FROM twin.metadata WHERE key = 'dataset'")
                            ).scalar()
    name = (meta or {}).get("name_zh") or (meta or {}).get("name") or "Twin"
    return render_map(layer_collections(engine), settings, title=f"{name} 数字孪生 Digital twin",
                      standalone=True)
