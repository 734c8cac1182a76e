"""Export one layer, now or as it was at a moment, to a GeoPackage, GeoJSON, FlatGeobuf, CSV
or zipped Shapefile, in WGS-84 or, for Chinese web maps, in their GCJ-02 or BD-09 datum.

For people who work in QGIS, geopandas, Excel or on AMap/Baidu rather than through the API. The
rows come from one SQL statement over ``twin.features.reads.source``, so "as of T" gives the
very versions the API serves; GDAL (through pyogrio) writes the file, so any GIS reads it.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
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

from twin.datum import DATUMS, geometries_from_wgs84
from twin.errors import InvalidInput, Problem
from twin.features.cql import column_sql, sortable_names
from twin.features.reads import COMMON_COLUMNS, source
from twin.layer import Layer
from twin.registry import get_layer
from twin.times import parse_time

# GDAL driver by file suffix; ".zip" (".shp.zip" too) is a Shapefile zipped, since a bare
# .shp is four files or more and a user sends one.
SHAPEFILE = "ESRI Shapefile"
DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON", ".fgb": "FlatGeobuf",
           ".csv": "CSV", ".zip": SHAPEFILE}
# Formats with no list type: there tags are one comma-joined text, as the importer takes them.
_JOINED_TAGS = ("GPKG", "FlatGeobuf", "CSV", SHAPEFILE)
# Formats with no time-zoned date-time (a .dbf keeps dates only; GDAL's CSV drops microseconds
# and writes 2026/06/30 10:00:00+00): there times are ISO 8601 text, as the API gives them.
_TEXT_TIMES = ("CSV", SHAPEFILE)
# A .dbf's field names are at most 10 bytes, and its text values at most 254 bytes.
SHAPEFILE_NAME_BYTES = 10
SHAPEFILE_TEXT_BYTES = 254
DATUM_NAMES = {"gcj02": "GCJ-02", "bd09": "BD-09"}
# What a file in a web-map datum says of itself where its format has room (a layer's
# description): its CRS reads EPSG:4326, the nearest there is, since neither datum has a code.
DATUM_NOTES = {
    "gcj02": "coordinates are GCJ-02 (AMap/Tencent web maps, about 500 m off WGS-84 here), "
             "not WGS-84: the CRS says EPSG:4326 because GCJ-02 has no EPSG code",
    "bd09": "coordinates are BD-09 (Baidu web maps, about 1.1 km off WGS-84 here), not "
            "WGS-84: the CRS says EPSG:4326 because BD-09 has no EPSG code",
}

# pandas dtypes that keep the database's types, NULLs included (an integer column holding a
# NULL would otherwise become float), and give an empty file the same schema as a full one.
_DTYPES = {pg_types[name].oid: dtype for name, dtype in (
    ("bool", "boolean"), ("int4", "Int64"), ("int8", "Int64"), ("float8", "Float64"),
    ("timestamptz", "datetime64[ns, UTC]"))}
_TIMESTAMPTZ = pg_types["timestamptz"].oid


@dataclass(frozen=True)
class ExportTarget:
    """What to write where: checked in full before the database is asked anything."""

    layer: Layer
    path: Path
    driver: str
    as_of: datetime | None  # None: the present
    datum: str | None = None  # None: WGS-84; "gcj02" or "bd09": a Chinese web map's


@dataclass(frozen=True)
class Exported:
    """What was written; ``history_begins`` is the twin's first moment (None: it has none)."""

    target: ExportTarget
    features: int
    as_of: datetime  # the asked moment, or the database's time of reading the present
    history_begins: datetime | None
    # Shapefile only: columns renamed to fit a .dbf (old name: new), and those whose text
    # was cut to 254 bytes
    renamed: dict[str, str] = field(default_factory=dict)
    clipped: tuple[str, ...] = ()

    @property
    def before_history(self) -> bool:
        return self.target.as_of is not None and (
            self.history_begins is None or self.target.as_of < self.history_begins)


def export_target(layer_name: str, path: Path, as_of: str | None,
                  datum: str | None = None) -> ExportTarget:
    """The export asked for, or the first thing wrong with it (so no file is written)."""
    suffix = path.suffix.lower()
    driver = DRIVERS.get(suffix)
    inner = Path(path.stem).suffix.lower()
    if driver is None or (driver == SHAPEFILE and inner in DRIVERS):
        if suffix == ".shp":
            hint = "; a Shapefile is several files: name it .shp.zip for one zip holding them"
        elif driver == SHAPEFILE:  # "out.gpkg.zip" is surely not meant as a Shapefile
            hint = f"; a .zip is a zipped Shapefile here, not a zipped {inner}"
        else:
            hint = ""
        raise InvalidInput(
            f"cannot export to {path}: its suffix {suffix or '(none)'} is not one of "
            f"{', '.join(DRIVERS)} (.shp.zip){hint}",
            [Problem("file", path.name, "not a format twin export writes",
                     "不支持的文件格式,请用 .gpkg .geojson .fgb .csv 或 .shp.zip")])
    if datum is not None and datum not in DATUMS:
        raise InvalidInput(f"unknown datum {datum!r}: one of {', '.join(DATUMS)}", [Problem(
            "datum", datum, f"one of {', '.join(DATUMS)}", "坐标偏移类型须为 gcj02 或 bd09")])
    target = ExportTarget(get_layer(layer_name), path, driver, parse_time("--as-of", as_of),
                          datum)
    clash = set(_added_columns(target)) & {"id", *COMMON_COLUMNS,
                                           *target.layer.attributes.model_fields}
    if clash:  # a layer file may name an attribute anything
        raise InvalidInput(f"cannot export {layer_name} to {path.name}: the export adds a "
                           f"column {', '.join(sorted(clash))}, which is already an attribute")
    return target


def _added_columns(target: ExportTarget) -> tuple[str, ...]:
    """Columns the export adds to the layer's: a CSV's lon and lat, a web-map datum's name."""
    points = target.driver == "CSV" and target.layer.geometry_type == "Point"
    return (*(("lon", "lat") if points else ()), *(("datum",) if target.datum else ()))


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
    geometries = shapely.from_wkb(frame.pop("wkb"))
    if target.datum is not None:
        geometries = geometries_from_wgs84(target.datum, geometries)
    # still "EPSG:4326" in a web-map datum: the nearest CRS there is (DATUM_NOTES)
    frame = _for_format(frame.set_geometry(geometries, crs="EPSG:4326"), target,
                        [c.name for c in columns if c.type_code == _TIMESTAMPTZ])
    renamed: dict[str, str] = {}
    clipped: tuple[str, ...] = ()
    if target.driver == SHAPEFILE:
        renamed = shapefile_names([str(c) for c in frame.columns if c != frame.geometry.name])
        frame = frame.rename(columns=renamed)
        clipped = _over_long_text(frame, SHAPEFILE_TEXT_BYTES)
    exported = Exported(target, len(frame), target.as_of or moment[0], moment[1], renamed,
                        clipped)
    options = {**_as_of_options(target.driver, exported.as_of, target.datum),
               **_format_options(target.driver)}
    try:
        if target.driver == SHAPEFILE:
            _write_zipped_shapefile(frame, target, options)
        else:
            pyogrio.write_dataframe(frame, target.path, layer=target.layer.name,
                                    driver=target.driver,
                                    geometry_type=target.layer.geometry_type, **options)
    except (DataSourceError, OSError) as exc:
        raise InvalidInput(f"cannot write {target.path}: {exc}") from None
    return exported


def shapefile_names(names: list[str]) -> dict[str, str]:
    """The new name of each column too long for a .dbf (10 bytes): its first 10 bytes, or,
    if another column has those (or a shorter name), its first 8 and _1, _2, ... The same
    columns always get the same names, unlike GDAL's silent cut, and the CLI prints them."""
    taken = {name.casefold() for name in names if _fits(name)}  # .dbf names ignore case
    renamed: dict[str, str] = {}
    for name in names:
        if _fits(name):
            continue
        short, n = _clip(name, SHAPEFILE_NAME_BYTES), 0
        while short.casefold() in taken:
            n += 1
            short = _clip(name, SHAPEFILE_NAME_BYTES - len(f"_{n}")) + f"_{n}"
        taken.add(short.casefold())
        renamed[name] = short
    return renamed


def _fits(name: str) -> bool:
    return len(name.encode()) <= SHAPEFILE_NAME_BYTES


def _clip(text: str, size: int) -> str:
    """The first ``size`` bytes of ``text`` in UTF-8, never half a character."""
    return text.encode()[:size].decode(errors="ignore")


def _over_long_text(frame: geopandas.GeoDataFrame, size: int) -> tuple[str, ...]:
    """The text columns holding a value longer than ``size`` bytes (GDAL cuts them)."""
    return tuple(str(name) for name in frame.columns if name != frame.geometry.name
                 and any(isinstance(v, str) and len(v.encode()) > size for v in frame[name]))


def _for_format(frame: geopandas.GeoDataFrame, target: ExportTarget,
                times: list[str]) -> geopandas.GeoDataFrame:
    """The columns as the format can hold them: the ``times`` as text where it has no zoned
    date-time; a CSV's points also as lon and lat (Excel and web maps plot those, and
    ``twin import`` reads them back); the datum in a ``datum`` column on every row, which
    survives any later conversion and is the one place a CSV or Shapefile can say it."""
    if target.driver in _TEXT_TIMES:
        for name in times:
            text = frame[name].map(lambda t: t.isoformat(), na_action="ignore")
            frame[name] = text.astype(object).where(text.notna(), None)
    added = _added_columns(target)
    if "lon" in added:
        frame = frame.assign(lon=frame.geometry.x, lat=frame.geometry.y)
    return frame.assign(datum=target.datum) if "datum" in added else frame


def _format_options(driver: str) -> dict[str, Any]:
    """GDAL creation options each format needs here."""
    if driver == "CSV":
        # WKT in the first column; a byte order mark because Excel, without one, reads a CSV
        # in the system's code page (GBK on a Chinese Windows) and garbles every Chinese name
        return {"GEOMETRY": "AS_WKT", "WRITE_BOM": "YES"}
    if driver == SHAPEFILE:
        return {"ENCODING": "UTF-8"}  # and a .cpg saying so, which QGIS and ArcGIS honour
    return {}


def _write_zipped_shapefile(frame: geopandas.GeoDataFrame, target: ExportTarget,
                            options: dict[str, Any]) -> None:
    """The Shapefile's parts (.shp .shx .dbf .prj .cpg, named after the layer) in one zip.
    Written next to the target and moved onto it whole, so a failure leaves no half file."""
    with tempfile.TemporaryDirectory(prefix=f".{target.path.name}.",
                                     dir=target.path.parent) as scratch:
        folder = Path(scratch)
        pyogrio.write_dataframe(frame, folder / f"{target.layer.name}.shp", driver=SHAPEFILE,
                                geometry_type=target.layer.geometry_type, **options)
        parts = sorted(folder.iterdir())
        packed = folder / ".zip"  # not a part's name: a part is the layer's name and a suffix
        with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
            for part in parts:
                archive.write(part, part.name)
        os.replace(packed, target.path)


def _select_sql(target: ExportTarget, params: dict[str, Any]) -> str:
    """Every column of the export, typed by PostgreSQL, and the geometry as WKB."""
    layer = target.layer
    tags = "array_to_string(f.tags, ',')" if target.driver in _JOINED_TAGS else "f.tags"
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


def _as_of_options(driver: str, as_of: datetime, datum: str | None) -> dict[str, Any]:
    """The moment the file shows, and its datum if not WGS-84, where each format keeps such
    facts: layer metadata (and, for a datum, the layer's description, which QGIS shows) in a
    GeoPackage or FlatGeobuf, members of the FeatureCollection in GeoJSON (GDAL 3.9+ writes
    them). A CSV or Shapefile has no room: only its ``datum`` column says it."""
    facts = {"as_of": as_of.isoformat(), **({"datum": datum} if datum else {})}
    about = {"DESCRIPTION": DATUM_NOTES[datum]} if datum else {}
    if driver in ("GPKG", "FlatGeobuf"):
        return {"layer_metadata": facts, **about}
    if driver == "GeoJSON":
        return {"FOREIGN_MEMBERS_COLLECTION": json.dumps(
            {**facts, **({"description": DATUM_NOTES[datum]} if datum else {})})}
    return {}
