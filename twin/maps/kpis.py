"""Key figures per micro-grid or residential area, for the command centre's map and board.

One statement: for each group, the features of every layer with a state attribute counted by
state (fire passages open / blocked, charging points safe / hazard, ...) and the edits made
today and in the last seven days (days of the subdistrict's time zone). Which layers have a
state, and what it is called, comes from ``layers/``; nothing of one subdistrict is here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, text

from twin.field.outboxes import unsynced
from twin.layer import GROUP_COLUMNS, GROUP_LAYERS, Grouping
from twin.registry import all_layers

_SQL = """
WITH states AS (
    SELECT {column} AS code, layer, props ->> (CAST(:fields AS jsonb) ->> layer) AS state,
           count(*) AS n
      FROM twin.features
     WHERE layer = ANY(:layers) AND {column} IS NOT NULL
       AND (CAST(:grids AS text[]) IS NULL OR grid_code = ANY(:grids))
     GROUP BY 1, 2, 3
), edits AS (
    SELECT {column} AS code,
           count(*) FILTER (WHERE server_time >= date_trunc('day', now() AT TIME ZONE :zone)
                                                AT TIME ZONE :zone) AS today,
           count(*) AS week,
           count(DISTINCT actor) FILTER (WHERE role = 'worker') AS workers
      FROM twin.changes
     WHERE server_time >= (date_trunc('day', now() AT TIME ZONE :zone) - interval '6 days')
                          AT TIME ZONE :zone
       AND {column} IS NOT NULL
       AND (CAST(:grids AS text[]) IS NULL OR grid_code = ANY(:grids))
     GROUP BY 1
), unsynced AS (  -- devices whose last report had edits waiting, by the grids of their user
    SELECT code, count(*) AS devices, sum(waiting) AS edits
      FROM (SELECT DISTINCT g.{column} AS code, o.device, o.actor, o.waiting
              FROM twin.device_outboxes o
              JOIN twin.features g ON g.layer = 'micro_grids' AND g.grid_code = ANY(o.grid_codes)
             WHERE o.waiting > 0
               AND (CAST(:grids AS text[]) IS NULL OR g.grid_code = ANY(:grids))) AS d
     GROUP BY code
), codes AS (  -- a subdistrict of several copies of the sample has an outline for each
    SELECT DISTINCT ON (props ->> 'code') props ->> 'code' AS code,
           coalesce(props ->> 'committee', name) AS name
      FROM twin.features WHERE layer = :group_layer AND props ? 'code'
       AND (CAST(:grids AS text[]) IS NULL OR props ->> 'code' = ANY(:grids)
            OR :group_layer <> 'micro_grids')
     ORDER BY props ->> 'code', id
)
SELECT coalesce(json_agg(json_build_object(
           'code', c.code, 'name', c.name,
           'edits_today', coalesce(e.today, 0), 'edits_7_days', coalesce(e.week, 0),
           'workers_7_days', coalesce(e.workers, 0),
           'devices_unsynced', coalesce(u.devices, 0), 'edits_unsynced', coalesce(u.edits, 0),
           'states', (SELECT coalesce(json_object_agg(l.layer, l.counts), '{{}}')
                        FROM (SELECT s.layer, json_object_agg(coalesce(s.state, 'none'), s.n)
                                     AS counts
                                FROM states s WHERE s.code = c.code GROUP BY s.layer) AS l))
           ORDER BY c.code), '[]')::text,
       (SELECT max(id) FROM twin.changes)
  FROM codes c LEFT JOIN edits e ON e.code = c.code LEFT JOIN unsynced u ON u.code = c.code
"""


def group_kpis(conn: Connection, by: Grouping, time_zone: str,
               grids: Sequence[str] | None = None) -> dict[str, Any]:
    """Per micro-grid (``by="grid"``), residential area (``"area"``) or subdistrict: features
    by state for each layer with a state, edits today and in the last 7 days, workers who
    edited; only those in ``grids`` when given (a worker's, a subdistrict's)."""
    fields = {name: layer.state_field for name, layer in all_layers().items()
              if layer.state_field}
    groups, newest = conn.execute(text(_SQL.format(column=GROUP_COLUMNS[by])), {
        "fields": json.dumps(fields), "layers": list(fields), "zone": time_zone,
        "grids": list(grids) if grids is not None else None,
        "group_layer": GROUP_LAYERS[by]}).one()
    labels = {name: {"title": layer.title, "field": layer.state_field,
                     "states": dict(layer.state_labels)}
              for name, layer in all_layers().items() if name in fields}
    return {"by": by, "time_zone": time_zone, "twin": {"change_id": newest or 0},
            "layers": labels, "groups": json.loads(groups)}


_SYNC_SQL = """
SELECT count(DISTINCT device) FILTER (WHERE device IS NOT NULL) AS devices,
       max(received_at) AS last_sync,
       count(*) FILTER (WHERE status = 'conflict' AND resolved_at IS NULL) AS open_conflicts,
       count(DISTINCT device) FILTER (WHERE status = 'conflict' AND resolved_at IS NULL)
           AS devices_waiting,
       count(*) FILTER (WHERE status = 'rejected') AS rejected,
       count(*) AS edits,
       extract(epoch FROM max(received_at - device_time)) AS longest_offline_s,
       min(device_time) FILTER (WHERE status = 'conflict' AND resolved_at IS NULL)
           AS oldest_waiting
  FROM twin.edits
 WHERE received_at >= now() - interval '7 days'
   AND (CAST(:grids AS text[]) IS NULL OR grid_code = ANY(:grids))
"""


def sync_health(conn: Connection, grids: Sequence[str] | None = None) -> dict[str, Any]:
    """What tablets last said they hold unsynced (devices, edits, the oldest), and how their
    edits arrived in the last 7 days: devices that synced, the last sync, edits waiting on a
    conflict (and how many devices they came from, the oldest), edits rejected, and the
    longest an edit waited on a tablet before it arrived."""
    row = conn.execute(text(_SYNC_SQL), {"grids": list(grids) if grids is not None else None}
                       ).one()._mapping
    return {key: (value.isoformat() if hasattr(value, "isoformat") else
                  float(value) if isinstance(value, Decimal) else value)
            for key, value in (unsynced(conn, grids) | dict(row)).items()}
