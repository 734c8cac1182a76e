"""Feed the map: every layer as GeoJSON built by PostgreSQL, handed to the renderer."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from twin.features.reads import source
from twin.maps.page import render_live_map, render_map
from twin.registry import all_layers
from twin.settings import Settings
from twin.store.sqlfiles import sql


def layer_collections(engine: Engine, as_of: datetime | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Each layer of the registry as a FeatureCollection, now or as it was at ``as_of``."""
    params: dict[str, Any] = {}
    query = sql("layer_geojson").format(features=source(as_of, params))
    with engine.connect() as conn:
        return {name: json.loads(conn.exec_driver_sql(query, params | {"layer": name})
                                 .scalar_one())
                for name in all_layers()}


def standalone_map(engine: Engine, settings: Settings, as_of: datetime | None = None) -> str:
    """The whole twin (as it was at ``as_of``, when given) as one HTML file that opens with
    no network."""
    with engine.connect() as conn:
        title = dataset_title(conn)
    when = f"截至 As of {as_of.isoformat()}" if as_of else None
    return render_map(layer_collections(engine, as_of), settings,
                      title=f"{title} · {when}" if when else title, standalone=True, note=when)


def live_map(engine: Engine, settings: Settings) -> str:
    """The map page the API serves: no feature in it, first shown on the micro-grids' box
    (the whole twin's when there are none)."""
    with engine.connect() as conn:
        title = dataset_title(conn)
        box = conn.execute(text(
            "SELECT ST_YMin(b), ST_XMin(b), ST_YMax(b), ST_XMax(b) FROM (SELECT coalesce("
            "(SELECT ST_Extent(geom) FROM twin.features WHERE layer = 'micro_grids'), "
            "(SELECT ST_Extent(geom) FROM twin.features)) AS b) AS x")).one()
    bounds = None if box[0] is None else [[box[0], box[1]], [box[2], box[3]]]
    return render_live_map(settings, title=f"{title} · 指挥中心 Command centre", bounds=bounds)


def dataset_title(conn: Connection) -> str:
    """The twin's name from its metadata, as page titles give it."""
    meta = conn.execute(text("SELECT value FROM twin.metadata WHERE key = 'dataset'")).scalar()
    name = (meta or {}).get("name_zh") or (meta or {}).get("name") or "Twin"
    return f"{name} 数字孪生 Digital twin"
