"""A layer proposed from a file (``twin import FILE --new-layer NAME``): its spec, for a person
to read, name, title and confirm before it becomes a layer, and the mapping file that imports
the file into it. Nothing here decides what the data means; it writes down what the file says
(field types, geometry) so that nobody has to type it."""

from __future__ import annotations

import json
from pathlib import Path

import pyogrio

from twin.errors import InvalidInput, Problem
from twin.imports.files import CSV_OPTIONS
from twin.layer import COMMON_FIELDS
from twin.layerspec import NAME

# what a file's field type becomes (pyogrio's numpy dtypes)
_TYPES = {"int32": "integer", "int64": "integer", "int16": "integer", "float64": "number",
          "float32": "number", "bool": "boolean"}
_GEOMETRIES = {"Point": "Point", "LineString": "LineString", "Polygon": "Polygon",
               "MultiPolygon": "MultiPolygon", "MultiLineString": "LineString",
               "MultiPoint": "Point"}
# fields that most likely identify a row
_ID_NAMES = ("id", "fid", "objectid", "code", "编号", "编码", "代码")


def propose(path: Path, name: str, file_layer: str | None = None) -> tuple[str, str]:
    """The spec (TOML) of a layer ``name`` for the file, and the mapping file (TOML)."""
    if not NAME.fullmatch(name):
        raise InvalidInput(f"layer name {name!r}", [Problem(
            "new_layer", name, "lower-case letters, digits and _, starting with a letter",
            "图层名须为小写字母、数字和下划线,以字母开头")])
    options = CSV_OPTIONS if path.suffix.lower() == ".csv" else {}
    info = pyogrio.read_info(str(path), layer=file_layer, **options)
    geometry = _GEOMETRIES.get(str(info["geometry_type"]).removesuffix(" Z"), "Point")
    fields = [str(f) for f in info["fields"]]
    dtypes = [str(d) for d in info["dtypes"]]
    id_field = next((f for f in fields if f.lower() in _ID_NAMES), None)
    lines = [f"# Proposed by `twin import {path.name} --new-layer {name}` from the file's fields:",
             "# read it, give the titles and a description, turn texts with a few values into",
             "# enums, set states and style, then add it: `twin layer add` this file (or copy",
             "# it to layers/ and run `twin db migrate`).",
             "", f"name = {json.dumps(name)}", f'title_zh = "{name}"', f'title_en = "{name}"',
             'description = ""', f"geometry = {json.dumps(geometry)}",
             'edit_roles = ["worker", "commander", "admin"]']
    mapping = [f"# Imports {path.name} into {name}: twin import {path.name} {name} "
               f"--mapping {name}.mapping.toml"]
    if id_field:
        mapping.append(f"id = {json.dumps(id_field, ensure_ascii=False)}")
    mapping += ["", "[fields]"]
    taken = set(COMMON_FIELDS)
    for number, (field, dtype) in enumerate(zip(fields, dtypes, strict=True), start=1):
        if field == id_field:
            continue
        if field.lower() in ("name", "名称"):  # the feature's own name, not an attribute
            mapping.append(f"{json.dumps(field, ensure_ascii=False)} = \"name\"")
            continue
        attribute = field.lower() if NAME.fullmatch(field.lower()) else f"field_{number}"
        if attribute in taken:
            attribute = f"{attribute}_{number}"
        taken.add(attribute)
        kind = _TYPES.get(dtype, "text")
        lines += ["", f"[attributes.{attribute}]", f'type = "{kind}"', "nullable = true"]
        if kind == "text":
            lines.append("max_length = 200")
        lines.append(f"title = {json.dumps(field, ensure_ascii=False)}")
        mapping.append(f"{json.dumps(field, ensure_ascii=False)} = {json.dumps(attribute)}")
    lines += ["", "[tags]", "common = true  # GB/T 30428: class= and condition=", "",
              "[style]", 'color = "#377eb8"']
    return "\n".join(lines) + "\n", "\n".join(mapping) + "\n"
