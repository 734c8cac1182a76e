"""A tablet's scope: the features of its user's micro-grids (and a small buffer around them),
whole the first time and then only what changed since its cursor, so a device never
downloads the whole twin.

The cursor is a change id of the feed (twin.changes), read below the feed's horizon as
``GET /changes`` reads it: a change committed after the answer is always after its cursor.
"""

# SQL here is composed of fixed fragments and the registry's layer expressions
# (twin.features.reads); every value is bound.
# ruff: noqa: S608
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from twin.errors import InvalidInput, Problem
from twin.features.reads import feature_sql
from twin.history.changes import CURSOR_SQL, HORIZON
from twin.layer import Layer
from twin.registry import all_layers

DEFAULT_BUFFER_M = 50.0
MAX_BUFFER_M = 500.0


@dataclass(frozen=True)
class Scope:
    """Whose scope: micro-grid codes, layers, the buffer in metres around the grids."""

    grids: tuple[str, ...]
    layers: tuple[str, ...]
    buffer_m: float = DEFAULT_BUFFER_M


def editable_layers(role: str) -> tuple[str, ...]:
    """The layers a role edits from a tablet (not the micro-grids and areas themselves)."""
    return tuple(name for name, layer in all_layers().items()
                 if role in layer.edit_roles and layer.group == "twin")


# The grids' union, widened by the buffer (in metres, on the spheroid).
_AREA = """area AS MATERIALIZED (
    SELECT ST_Union(g.geom) AS geom,
           ST_Expand(ST_Union(g.geom), %(buffer)s / 100000.0) AS box
      FROM twin.features g
     WHERE g.layer = 'micro_grids' AND g.props ->> 'code' = ANY(%(grids)s))"""


def _in_scope(alias: str) -> str:
    return (f"{alias}.geom && area.box AND ST_DWithin({alias}.geom::geography, "
            f"area.geom::geography, %(buffer)s)")


def _features(layer: Layer, only_changed: bool) -> str:
    """The layer's features in scope as GeoJSON texts with their layer as a member."""
    changed = " AND f.id IN (SELECT feature_id FROM changed WHERE layer = %(l_" + layer.name + \
        ")s)" if only_changed else ""
    return (f"SELECT f.id, f.layer, left({feature_sql(layer)}, -1) || "
            f"',\"layer\":\"{layer.name}\"}}' AS feature FROM twin.features f, area "
            f"WHERE f.layer = %(l_{layer.name})s AND {_in_scope('f')}{changed}")


def scope_sql(scope: Scope, since: tuple[int, int] | None) -> tuple[str, dict[str, Any]]:
    """One row: the grids and the features as FeatureCollection texts, the ids of features
    changed since the cursor that are no longer in scope, and the new cursor."""
    layers = [all_layers()[name] for name in scope.layers]
    params: dict[str, Any] = {"grids": list(scope.grids), "buffer": scope.buffer_m,
                              "layers": list(scope.layers)}
    params |= {f"l_{layer.name}": layer.name for layer in layers}
    changed = ""
    if since is not None:
        params["tx"], params["id"] = since
        changed = (f", changed AS MATERIALIZED (SELECT DISTINCT c.layer, c.feature_id "
                   f"FROM twin.changes c, area WHERE (c.tx, c.id) > (%(tx)s::text::xid8, "
                   f"%(id)s) AND c.layer = ANY(%(layers)s) AND {_in_scope('c')})")
    union = " UNION ALL ".join(_features(layer, since is not None) for layer in layers) \
        or "SELECT NULL::bigint AS id, NULL::text AS layer, NULL::text AS feature WHERE false"
    grids = ("SELECT coalesce(string_agg(left(" + feature_sql(all_layers()["micro_grids"])
             + ", -1) || ',\"layer\":\"micro_grids\"}', ',' ORDER BY f.id), '') "
             "FROM twin.features f WHERE f.layer = 'micro_grids' "
             "AND f.props ->> 'code' = ANY(%(grids)s)")
    gone = ("SELECT coalesce(json_agg(json_build_object('layer', c.layer, 'id', c.feature_id)),"
            " '[]')::text FROM changed c WHERE NOT EXISTS (SELECT 1 FROM inscope s "
            "WHERE s.layer = c.layer AND s.id = c.feature_id)") if since is not None \
        else "SELECT '[]'"
    sql = (f"WITH {_AREA}{changed}, inscope AS MATERIALIZED ({union}) "
           f"SELECT ({grids}), (SELECT coalesce(string_agg(feature, ',' ORDER BY layer, id), '')"
           f" FROM inscope), ({gone}), (SELECT c.id FROM twin.changes c WHERE {HORIZON} "
           f"ORDER BY c.tx DESC, c.id DESC LIMIT 1)")
    return sql, params


async def read_scope(conn: AsyncConnection[Any], scope: Scope, cursor: int | None
                     ) -> dict[str, Any]:
    """The scope as the sync API answers it (texts joined, never parsed again)."""
    since = None if cursor is None else (0, 0)
    if cursor:
        cur = await conn.execute(CURSOR_SQL, {"id": cursor})
        row = await cur.fetchone()
        if row is None:
            raise InvalidInput(f"since={cursor}: no such change", [Problem(
                "since", cursor, "not a cursor this API gave", "无效的游标")])
        since = (int(row[0]), int(row[1]))
    sql, params = scope_sql(scope, since)
    async with conn.transaction():  # one snapshot: the features and the cursor agree
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur = await conn.execute(sql, params)
        grids, features, gone, newest = await cur.fetchone() or ("", "", "[]", None)
    return {"grids": grids, "features": features, "deleted": gone,
            "cursor": newest if newest is not None else cursor or 0}
