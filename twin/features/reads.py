"""Reading features: small functions that each build one piece of SQL and its parameters.

PostgreSQL builds every feature's GeoJSON text; Python only joins the pieces and streams
them. Values are always bound (psycopg ``%(name)s``); identifiers come from the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from twin.crs import CRS84, Crs
from twin.features.cql import column_sql
from twin.layer import Layer
from twin.registry import get_layer, layer_cache

# Common fields every feature carries next to the layer's attributes, as SQL over alias f.
COMMON_COLUMNS: dict[str, str] = {
    "name": "f.name",
    "tags": "f.tags",
    "micro_grid": "f.grid_code",
    "residential_area": "f.area_code",
    "version": "f.version",
    "updated": "f.valid_from",
    "changed_by": "f.changed_by",
}

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class SortKey:
    name: str
    descending: bool = False


@dataclass(frozen=True)
class ItemsQuery:
    """One page of a layer: where, when, which properties, in which order, after what."""

    layer: Layer
    limit: int = DEFAULT_LIMIT
    bbox: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in bbox_srid
    bbox_srid: int = 4326
    crs: Crs = CRS84
    sort: tuple[SortKey, ...] = ()
    after: tuple[Any, ...] | None = None  # the sort values and id of the previous page's last
    properties: tuple[str, ...] | None = None
    # datetime: a feature's validity [valid_from, now) overlaps the asked time when it
    # began before the asked time's end
    valid_before: datetime | None = None
    where: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)
    as_of: datetime | None = None  # the twin as it was then (from its versions)

    @property
    def whole_layer(self) -> bool:
        """The query selects every present feature of the layer (paging, order, properties
        and CRS aside): its numberMatched is the layer's count, which the triggers keep in
        twin.feature_counts as they write (counting the layer in the page's statement made
        a page of 100 buildings 1.9 -> 2.9 ms with 4,500 of them, 2.3 -> 4.0 ms with
        24,500). A filter, bbox or datetime (or asOf) would make it a count of the whole
        selection, as costly as reading it all; without a count QGIS and GDAL download a
        whole layer to count it, so it is given whenever it is this cheap, and only then."""
        return (self.bbox is None and not self.where and self.valid_before is None
                and self.as_of is None)


# The bilingual title of each common field (and of id and geometry), for pages and schemas.
COMMON_TITLES: dict[str, str] = {
    "id": "编号 Id", "geometry": "几何 Geometry", "name": "名称 Name", "tags": "标签 Tags",
    "photos": "照片 Photos", "micro_grid": "微网格 Micro-grid",
    "residential_area": "居民区 Residential area", "version": "版本 Version",
    "updated": "更新时间 Updated", "changed_by": "修改人 Changed by",
}


def property_names(layer: Layer) -> list[str]:
    """What ``properties=`` may name: the layer's attributes and the common fields."""
    return [*layer.attributes.model_fields, *COMMON_COLUMNS]


def properties_sql(layer: Layer, chosen: tuple[str, ...]) -> str:
    """The chosen properties as a JSON object's text, in the order asked. Written by
    concatenation, which costs PostgreSQL half of building a jsonb and printing it; the
    registry keeps attribute names apart from the common ones."""
    if not chosen:
        return "'{}'"
    head = " || ".join(f"'{',' if i else '{'}{json.dumps(name)}:' || {_json_text(layer, name)}"
                       for i, name in enumerate(chosen))
    return f"{head} || '}}'"


def _json_text(layer: Layer, name: str) -> str:
    """SQL giving the JSON text of one property (``null`` when missing)."""
    if name in COMMON_COLUMNS:
        return f"coalesce(to_json({COMMON_COLUMNS[name]})::text, 'null')"
    return f"coalesce((f.props -> '{_attribute(layer, name)}')::text, 'null')"


def _attribute(layer: Layer, name: str) -> str:
    """An attribute name checked against the layer's model (never request text in SQL)."""
    if name not in layer.attributes.model_fields:
        raise KeyError(name)
    return name


def tile_sql(layer: Layer) -> str:
    """A Mapbox vector tile of the layer and its content digest (the ETag).

    The tile envelope is transformed to WGS-84 for the && test, not the column, so the GiST
    index is used; the digest of (id, version) changes when a feature in the tile changes,
    arrives or leaves.
    """
    attrs = "".join(f", {column_sql(layer, name)} AS {name}" for name in layer.tile_attributes)
    return f"""
WITH env AS (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS box),
q AS (
    SELECT f.id, f.version, f.name,
           ST_AsMVTGeom(ST_Transform(f.geom, 3857), env.box, 4096, 64, true) AS geom{attrs}
    FROM twin.features f, env
    WHERE f.layer = %(layer)s AND f.geom && ST_Transform(env.box, 4326)
)
SELECT (SELECT ST_AsMVT(t, %(layer)s, 4096, 'geom', 'id')
        FROM (SELECT id, name, geom{"".join(f", {n}" for n in layer.tile_attributes)}
              FROM q WHERE geom IS NOT NULL) AS t),
       (SELECT md5(coalesce(string_agg(id || '.' || version, ',' ORDER BY id), '')) FROM q)"""


def feature_sql(layer: Layer, chosen: tuple[str, ...] | None = None, crs: Crs = CRS84,
                stored: bool = True) -> str:
    """One feature as GeoJSON text, its coordinates in ``crs``. The whole feature of the
    present in the default CRS is the text the triggers keep (``f.geojson``), read, not
    built: ``stored=False`` where the rows are not the present's (versions keep no text) or
    to measure building it. Every other text is built by PostgreSQL per row, the whole
    feature by ``twin.feature_geojson`` (the text's one definition, which the triggers use)."""
    if chosen is None:
        if stored and crs == CRS84:
            return "f.geojson"
        return ("twin.feature_geojson(f.id, "
                f"ST_AsGeoJSON({crs.geometry_sql('f.geom')}, {crs.precision}), f.name, "
                "f.tags, f.grid_code, f.area_code, f.version, f.valid_from, f.changed_by, "
                "f.props)")
    return _feature_sql(layer.name, chosen, crs)


@layer_cache
@lru_cache(maxsize=256)
def _feature_sql(layer_name: str, chosen: tuple[str, ...], crs: Crs) -> str:
    layer = get_layer(layer_name)
    return (f"""'{{"type":"Feature","id":' || f.id || ',"geometry":' || """
            f"ST_AsGeoJSON({crs.geometry_sql('f.geom')}, {crs.precision}) || "
            f"""',"properties":' || {properties_sql(layer, chosen)} || '}}'""")


def page_sql(query: ItemsQuery, chunk: int, versions: bool = False
             ) -> tuple[str, dict[str, Any]]:
    """A page as rows of up to ``chunk`` features each: (their texts joined by commas, as
    UTF-8 bytes, rows found (a next page exists when that exceeds the limit), the page's
    digest, the layer's count when the query is the whole layer (else NULL), the (id,
    version) of each feature in the row when ``versions`` is asked (else NULL), the page's
    last sort keys...). Python handles a value per chunk, not a row per feature, passes the
    bytes on without decoding them, and a large page still streams a chunk at a time. Read it
    with binary results (bytea arrives as raw bytes). Every row carries the same count, digest
    and last keys, so the first row is enough for the headers (ETag, and the next page's link).

    The digest, a 64-bit XOR of the hashes of every row's (id, version), is the page's ETag:
    it changes when the page would, whenever and in whatever order writers commit. A page of
    at most one chunk is one row (an empty page too); a larger one numbers its rows once in
    a CTE and groups them (an empty page has no rows).
    """
    params: dict[str, Any] = {"page": query.limit, "chunk": chunk}
    keys = len(sort_keys(query))
    rows = _select(query, params)
    digest = "bit_xor(hashint8extended(id, v))"
    # an uncorrelated subquery: read once per statement, in the page's snapshot
    matched = ("coalesce((SELECT c.features FROM twin.feature_counts c "
               "WHERE c.layer = %(layer)s), 0)" if query.whole_layer else "NULL::bigint")
    # a two-dimensional array, a row [id, version] per feature
    seen = "array_agg(ARRAY[id, v])" if versions else "NULL::bigint[]"
    if query.limit <= chunk:
        last = "".join(f", (array_agg(k{i} ORDER BY n DESC) FILTER (WHERE n <= %(page)s))[1]"
                       for i in range(keys))
        if versions:
            seen += " FILTER (WHERE n <= %(page)s)"
        # row_number() numbers the rows as they come out of the ordered subquery
        return (f"SELECT convert_to(string_agg(feature, ',' ORDER BY n) "
                f"FILTER (WHERE n <= %(page)s), 'UTF8'), count(*), {digest}, {matched}, "
                f"{seen}{last} "
                f"FROM (SELECT *, row_number() OVER () AS n FROM ({rows}) AS r) AS numbered",
                params)
    last = "".join(f", (SELECT k{i} FROM last)" for i in range(keys))
    return (f"WITH numbered AS MATERIALIZED (SELECT *, row_number() OVER () AS n "
            f"FROM ({rows}) AS r), whole AS (SELECT count(*) AS found, {digest} AS digest "
            f"FROM numbered), last AS (SELECT * FROM numbered WHERE n <= %(page)s "
            f"ORDER BY n DESC LIMIT 1) "
            f"SELECT convert_to(string_agg(feature, ',' ORDER BY n), 'UTF8'), "
            f"(SELECT found FROM whole), (SELECT digest FROM whole), {matched}, {seen}{last} "
            f"FROM numbered WHERE n <= %(page)s GROUP BY (n - 1) / %(chunk)s "
            f"ORDER BY (n - 1) / %(chunk)s", params)


def _select(query: ItemsQuery, params: dict[str, Any]) -> str:
    """SELECT feature, id, v (its version), k0, k1... (the sort keys) of the page and one
    row more."""
    params.update({"layer": query.layer.name, "limit": query.limit + 1})
    where = ["f.layer = %(layer)s"]
    if query.bbox is not None:
        # the envelope is built once and compared with &&, so the GiST index is used
        box = "ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, %(bbox_srid)s)"
        if query.bbox_srid != 4326:
            box = f"ST_Transform({box}, 4326)"
        where.append(f"f.geom && {box}")
        where.append(f"ST_Intersects(f.geom, {box})")
        params["bbox_srid"] = query.bbox_srid
        params.update(zip(("x0", "y0", "x1", "y1"), query.bbox, strict=True))
    if query.valid_before is not None:
        where.append("f.valid_from <= %(until)s")
        params["until"] = query.valid_before
    keys = sort_keys(query)
    if query.after is not None:
        where.append(_after(keys, query.after, params))
    for clause, values in query.where:
        where.append(f"({clause})")
        params.update(values)
    order = ", ".join(f"{expr} {'DESC' if desc else 'ASC'}" for expr, desc in keys)
    columns = ", ".join(f"{expr} AS k{i}" for i, (expr, _) in enumerate(keys))
    feature = feature_sql(query.layer, query.properties, query.crs, stored=query.as_of is None)
    return (f"SELECT {feature} AS feature, "
            f"f.id, f.version AS v, {columns} FROM {source(query.as_of, params)} "
            f"WHERE {' AND '.join(where)} "
            f"ORDER BY {order} LIMIT %(limit)s")


def sort_keys(query: ItemsQuery) -> list[tuple[str, bool]]:
    """(SQL, descending) of each key; NULLs sort last through a flag key; id breaks ties."""
    keys: list[tuple[str, bool]] = []
    for key in query.sort:
        expr = column_sql(query.layer, key.name)
        keys += [(f"({expr} IS NULL)", False), (expr, key.descending)]
    return [*keys, ("f.id", False)]


def _after(keys: list[tuple[str, bool]], last: tuple[Any, ...], params: dict[str, Any]) -> str:
    """Keyset condition: rows strictly after ``last`` in the order of ``keys``."""
    ors = []
    for i, (expr, desc) in enumerate(keys):
        same = [f"{keys[j][0]} IS NOT DISTINCT FROM %(k{j})s" for j in range(i)]
        ors.append(" AND ".join([*same, f"{expr} {'<' if desc else '>'} %(k{i})s"]))
    params.update({f"k{i}": value for i, value in enumerate(last)})
    return "(" + " OR ".join(f"({clause})" for clause in ors) + ")"


def one_feature_sql(layer: Layer, crs: Crs = CRS84, as_of: datetime | None = None
                    ) -> tuple[str, dict[str, Any]]:
    """One feature by id with its version (the ETag)."""
    params: dict[str, Any] = {}
    feature = feature_sql(layer, crs=crs, stored=as_of is None)
    return (f"SELECT {feature}, f.version FROM {source(as_of, params)} "
            "WHERE f.layer = %(layer)s AND f.id = %(id)s", params)


def source(as_of: datetime | None, params: dict[str, Any]) -> str:
    """The features as alias f: the present, or the versions valid at ``as_of``.

    Versions carry the same columns as features, so every query above reads either.
    """
    if as_of is None:
        return "twin.features f"
    params["as_of"] = as_of
    return ("(SELECT feature_id AS id, layer, name, props, tags, geom, grid_code, area_code, "
            "subdistrict_code, version, lower(valid) AS valid_from, changed_by "
            "FROM twin.feature_versions v "
            f"WHERE {valid_at('as_of')}) f")


def valid_at(param: str) -> str:
    """Versions ``v`` current at the moment in parameter ``param``. The second condition
    repeats the first in the partition key's terms, so the months of versions that closed
    before it are not read at all."""
    return (f"v.valid @> %({param})s::timestamptz "
            f"AND coalesce(upper(v.valid), 'infinity') > %({param})s::timestamptz")


# The layer's extent, and its count (a collection's itemCount: QGIS takes it as the layer's
# feature count instead of asking for one), as the triggers keep it.
EXTENT_SQL = """
SELECT coalesce(ST_EstimatedExtent('twin', %(table)s, 'geom')::box2d,
                (SELECT ST_Extent(geom) FROM twin.features WHERE layer = %(layer)s)) AS box,
       coalesce((SELECT features FROM twin.feature_counts WHERE layer = %(layer)s), 0) AS n
"""


def extent_bbox(box: str | None) -> list[float] | None:
    """``BOX(x0 y0,x1 y1)`` as ``[x0, y0, x1, y1]``."""
    if not box:
        return None
    inner = box[box.index("(") + 1:box.index(")")]
    low, high = inner.split(",")
    return [float(v) for v in (*low.split(), *high.split())]
