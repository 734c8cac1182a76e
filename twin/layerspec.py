"""A layer declared as data: the TOML file in ``layers/`` read into the Layer contract
(twin.layer), its attribute model built from the declared attributes. A new layer is a new
file, written by the person who knows the data, not a programmer.

    name = "waste_points"
    title_zh = "垃圾投放点"
    title_en = "Waste drop points"
    description = "Where residents drop sorted waste."
    geometry = "Point"                      # Point, LineString, Polygon, MultiPolygon
    group = "twin"                          # twin (default), areas, base
    edit_roles = ["worker", "commander", "admin"]
    max_gps_error_m = 20.0                  # a GPS fix less accurate than this is refused
    coverage_within_m = 120.0               # a facility: the default walk it serves
    coverage_state = "ok"                   # ... counting only features in this state
    map_min_zoom = 0
    map_cluster = true
    tile_attributes = ["state"]

    [attributes.state]                      # in the order declared
    type = "enum"                           # text, integer, number, boolean, enum
    values = ["ok", "full"]
    default = "ok"                          # no default: required
    title = "状态 State"
    [attributes.bins]
    type = "integer"
    minimum = 1                             # also maximum, exclusive_minimum, min_length,
    maximum = 50                            # max_length, pattern, nullable, description
    title = "桶数 Bins"

    [states]                                # the attribute that is the feature's state
    field = "state"
    values.ok = { label = "正常 ok", color = "#33a02c" }
    values.full = { label = "满溢 full", color = "#e31a1c" }

    [tags]
    common = true                           # GB/T 30428's class= and condition= keys
    labels = ["示范点"]
    keys.project = ["微更新"]

    [style]
    color = "#33a02c"                       # also fill_color, weight, radius, fill_opacity
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, create_model

from twin.layer import (
    COMMON_FIELDS,
    COMPONENT_CLASSES,
    COMPONENT_STATES,
    GeometryType,
    Group,
    Layer,
    Style,
    TagVocabulary,
)

GEOMETRIES: tuple[str, ...] = get_args(GeometryType)
GROUPS: tuple[str, ...] = get_args(Group)
# a layer's (and an attribute's) name: it names a table partition and a JSON key
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")

COMMON_KEYS: dict[str, tuple[str, ...]] = {"class": COMPONENT_CLASSES,
                                           "condition": COMPONENT_STATES}
_TYPES: dict[str, type] = {"text": str, "integer": int, "number": float, "boolean": bool}
# spec key -> pydantic Field argument
_CONSTRAINTS = {"minimum": "ge", "maximum": "le", "exclusive_minimum": "gt",
                "exclusive_maximum": "lt", "min_length": "min_length",
                "max_length": "max_length", "pattern": "pattern"}
_ATTRIBUTE_KEYS = {"type", "values", "default", "nullable", "title", "description",
                   *_CONSTRAINTS}
_LAYER_KEYS = {"name", "title_zh", "title_en", "description", "geometry", "group",
               "edit_roles", "max_gps_error_m", "coverage_within_m", "coverage_state",
               "map_min_zoom", "map_cluster", "tile_attributes", "attributes", "states",
               "tags", "style"}


class SpecError(ValueError):
    """A layer file that cannot be a layer: which file, which key, why."""


def read_spec(path: Path) -> Layer:
    """The layer a TOML file declares."""
    return layer_from_spec(read_spec_data(path), path.name)


def read_spec_data(path: Path) -> dict[str, Any]:
    """A TOML spec file, parsed (not yet checked)."""
    try:
        return parse_spec_text(path.read_text(encoding="utf-8"), path.name)
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path.name}: not a readable TOML file ({exc})") from None


def parse_spec_text(text: str, where: str = "spec") -> dict[str, Any]:
    """A spec written as TOML, parsed (not yet checked)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: not TOML ({exc})") from None


def layer_from_spec(data: dict[str, Any], where: str = "spec") -> Layer:
    """The layer ``data`` (a parsed spec) declares, checked whole, or SpecError naming what is
    wrong."""
    unknown = set(data) - _LAYER_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_LAYER_KEYS)}")
    try:
        name = str(data["name"])
        if not NAME.fullmatch(name):
            raise SpecError(f"{where}: name {name!r}: lower-case letters, digits and _, "
                            "starting with a letter, at most 41")
        states = data.get("states", {})
        values = states.get("values", {})
        tags = data.get("tags", {})
        style = dict(data.get("style", {}))
        keys = {**(COMMON_KEYS if tags.get("common", True) else {}),
                **{k: tuple(v) for k, v in tags.get("keys", {}).items()}}
        layer = Layer(
            name=name, title_zh=data["title_zh"], title_en=data["title_en"],
            description=data.get("description", ""),
            geometry_type=data["geometry"],
            attributes=_model(data.get("attributes", {}), where),
            tags=TagVocabulary(keys=keys, labels=tuple(tags.get("labels", ()))),
            style=Style(**style, by_state={v: s["color"] for v, s in values.items()
                                           if "color" in s}),
            state_field=states.get("field"),
            state_labels={v: s.get("label", v) for v, s in values.items()},
            tile_attributes=tuple(data.get("tile_attributes", ())),
            group=data.get("group", "twin"),
            edit_roles=tuple(data.get("edit_roles", ("worker", "commander", "admin"))),
            max_gps_error_m=data.get("max_gps_error_m"),
            coverage_within_m=data.get("coverage_within_m"),
            coverage_state=data.get("coverage_state"),
            map_min_zoom=int(data.get("map_min_zoom", 0)),
            map_cluster=bool(data.get("map_cluster", False)))
    except KeyError as exc:
        raise SpecError(f"{where}: {exc.args[0]!r} is required") from None
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{where}: {exc}") from None
    _check(layer, data, where)
    return layer


def _check(layer: Layer, data: dict[str, Any], where: str) -> None:
    """What the parts of a spec must agree on."""
    if layer.geometry_type not in GEOMETRIES:
        raise SpecError(f"{where}: geometry {layer.geometry_type!r} is not one of "
                        f"{list(GEOMETRIES)}")
    if layer.group not in GROUPS:
        raise SpecError(f"{where}: group {layer.group!r} is not one of {list(GROUPS)}")
    clash = COMMON_FIELDS & set(layer.attributes.model_fields)
    if clash:
        raise SpecError(f"{where}: attributes {sorted(clash)} are common fields of every "
                        "feature; choose other names")
    wrong = [a for a in data.get("attributes", {}) if not NAME.fullmatch(a)]
    if wrong:
        raise SpecError(f"{where}: attribute names {wrong}: lower-case letters, digits and _")
    if layer.state_field is not None and layer.state_field not in layer.attributes.model_fields:
        raise SpecError(f"{where}: states.field {layer.state_field!r} is not an attribute")
    if layer.coverage_state is not None and layer.coverage_state not in layer.state_labels:
        raise SpecError(f"{where}: coverage_state {layer.coverage_state!r} is not one of its "
                        f"states {list(layer.state_labels)}")


# What may change in a layer that holds features: anything that only describes it...
_DESCRIBING = ("title_zh", "title_en", "description", "edit_roles", "max_gps_error_m",
               "coverage_within_m", "coverage_state", "map_min_zoom", "map_cluster",
               "tile_attributes", "style")
# ... and, of an attribute, its words; its rules (type, range, default) only grow (enum values).
_ATTRIBUTE_WORDS = ("title", "description")


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """What changes from spec ``old`` to ``new`` of a layer: (the changes, each a line for the
    schema's history; those of them that could leave its features not fitting it, which a
    running twin refuses: a feature valid before must stay valid)."""
    changes: list[str] = []
    refused: list[str] = []
    for key in ("name", "geometry", "group"):
        if old.get(key) != new.get(key):
            refused.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    changes += [f"{key} changed" for key in _DESCRIBING if old.get(key) != new.get(key)]
    before, after = old.get("attributes", {}), new.get("attributes", {})
    for name, spec in after.items():
        if name not in before:
            changes.append(f"attribute added: {name}")
            if "default" not in spec and not spec.get("nullable", False):
                refused.append(f"attribute {name} added without a default or nullable = true "
                               "(the features already there have no value for it)")
            continue
        was = before[name]
        added = [v for v in spec.get("values", ()) if v not in was.get("values", ())]
        removed = [v for v in was.get("values", ()) if v not in spec.get("values", ())]
        changes += [f"enum value added: {name} = {v}" for v in added]
        changes += [f"attribute {name}: {k} changed" for k in _ATTRIBUTE_WORDS
                    if was.get(k) != spec.get(k)]
        ruled = {k for k in {*was, *spec} - {"values", *_ATTRIBUTE_WORDS}
                 if was.get(k) != spec.get(k)}
        if removed or ruled:
            what = [f"values {removed} removed"] * bool(removed) + sorted(ruled)
            changes.append(f"attribute {name}: {', '.join(what)} changed")
            refused.append(f"attribute {name}: {', '.join(what)}")
    for name in before.keys() - after.keys():
        changes.append(f"attribute removed: {name}")
        refused.append(f"attribute {name} removed")
    states_was, states = old.get("states", {}), new.get("states", {})
    if states_was.get("field") != states.get("field"):
        refused.append(f"states.field {states_was.get('field')!r} -> {states.get('field')!r}")
    values_was, values = states_was.get("values", {}), states.get("values", {})
    changes += [f"state added: {v}" for v in values.keys() - values_was.keys()]
    changes += [f"state {v} relabelled" for v in values.keys() & values_was.keys()
                if values[v] != values_was[v]]
    refused += [f"state {v} removed" for v in values_was.keys() - values.keys()]
    tags_was, tags = old.get("tags", {}), new.get("tags", {})
    if tags_was != tags:
        changes.append("tags changed")
        if tags_was.get("common", True) and not tags.get("common", True):
            refused.append("tags.common switched off")
        refused += [f"tag label {t!r} removed" for t in tags_was.get("labels", ())
                    if t not in tags.get("labels", ())]
        for key, vocabulary in tags_was.get("keys", {}).items():
            refused += [f"tag {key}={v} removed" for v in vocabulary
                        if v not in tags.get("keys", {}).get(key, ())]
    return changes, refused


def _model(attributes: dict[str, Any], where: str) -> type[BaseModel]:
    """The pydantic model checking a feature's attributes, as a hand-written one would."""
    fields: dict[str, Any] = {}
    for name, spec in attributes.items():
        unknown = set(spec) - _ATTRIBUTE_KEYS
        if unknown:
            raise SpecError(f"{where}: attribute {name!r}: unknown keys {sorted(unknown)}")
        kind = spec.get("type")
        if kind == "enum":
            choices = tuple(spec.get("values", ()))
            if not choices:
                raise SpecError(f"{where}: attribute {name!r}: an enum needs values")
            annotation: Any = Literal[choices]
        elif kind in _TYPES:
            annotation = _TYPES[kind]
        else:
            raise SpecError(f"{where}: attribute {name!r}: type {kind!r} is not one of "
                            f"{['enum', *_TYPES]}")
        if spec.get("nullable", False):
            annotation = annotation | None
        arguments = {_CONSTRAINTS[k]: v for k, v in spec.items() if k in _CONSTRAINTS}
        if "default" in spec:
            arguments["default"] = spec["default"]
        elif spec.get("nullable", False):
            arguments["default"] = None
        fields[name] = (annotation, Field(title=spec.get("title", name),
                                          description=spec.get("description"), **arguments))
    # named as every hand-written model was: schemas and forms read the same
    return cast(type[BaseModel], create_model("Attributes", __config__=ConfigDict(
        extra="forbid"), **fields))
