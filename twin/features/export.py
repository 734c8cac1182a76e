"""Export one layer, now or as it was at a moment, to a GeoPackage or GeoJSON file.

For people who work in QGIS or geopandas rather than through the API. The rows come from one
SQL statement over ``twin.features.reads.source``, so "as of T" gives the very versions the API
serves; GDAL (through pyogrio) writes the file, so any GIS reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas
import psycopg
import pyogrio
import shapely
from psycopg.postgres import types as pg_types
from pyogrio.errors import DataSourceError
from sqlalchemy import Engine

from twin.errors import InvalidInput
from twin.features.cql import column_sql, sortable_names
from twin.features.reads import COMMON_COLUMNS, source
from twin.layer import Layer
from twin.registry import get_layer
from twin.times import parse_time

# GDAL driver by file suffix.
DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}

# pandas dtypes that keep the database's types, NULLs included (an integer column holding a
# NULL would otherwise become float), and give an empty file the same schema as a full one.
_DTYPES = {pg_types[name].oid: dtype for name, dtype in (
    ("bool", "boolean"), ("int4", "Int64"), ("int8", "Int64"), ("float8", "Float64"),
    ("timestamptz", "datetime64[ns, UTC]"))}


@dataclass(frozen=True)
class ExportTarget:
    """What to write where: checked in full before the database is asked anything."""

    layer: Layer
    path: Path
    driver: str
    as_of: datetime | None  # None: the present


@dataclass(frozen=True)
class Exported:
    """What was written; ``history_begins`` is the twin's first moment (None: it has none)."""

    target: ExportTarget
    features: int
    as_of: datetime  # the asked moment, or the database's time of reading the present
    history_begins: datetime | None

    @property
    def before_history(self) -> bool:
        return self.target.as_of is not None and (
            self.history_begins is None or self.target.as_of < self.history_begins)


def export_target(layer_name: str, path: Path, as_of: str | None) -> ExportTarget:
    """The export asked for, or the first thing wrong with it (so no file is written)."""
    driver = DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise InvalidInput(f"cannot export to {path}: its suffix {path.suffix or '(none)'} "
                           f"is not one of {', '.join(DRIVERS)}")
    return ExportTarget(get_layer(layer_name), path, driver,
                        parse_time("--as-of", as_of))


def export_layer(engine: Engine, target: ExportTarget) -> Exported:
    """Read the layer with one SQL statement and write it; an existing GeoPackage keeps its
    other layers, so several exports can share one file."""
    params: dict[str, Any] = {"layer": target.layer.name}
    sql = _select_sql(target, params)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection  # psycopg: takes twin.features.reads' %(name)s
        assert isinstance(raw, psycopg.Connection)
        moment = raw.execute("SELECT now(), (SELECT min(lower(valid)) "
                             "FROM twin.feature_versions)").fetchone()
        assert moment is not None
        cursor = raw.execute(sql, params)
        rows = cursor.fetchall()
        columns = cursor.description or []
    frame = geopandas.GeoDataFrame(rows, columns=[c.name for c in columns]).astype(
        {c.name: _DTYPES[c.type_code] for c in columns if c.type_code in _DTYPES})
    frame = frame.set_geometry(shapely.from_wkb(frame.pop("wkb")), crs="EPSG:4326")
    exported = Exported(target, len(frame), target.as_of or moment[0], moment[1])
    try:
        pyogrio.write_dataframe(frame, target.path, layer=target.layer.name,
                                driver=target.driver,
                                geometry_type=target.layer.geometry_type,
                                **_as_of_options(target.driver, exported.as_of))
    except DataSourceError as exc:
        raise InvalidInput(f"cannot write {target.path}: {exc}") from None
    return exported


def _select_sql(target: ExportTarget, params: dict[str, Any]) -> str:
    """Every column of the export, typed by PostgreSQL, and the geometry as WKB."""
    layer = target.layer
    # GeoPackage has no list type: its tags are one comma-joined text
    tags = "array_to_string(f.tags, ',')" if target.driver == "GPKG" else "f.tags"
    columns = {"id": "f.id", **COMMON_COLUMNS, "tags": tags,
               **{name: _attribute_sql(layer, name) for name in layer.attributes.model_fields}}
    listed = ", ".join(f'{expr} AS "{name}"' for name, expr in columns.items())
    return (f"SELECT {listed}, ST_AsBinary(f.geom) AS wkb "  # noqa: S608 (registry names)
            f"FROM {source(target.as_of, params)} WHERE f.layer = %(layer)s ORDER BY f.id")


def _attribute_sql(layer: Layer, name: str) -> str:
    """A scalar attribute typed as filters see it; any other kind as its JSON text."""
    if name in sortable_names(layer):
        return column_sql(layer, name)
    return f"(f.props -> '{name}')::text"


def _as_of_options(driver: str, as_of: datetime) -> dict[str, Any]:
    """The moment the file shows, where each format keeps such facts: layer metadata in a
    GeoPackage, a member of the FeatureCollection in GeoJSON (GDAL 3.9+ writes it)."""
    if driver == "GPKG":
        return {"layer_metadata": {"as_of": as_of.isoformat()}}
    return {"FOREIGN_MEMBERS_COLLECTION": json.dumps({"as_of": as_of.isoformat()})}
