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

import tomllib
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from twin.layer import COMPONENT_CLASSES, COMPONENT_STATES, Layer, Style, TagVocabulary

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
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"{path.name}: not a readable TOML file ({exc})") from None
    return layer_from_spec(data, path.name)


def layer_from_spec(data: dict[str, Any], where: str = "spec") -> Layer:
    """The layer ``data`` (a parsed spec) declares, or SpecError naming what is wrong."""
    unknown = set(data) - _LAYER_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_LAYER_KEYS)}")
    try:
        name = str(data["name"])
        states = data.get("states", {})
        values = states.get("values", {})
        tags = data.get("tags", {})
        style = dict(data.get("style", {}))
        keys = {**(COMMON_KEYS if tags.get("common", True) else {}),
                **{k: tuple(v) for k, v in tags.get("keys", {}).items()}}
        return Layer(
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
    except TypeError as exc:
        raise SpecError(f"{where}: {exc}") from None


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
