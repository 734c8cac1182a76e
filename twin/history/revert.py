"""Reverting: an admin undoes one change, or every change of one actor in a time range.

A revert never rewrites the log (nothing may): it is new edits, logged by the triggers under
the admin with the reason ``revert of change <id>: ...``, that bring back what the reverted
change replaced, read exactly from ``twin.feature_versions`` (the log's GeoJSON is rounded).
It is refused when it would overwrite a later edit of the same fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, RowMapping, text

from twin.errors import Conflict, Forbidden, InvalidInput, NotFound, Problem
from twin.layer import DERIVED_FIELDS
from twin.registry import all_layers
from twin.store.db import EditContext, set_context
from twin.users import User

# Fields the triggers derive from geometry: never written, so never restored nor in conflict.
DERIVED = list(DERIVED_FIELDS)

# A change to revert: what it did, to which feature, from which version.
_TARGET = "SELECT id, operation, layer, feature_id, version_before, changed FROM twin.changes"

# The later edits each revert would overwrite, and the fields they share. An edit's fields
# are its changed fields less the derived ones. Edits reverted too (same :ids) do not count:
# newest first, their reverts come before. A later insert or delete replaced the whole feature
# (every field the revert restores); an insert or delete is reverted whole (every field a later
# edit set). The CTE is not materialized so that the filters reach the indexes of twin.changes.
_CONFLICTS = """
WITH edits AS NOT MATERIALIZED (
    SELECT id, layer, feature_id, operation, actor, server_time,
           ARRAY(SELECT f FROM unnest(changed) f WHERE f <> ALL(:derived)) AS fields
      FROM twin.changes)
SELECT t.id AS reverting, l.id, l.actor, l.server_time,
       CASE WHEN l.operation <> 'update' THEN t.fields
            WHEN t.operation <> 'update' THEN l.fields
            ELSE ARRAY(SELECT f FROM unnest(l.fields) f WHERE f = ANY(t.fields)) END AS fields
  FROM edits t
  JOIN edits l ON l.feature_id = t.feature_id AND l.layer = t.layer AND l.id > t.id
 WHERE t.id = ANY(:ids) AND l.id <> ALL(:ids)
 ORDER BY t.id DESC, l.id
"""

# How each operation is undone, from the version before the change.
_UNDO = {
    "insert": "DELETE FROM twin.features WHERE layer = :layer AND id = :feature_id",
    "delete": """
        INSERT INTO twin.features (id, layer, name, props, tags, geom, source_id)
        SELECT feature_id, layer, name, props, tags, geom, source_id FROM twin.feature_versions
         WHERE feature_id = :feature_id AND version = :version_before""",
    "update": """
        UPDATE twin.features f
           SET name = CASE WHEN 'name' = ANY(:fields) THEN v.name ELSE f.name END,
               tags = CASE WHEN 'tags' = ANY(:fields) THEN v.tags ELSE f.tags END,
               geom = CASE WHEN 'geometry' = ANY(:fields) THEN v.geom ELSE f.geom END,
               props = (f.props - CAST(:fields AS text[]))
                       || (SELECT coalesce(jsonb_object_agg(key, value), '{}')
                             FROM jsonb_each(v.props) WHERE key = ANY(:fields))
          FROM twin.feature_versions v
         WHERE f.layer = :layer AND f.id = :feature_id
           AND v.feature_id = f.id AND v.version = :version_before""",
}


@dataclass(frozen=True)
class Reverted:
    """A reverted change and the new changes its revert made (reassignments included)."""

    change: int
    changes: list[int]


def _require_admin(user: User) -> None:
    if user.role != "admin":
        raise Forbidden(f"only an admin may revert changes; {user.name} is a {user.role}")


def revert_change(engine: Engine, user: User, change_id: int, reason: str) -> list[Reverted]:
    """Undo one change, or refuse (Conflict) if a later edit touched what it would restore."""
    _require_admin(user)
    with engine.begin() as conn:
        target = conn.execute(text(_TARGET + " WHERE id = :id"),
                              {"id": change_id}).mappings().first()
        if target is None:
            raise NotFound(f"no change {change_id}")
        if set(target["changed"]) <= set(DERIVED):
            raise InvalidInput(
                f"change {change_id} only re-derived a micro-grid or residential area",
                [Problem("id", change_id, "nothing to revert: revert the change of the grid "
                         "or area that caused it", "仅为派生字段变化,请撤销引起它的变更")])
        return _revert(conn, user, [target], reason)


def revert_actor(engine: Engine, user: User, actor: str, start: datetime, end: datetime,
                 reason: str, layer: str | None = None) -> list[Reverted]:
    """Undo every edit of ``actor`` in [start, end), newest first, in one transaction: if any
    one is refused, nothing changes. Reassignments (derived fields only) are not edits: the
    revert of the grid or area change that caused them re-derives them."""
    _require_admin(user)
    problems: list[Problem] = []
    if end <= start:
        problems.append(Problem("to", end.isoformat(), "must be after from",
                                "结束时间须晚于开始时间"))
    if layer is not None and layer not in all_layers():
        problems.append(Problem("layer", layer, "unknown layer; layers: "
                                f"{', '.join(all_layers())}", "未知图层"))
    if problems:
        raise InvalidInput("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    with engine.begin() as conn:
        targets = conn.execute(text(
            _TARGET + """ WHERE actor = :actor AND server_time >= :start AND server_time < :end
               AND (layer = :layer OR CAST(:layer AS text) IS NULL)
               AND NOT changed <@ CAST(:derived AS text[])
             ORDER BY id DESC"""),
            {"derived": DERIVED, "actor": actor, "start": start, "end": end, "layer": layer},
        ).mappings().all()
        return _revert(conn, user, targets, reason)


def revert_import(engine: Engine, user: User, import_id: int, reason: str) -> list[Reverted]:
    """Undo every change one import made (``twin import``), newest first, in one transaction:
    refused whole if a later edit touched what it would restore."""
    _require_admin(user)
    with engine.begin() as conn:
        found = conn.execute(text("SELECT file FROM twin.imports WHERE id = :id"),
                             {"id": import_id}).scalar()
        if found is None:
            raise NotFound(f"no import {import_id}")
        targets = conn.execute(text(
            _TARGET + """ WHERE import_id = :id AND NOT changed <@ CAST(:derived AS text[])
             ORDER BY id DESC"""), {"id": import_id, "derived": DERIVED}).mappings().all()
        return _revert(conn, user, targets, f"import {import_id} of {found}: {reason}")


def _revert(conn: Connection, user: User, targets: Sequence[RowMapping],
            reason: str) -> list[Reverted]:
    """Check every target, then undo them in the given (newest first) order."""
    ids = [t["id"] for t in targets]
    # One revert at a time (a deleted feature has no row to lock: two admins bringing it back
    # at once would collide), and hold the features still there, so no edit can slip in
    # between the check and the undo.
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('twin.history.revert'))"))
    conn.execute(text("SELECT 1 FROM twin.features WHERE id = ANY(:fids) FOR UPDATE"),
                 {"fids": [t["feature_id"] for t in targets]})
    conflicts = [c for c in conn.execute(text(_CONFLICTS), {"derived": DERIVED, "ids": ids})
                 .mappings() if c["fields"]]
    if conflicts:
        raise _refusal(conflicts)
    done = []
    mark = 0
    for target in targets:
        set_context(conn, EditContext(actor=user.name, role="admin",
                                      reason=f"revert of change {target['id']}: {reason}"))
        fields = [f for f in target["changed"] if f not in DERIVED]
        conn.execute(text(_UNDO[target["operation"]]), {**target, "fields": fields})
        new = list(conn.execute(text("SELECT id FROM twin.changes WHERE tx = pg_current_xact_id()"
                                     " AND id > :mark ORDER BY id"), {"mark": mark}).scalars())
        done.append(Reverted(target["id"], new))
        mark = max(new, default=mark)
    return done


def _refusal(conflicts: Sequence[RowMapping]) -> Conflict:
    """The refusal naming, per field, the later change the revert would overwrite."""
    problems = [Problem(field, {"reverting": c["reverting"], "change": c["id"],
                                "actor": c["actor"], "time": c["server_time"].isoformat()},
                        f"change {c['id']} by {c['actor']} at {c['server_time'].isoformat()} "
                        f"changed it after change {c['reverting']}",
                        f"变更 {c['id']} 之后修改了该字段")
                for c in conflicts for field in c["fields"]]
    first = conflicts[0]
    return Conflict(f"change {first['reverting']} cannot be reverted: change {first['id']} by "
                    f"{first['actor']} at {first['server_time'].isoformat()} changed "
                    f"{', '.join(first['fields'])} since; nothing was reverted", problems)
