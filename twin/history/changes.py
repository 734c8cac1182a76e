"""Reading the change log: pages of changes, a feature's versions, and what changed between
two moments — each one SQL statement whose JSON PostgreSQL writes.

The feed is ordered by (tx, id), not by id alone. Ids are drawn when a row is written, so a
transaction that commits late can leave a smaller id behind one already read; transaction
ids are ordered too, and every transaction older than the oldest one still running
(``pg_snapshot_xmin``) has ended. Reading oldest-first only below that horizon, and resuming
after the (tx, id) of the last change read, a reader never skips a change nor sees one twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from twin.features.reads import valid_at

# One change as JSON: every field of the log row, in the names the API documents.
CHANGE_JSON = """json_build_object(
    'id', c.id, 'time', c.server_time, 'client_time', c.client_time, 'actor', c.actor,
    'role', c.role, 'device', c.device, 'operation', c.operation, 'layer', c.layer,
    'feature_id', c.feature_id, 'version_before', c.version_before,
    'version_after', c.version_after, 'micro_grid', c.grid_code,
    'residential_area', c.area_code, 'reason', c.reason, 'edit_id', c.edit_id,
    'changed', c.changed, 'old', c.old_values, 'new', c.new_values,
    'geometry_changed', c.geom_changed)"""

# The same as CSV columns (values and changed fields as JSON text).
CSV_COLUMNS = """c.id, c.server_time AS time, c.client_time, c.actor, c.role, c.device,
    c.operation, c.layer, c.feature_id, c.version_before, c.version_after,
    c.grid_code AS micro_grid, c.area_code AS residential_area, c.reason, c.edit_id,
    array_to_string(c.changed, ';') AS changed, c.old_values AS old, c.new_values AS new,
    c.geom_changed AS geometry_changed"""

HORIZON = "c.tx < pg_snapshot_xmin(pg_current_snapshot())"
# Whether a committed change waits above the horizon, behind a transaction still running
# (in any database of the cluster: transaction ids are the cluster's): its commit's
# notification has come and gone, so a reader must look again soon instead of waiting for the next.
HELD_SQL = f"SELECT EXISTS (SELECT 1 FROM twin.changes c WHERE NOT ({HORIZON}))"


@dataclass(frozen=True)
class ChangeQuery:
    """Which changes, in which order, after which change; ``grids`` limits a worker's view."""

    order: Literal["newest", "oldest"] = "newest"
    limit: int | None = 100
    after: tuple[int, int] | None = None  # (tx, id) of the last change read
    layer: str | None = None
    micro_grid: str | None = None
    residential_area: str | None = None
    actor: str | None = None
    role: str | None = None
    operation: str | None = None
    feature_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    grids: tuple[str, ...] | None = None


# Equality filters: query field -> column.
_EQUAL = {"layer": "layer", "micro_grid": "grid_code", "residential_area": "area_code",
          "actor": "actor", "role": "role", "operation": "operation", "feature_id": "feature_id"}

CURSOR_SQL = "SELECT tx::text::bigint, id FROM twin.changes WHERE id = %(id)s"
# Where a reader starting "from now" stands: after the newest change every reader can see.
NEWEST_CURSOR_SQL = (f"SELECT c.tx::text::bigint, c.id FROM twin.changes c WHERE {HORIZON} "
                     "ORDER BY c.tx DESC, c.id DESC LIMIT 1")


def changes_sql(query: ChangeQuery, columns: str, with_cursor: bool = True
                ) -> tuple[str, dict[str, Any]]:
    """SELECT ``columns`` of each change matching ``query`` (and its cursor, tx and id)."""
    where, params = _where(query)
    oldest = query.order == "oldest"
    if oldest:
        where.append(HORIZON)
    if query.after is not None:
        where.append(f"(c.tx, c.id) {'>' if oldest else '<'} (%(tx)s::text::xid8, %(id)s)")
        params["tx"], params["id"] = query.after
    direction = "" if oldest else " DESC"
    cursor = ", c.tx::text::bigint, c.id" if with_cursor else ""
    sql = (f"SELECT {columns}{cursor} FROM twin.changes c"
           f"{' WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY c.tx{direction}, c.id{direction}")
    if query.limit is not None:
        sql += " LIMIT %(limit)s"
        params["limit"] = query.limit + 1  # one more: is there a next page?
    return sql, params


def heat_sql(query: ChangeQuery, cell_degrees: float) -> tuple[str, dict[str, Any]]:
    """The changes matching ``query`` counted per cell of a grid ``cell_degrees`` wide (by
    where each happened), as one JSON text: ``cells`` of [lon, lat, count], the largest count
    and the total. PostgreSQL groups them: the page gets a few thousand cells, not every
    change."""
    where, params = _where(query)
    params["cell"] = cell_degrees
    sql = f"""
SELECT json_build_object(
    'cells', coalesce(json_agg(json_build_array(round(ST_X(p)::numeric, 6),
                                                round(ST_Y(p)::numeric, 6), n)), '[]'),
    'max', coalesce(max(n), 0), 'changes', coalesce(sum(n), 0))::text
  FROM (SELECT ST_SnapToGrid(ST_Centroid(c.geom), %(cell)s) AS p, count(*) AS n
          FROM twin.changes c{' WHERE ' + ' AND '.join(where) if where else ''}
         GROUP BY 1) AS cells"""
    return sql, params


def _where(query: ChangeQuery) -> tuple[list[str], dict[str, Any]]:
    """The conditions of ``query``'s filters on the log ``c`` (not its order or cursor)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for name, column in _EQUAL.items():
        value = getattr(query, name)
        if value is not None:
            where.append(f"c.{column} = %({name})s")
            params[name] = value
    if query.grids is not None:
        where.append("c.grid_code = ANY(%(grids)s)")
        params["grids"] = list(query.grids)
    if query.since is not None:
        where.append("c.server_time >= %(since)s")
        params["since"] = query.since
    if query.until is not None:
        where.append("c.server_time < %(until)s")
        params["until"] = query.until
    if query.bbox is not None:
        where.append("c.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326) AND "
                     "ST_Intersects(c.geom, ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326))")
        params.update(zip(("x0", "y0", "x1", "y1"), query.bbox, strict=True))
    return where, params


def history_sql() -> str:
    """A page of a feature's versions, newest first (its GeoJSON, valid from/to, the change
    that made it and the fields that change touched), and the change that deleted it if it is
    gone: one JSON document, then whether older versions remain. Earlier deletions (a feature
    taken away and brought back) show as gaps between versions and in the feed. Parameters:
    layer, id, before (a version number, or NULL for the newest), limit, and grids (a
    worker's, or NULL for everyone)."""
    return f"""
WITH page AS (
    SELECT v.* FROM twin.feature_versions v
     WHERE v.feature_id = %(id)s AND v.layer = %(layer)s
       AND v.version < coalesce(%(before)s::int, 2147483647)
     ORDER BY v.version DESC LIMIT %(limit)s + 1
), shown AS (SELECT * FROM page ORDER BY version DESC LIMIT %(limit)s)
SELECT CASE WHEN %(grids)s::text[] IS NULL OR EXISTS (
                 SELECT 1 FROM twin.changes c WHERE c.feature_id = %(id)s
                    AND c.layer = %(layer)s AND c.grid_code = ANY(%(grids)s::text[]))
            THEN json_build_object(
    'layer', %(layer)s, 'id', %(id)s,
    'deleted', NOT EXISTS (SELECT 1 FROM twin.features f
                            WHERE f.layer = %(layer)s AND f.id = %(id)s),
    'versions', (SELECT coalesce(json_agg(json_build_object(
                     'version', v.version, 'valid_from', lower(v.valid),
                     'valid_to', upper(v.valid),
                     'feature', json_build_object(
                         'type', 'Feature', 'id', v.feature_id,
                         'geometry', ST_AsGeoJSON(v.geom, 7)::json,
                         'properties', twin.fields(v.name, v.props, v.tags, v.grid_code,
                                                   v.area_code)),
                     'change', {CHANGE_JSON}) ORDER BY v.version DESC), '[]')
                   FROM shown v JOIN twin.changes c ON c.id = v.change_id),
    'deleted_by', (SELECT {CHANGE_JSON} FROM twin.changes c
                    WHERE c.feature_id = %(id)s AND c.layer = %(layer)s
                      AND NOT EXISTS (SELECT 1 FROM twin.features f
                                       WHERE f.layer = %(layer)s AND f.id = %(id)s)
                    ORDER BY c.id DESC LIMIT 1))::text
       END,
       EXISTS (SELECT 1 FROM twin.changes c WHERE c.feature_id = %(id)s
                  AND c.layer = %(layer)s),
       (SELECT min(version) FROM shown), (SELECT count(*) FROM page) > %(limit)s"""


def diff_sql(by_grid: bool) -> str:
    """Features added, removed and changed between moments ``t1`` and ``t2`` in a box or a
    micro-grid, as a GeoJSON FeatureCollection: each feature's newer geometry (the older one
    when removed), what happened to it, and each field that differs with both values."""
    where = ("v.grid_code = %(grid)s" if by_grid else
             "v.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326)")
    where += " AND (%(layer)s::text IS NULL OR v.layer = %(layer)s)"
    return f"""
WITH before AS (
    SELECT v.* FROM twin.feature_versions v
     WHERE {valid_at('t1')} AND {where}
), after AS (
    SELECT v.* FROM twin.feature_versions v
     WHERE {valid_at('t2')} AND {where}
), pairs AS (
    SELECT coalesce(a.feature_id, b.feature_id) AS id, coalesce(a.layer, b.layer) AS layer,
           b.version AS version_before, a.version AS version_after,
           coalesce(a.geom, b.geom) AS geom,
           CASE WHEN b.feature_id IS NULL THEN 'added' WHEN a.feature_id IS NULL THEN 'removed'
                ELSE 'changed' END AS diff,
           twin.fields(b.name, b.props, b.tags, b.grid_code, b.area_code)
               || jsonb_build_object('geometry', ST_AsGeoJSON(b.geom, 7)::jsonb) AS old,
           twin.fields(a.name, a.props, a.tags, a.grid_code, a.area_code)
               || jsonb_build_object('geometry', ST_AsGeoJSON(a.geom, 7)::jsonb) AS new
      FROM after a FULL JOIN before b ON a.feature_id = b.feature_id
     WHERE a.version IS DISTINCT FROM b.version
)
SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(
    json_build_object('type', 'Feature', 'id', p.id,
                      'geometry', ST_AsGeoJSON(p.geom, 7)::json,
                      'properties', json_build_object(
                          'layer', p.layer, 'diff', p.diff,
                          'version_before', p.version_before, 'version_after', p.version_after,
                          'fields', (SELECT coalesce(jsonb_object_agg(k, jsonb_build_object(
                                         'old', p.old -> k, 'new', p.new -> k)), '{{}}')
                                       FROM jsonb_object_keys(coalesce(p.old, '{{}}')
                                                              || coalesce(p.new, '{{}}')) AS k
                                      WHERE p.diff = 'changed'
                                        AND (p.old -> k) IS DISTINCT FROM (p.new -> k))))
    ORDER BY p.layer, p.id), '[]'),
    'from', %(t1)s::timestamptz, 'to', %(t2)s::timestamptz)::text
  FROM pairs p"""
