"""A GIS file read as the twin needs it: opened with GDAL (through pyogrio), its rows streamed
in Arrow batches (memory bounded whatever the file's size), every geometry brought to WGS-84
(EPSG:4326) from the file's CRS or the one given, and out of a Chinese web map's offset datum
when asked (twin.datum).

Formats: whatever GDAL reads; tested with GeoPackage, Shapefile (or a zip holding one),
GeoJSON, FlatGeobuf and CSV (a WKT column, or longitude and latitude columns by the names
below). A file with no CRS is read as WGS-84 only where its format says so (GeoJSON, RFC 7946)
or its coordinates are plainly degrees (CSV); anything else must be given ``--crs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from twin.datum import DATUMS, geometries_to_wgs84
from twin.errors import InvalidInput, Problem

# CSV columns GDAL takes as the geometry: a WKT column, or longitude and latitude columns.
CSV_OPTIONS = {
    "GEOM_POSSIBLE_NAMES": "wkt,WKT,geometry,geom,the_geom,几何",
    "X_POSSIBLE_NAMES": "lon,lng,long,longitude,x,经度,东经",
    "Y_POSSIBLE_NAMES": "lat,latitude,y,纬度,北纬",
    "KEEP_GEOM_COLUMNS": "NO",
}
# Formats whose coordinates are WGS-84 longitude and latitude when the file does not say.
DEGREES_BY_DEFAULT = ("GeoJSON", "GeoJSONSeq", "CSV")
WGS84 = CRS.from_epsg(4326)


@dataclass(frozen=True)
class Source:
    """An opened file: what GDAL read of it, and how its coordinates become WGS-84."""

    path: str
    name: str
    driver: str
    layer: str | None  # the file's layer read (a GeoPackage may hold several)
    fields: tuple[str, ...]
    geometry_type: str | None
    count: int | None  # rows, when the format knows without reading them all
    crs: str  # as the file or --crs gave it
    datum: str | None
    options: dict[str, str]


@dataclass(frozen=True)
class Batch:
    """Rows ``first`` .. ``first + len(geometries) - 1`` (1-based, in file order): their
    values by field, their geometries in WGS-84 (None where a row has none)."""

    first: int
    values: dict[str, list[Any]]
    fids: list[Any]  # the rows' feature ids in the file
    geometries: np.ndarray

    def __len__(self) -> int:
        return len(self.geometries)


def open_source(path: Path, crs: str | None = None, datum: str | None = None,
                layer: str | None = None) -> Source:
    """The file at ``path`` opened, or InvalidInput saying what is wrong with it."""
    if not path.exists():
        raise InvalidInput(f"no file {path}", [Problem("file", str(path), "no such file",
                                                        "文件不存在")])
    if datum is not None and datum not in DATUMS:
        raise InvalidInput(f"unknown datum {datum!r}", [Problem(
            "datum", datum, f"one of {', '.join(DATUMS)}", "坐标偏移类型须为 gcj02 或 bd09")])
    options = CSV_OPTIONS if path.suffix.lower() == ".csv" else {}
    try:
        info = pyogrio.read_info(str(path), layer=layer, **options)
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(f"{path.name}: GDAL cannot read it: {exc}", [Problem(
            "file", path.name, f"not a GIS file GDAL reads ({exc})", "无法读取该GIS文件")]
        ) from None
    given = crs or info["crs"]
    if given is None:
        if info["driver"] not in DEGREES_BY_DEFAULT:
            raise InvalidInput(f"{path.name} does not say its coordinate system", [Problem(
                "crs", None, "the file has no CRS: give one, e.g. --crs EPSG:4549 "
                "(CGCS2000 / 3-degree Gauss-Kruger CM 120E)", "文件未说明坐标系,请用 --crs 指定")])
        given = "EPSG:4326"
    try:
        CRS.from_user_input(given)
    except CRSError as exc:
        raise InvalidInput(f"unknown CRS {given!r}", [Problem(
            "crs", given, f"not a coordinate system PROJ knows ({exc})", "未知坐标系")]) from None
    return Source(path=str(path), name=path.name, driver=info["driver"], layer=layer,
                  fields=tuple(str(f) for f in info["fields"]),
                  geometry_type=info["geometry_type"],
                  count=int(info["features"]) if info["features"] >= 0 else None,
                  crs=given, datum=datum, options=options)


def batches(source: Source, size: int = 5000) -> Iterator[Batch]:
    """The file's rows, ``size`` at a time, geometries in WGS-84."""
    from pyogrio.raw import open_arrow

    to_wgs84 = _transformer(source.crs)
    first = 1
    with open_arrow(source.path, layer=source.layer, batch_size=size, use_pyarrow=True,
                    return_fids=True, **source.options) as (meta, reader):
        geometry_column = meta["geometry_name"] or "wkb_geometry"
        fid_column = meta["fid_column"] or "OGC_FID"
        for table in reader:
            columns = table.to_pydict()
            wkb = columns.pop(geometry_column, [None] * table.num_rows)
            fids = columns.pop(fid_column, [None] * table.num_rows)
            geometries = shapely.from_wkb(np.array(wkb, dtype=object), on_invalid="ignore")
            if (shapely.has_z(geometries) | shapely.has_m(geometries)).any():
                geometries = shapely.force_2d(geometries)  # a copy of every geometry
            if to_wgs84 is not None:
                geometries = shapely.transform(geometries, to_wgs84)
            if source.datum is not None:
                geometries = geometries_to_wgs84(source.datum, geometries)
            # exterior rings counter-clockwise (RFC 7946): a Shapefile writes them clockwise,
            # and the same building must read the same whatever format brought it
            geometries = shapely.orient_polygons(geometries)
            yield Batch(first, {k: v for k, v in columns.items() if k in source.fields}, fids,
                        geometries)
            first += table.num_rows


def _transformer(crs: str) -> Any:
    """A function of (n, 2) coordinates to WGS-84 longitude and latitude; None when they are
    already (CGCS2000, EPSG:4490, is WGS-84 to within a metre here: PROJ's null transform)."""
    source = CRS.from_user_input(crs)
    if source.equals(WGS84, ignore_axis_order=True):
        return None
    transformer = Transformer.from_crs(source, WGS84, always_xy=True)

    def transform(xy: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])
    return transform
