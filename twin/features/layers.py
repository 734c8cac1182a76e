"""Layers declared in a running twin: an admin adds a layer, or gives one an attribute, an enum
value, a state, a title, with no restart and no code. Each declaration is the layer's next
version in twin.layer_specs (kept forever: who, when, what changed), and every server serves
it as soon as PostgreSQL tells it (twin_layers). A change that could leave a feature not
fitting its layer (an attribute or a value removed, a type or range changed, a required
attribute added) is refused: that needs a data migration and a person who decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from twin.errors import Conflict, Forbidden, NotFound, PreconditionFailed, Problem, Unprocessable
from twin.layerspec import SpecError, layer_from_spec, spec_changes
from twin.registry import all_layers
from twin.store.db import EditContext, set_context
from twin.store.layerspecs import newest_specs, put_spec, refresh_layers
from twin.users import User

# one declaration at a time, so that a version is based on the one it read
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('twin.layer_specs'))"


@dataclass(frozen=True)
class Declared:
    """What a declaration did: the layer's version now, and what changed (empty: nothing)."""

    layer: str
    version: int
    changes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "version": self.version, "changes": self.changes}


def layer_etag(name: str, version: int) -> str:
    """The ETag of a layer's spec version (a change names it in If-Match)."""
    return f'"{name}-{version}"'


def declare_layer(engine: Engine, user: User, spec: dict[str, Any],
                  base: int | None = None) -> Declared:
    """Add the layer ``spec`` declares (``base`` None), or change it from version ``base``:
    refused if the layer exists (adding) or moved on since ``base`` (changing)."""
    if user.role != "admin":
        raise Forbidden(f"only an admin declares layers; {user.name} is a {user.role}",
                        [Problem("role", user.role, "layers are declared by admins",
                                 "仅管理员可以定义图层")])
    try:
        layer = layer_from_spec(spec)
    except SpecError as exc:
        raise Unprocessable(f"the spec is not a layer: {exc}",
                            [Problem("spec", spec.get("name"), str(exc), "图层定义有误")]) from None
    with engine.begin() as conn:
        set_context(conn, EditContext(actor=user.name, role=user.role,
                                      reason=f"layer {layer.name} declared"))
        conn.execute(text(_LOCK))
        newest = newest_specs(conn).get(layer.name)
        if base is None:
            if newest is not None or layer.name in all_layers():
                raise Conflict(f"layer {layer.name!r} exists; change it (twin layer change, "
                               f"PUT /layers/{layer.name})", [Problem(
                                   "name", layer.name, "a layer of that name exists",
                                   "同名图层已存在")])
            if layer.group == "areas":
                raise Unprocessable("area layers derive every feature's grid and area: they "
                                    "are declared in layers/ and added by `twin db migrate`",
                                    [Problem("group", layer.group, "not in a running twin",
                                             "区域图层须在 layers/ 中定义")])
            changes = [f"layer added ({layer.geometry_type}, "
                       f"{len(layer.attributes.model_fields)} attributes)"]
        else:
            changes = _changes(conn, layer.name, newest, spec, base)
            if not changes:
                return Declared(layer.name, base, [])
        version = put_spec(conn, spec, "admin", "; ".join(changes))
        refresh_layers(conn)  # this process serves it at once; the others when told
    return Declared(layer.name, version, changes)


def _changes(conn: Connection, name: str, newest: dict[str, Any] | None,
             spec: dict[str, Any], base: int) -> list[str]:
    """What changing layer ``name`` to ``spec`` from version ``base`` changes, or why not."""
    if newest is None:
        raise NotFound(f"no layer {name!r} declared in this twin")
    if newest["version"] != base:
        raise PreconditionFailed(
            f"layer {name} is at version {newest['version']}, not {base}: read it again",
            [Problem("If-Match", layer_etag(name, base), "not the current version",
                     "图层定义已被他人修改")],
            {"version": newest["version"], "etag": layer_etag(name, newest["version"])})
    changes, refused = spec_changes(newest["spec"], spec)
    if refused:
        raise Unprocessable(
            f"layer {name}: a running twin takes only changes its features still fit "
            "(new attributes with a default or nullable, new enum values, states, tags and "
            "words); these need a migration", [Problem("spec", change, "not allowed at run "
                                                        "time", "运行中不允许的图层变更")
                                                for change in refused])
    return changes


def layer_versions(conn: Connection, name: str | None = None) -> list[dict[str, Any]]:
    """The layers' recorded versions, newest first (one layer's, or all of them)."""
    rows = conn.execute(text(
        "SELECT layer, version, source, changed_at, changed_by, summary FROM twin.layer_specs "
        "WHERE CAST(:name AS text) IS NULL OR layer = :name ORDER BY changed_at DESC, "
        "layer, version DESC"), {"name": name}).mappings()
    return [{**row, "changed_at": row["changed_at"].isoformat()} for row in rows]
