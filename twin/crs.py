"""Coordinate reference systems the API speaks (OGC API - Features Part 2).

Storage is WGS-84 lon/lat (CRS84). EPSG:4326 and EPSG:4490 (CGCS2000) are the same datum here
to within centimetres but, as EPSG defines them, in latitude-longitude axis order: so
coordinates are swapped at the edge, never in storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Crs:
    uri: str
    srid: int
    lat_first: bool  # EPSG's axis order: latitude before longitude
    precision: int  # decimals of coordinates in GeoJSON
    bounds: tuple[float, float, float, float]  # valid x0, y0, x1, y1 in axis order

    def geometry_sql(self, column: str) -> str:
        """The stored geometry in this CRS, axes in its order."""
        if self.srid == 4326 and not self.lat_first:
            return column
        moved = f"ST_Transform({column}, {self.srid})"
        return f"ST_FlipCoordinates({moved})" if self.lat_first else moved


_WEB_MERCATOR = 20037508.342789244
CRS84 = Crs("http://www.opengis.net/def/crs/OGC/1.3/CRS84", 4326, False, 7,
            (-180, -90, 180, 90))
SUPPORTED: dict[str, Crs] = {c.uri: c for c in (
    CRS84,
    Crs("http://www.opengis.net/def/crs/EPSG/0/4326", 4326, True, 7, (-90, -180, 90, 180)),
    Crs("http://www.opengis.net/def/crs/EPSG/0/4490", 4490, True, 7, (-90, -180, 90, 180)),
    Crs("http://www.opengis.net/def/crs/EPSG/0/3857", 3857, False, 2,
        (-_WEB_MERCATOR, -_WEB_MERCATOR, _WEB_MERCATOR, _WEB_MERCATOR)),
)}
# Short spellings people type, for convenience; the URIs are what the API advertises.
ALIASES = {"CRS84": CRS84.uri, "OGC:CRS84": CRS84.uri,
           **{f"EPSG:{c.srid}": c.uri for c in SUPPORTED.values() if c.lat_first},
           "EPSG:3857": "http://www.opengis.net/def/crs/EPSG/0/3857"}


def find_crs(name: str) -> Crs | None:
    """The CRS a URI (or a short spelling like EPSG:4490) names, if supported."""
    return SUPPORTED.get(ALIASES.get(name.strip("[]"), name.strip("[]")))


def geometry_to_crs84(geometry: Any, crs: Crs) -> Any:
    """A GeoJSON geometry sent in ``crs`` (an edit's ``Content-Crs``, as QGIS sends for a layer
    it reads in another CRS), as stored: CRS84 longitude, latitude. What is not a geometry is
    returned as it came, for the edit's own checks to name."""
    if crs == CRS84 or not isinstance(geometry, dict):
        return geometry
    import shapely
    from pyproj import Transformer
    from shapely.geometry import mapping, shape

    try:
        shp = shape(geometry)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        return geometry
    if crs.lat_first:
        shp = shapely.transform(shp, lambda xy: xy[:, ::-1])
    if crs.srid != 4326:
        to_lonlat = Transformer.from_crs(crs.srid, 4326, always_xy=True)
        shp = shapely.transform(shp, lambda xy: np.column_stack(
            to_lonlat.transform(xy[:, 0], xy[:, 1])))
    return mapping(shp)
