"""Each row of a file made into a feature of a layer, or the problems that keep it out.

A file's fields reach the layer by name: a field called like one of the layer's attributes
(or ``name``, ``tags``) fills it; ``--map src=dst`` or a mapping file's ``[fields]`` says where
any other goes. The id that makes a re-import an update is a field of the file (``--id``), or
the row's feature id (FID) where the format keeps one (GeoPackage, FlatGeobuf). Values are
checked by the layer's own model, geometries as an edit's are (type, validity, inside the
subdistrict's micro-grids); every problem names its row, field, value and reason.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from twin.errors import InvalidInput, Problem
from twin.features.edits import MAX_VERTICES, validate_attribute_columns
from twin.layer import Layer

ID = "source_id"  # where a mapping puts the row's id
FID = "<fid>"  # the id is the row's feature id in the file
WRITTEN = ("name", "tags")
# Formats whose feature ids are the rows' own, kept when the file is edited and saved again.
STABLE_FIDS = ("GPKG", "FlatGeobuf", "SQLite", "PostgreSQL")
MAX_REPORTED = 1000  # problems kept for the report; the rest are counted


@dataclass(frozen=True)
class FieldMap:
    """Where each field of the file goes: a layer attribute, ``name``, ``tags`` or the id."""

    to: dict[str, str]  # file field -> destination
    id_field: str  # a file field, or FID
    ignored: tuple[str, ...] = ()  # file fields that go nowhere


@dataclass
class RowProblem(Problem):
    """A problem of one row (1-based, in file order)."""

    row: int = 0

    @classmethod
    def of(cls, row: int, problem: Problem) -> RowProblem:
        return cls(problem.field, problem.value, problem.reason, problem.reason_zh, row)

    def as_dict(self) -> dict[str, Any]:
        return {"row": self.row, **super().as_dict()}


@dataclass
class Rows:
    """One batch made into feature rows as the staging table takes them: (row, source_id,
    name, props as JSON text, tags, geometry as hex EWKB)."""

    good: list[tuple[int, str, str | None, str, list[str], str]] = field(default_factory=list)
    bad: list[RowProblem] = field(default_factory=list)
    bad_rows: set[int] = field(default_factory=set)
    ids_of_bad: list[str] = field(default_factory=list)  # kept by --sync all the same


def read_mapping(path: Path) -> tuple[dict[str, str], str | None]:
    """A mapping file: ``id = "FIELD"`` and ``[fields]`` with ``file_field = "destination"``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"mapping {path}: {exc}", [Problem(
            "mapping", str(path), f"not a readable TOML file: {exc}", "映射文件无法读取")]
        ) from None
    fields = data.get("fields", {})
    unknown = set(data) - {"fields", "id"}
    if not isinstance(fields, dict) or unknown or not all(
            isinstance(v, str) for v in fields.values()):
        raise InvalidInput(f"mapping {path}: expected id = \"FIELD\" and a [fields] table",
                           [Problem("mapping", sorted(unknown) or fields,
                                    "only `id` and a [fields] table of texts",
                                    "映射文件只能包含 id 和 [fields]")])
    return {str(k): str(v) for k, v in fields.items()}, data.get("id")


def parse_pairs(items: Sequence[str]) -> dict[str, str]:
    """``FILE_FIELD=ATTRIBUTE`` items (``--map``, the upload's ``map``) as a dict."""
    pairs: dict[str, str] = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise InvalidInput(f"map {item!r}: expected FILE_FIELD=ATTRIBUTE", [Problem(
                "map", item, "expected FILE_FIELD=ATTRIBUTE, e.g. 层数=floors",
                "格式应为 文件字段=属性")])
        pairs[src.strip()] = dst.strip()
    return pairs


def field_map(layer: Layer, fields: Sequence[str], driver: str, pairs: dict[str, str],
              id_field: str | None) -> FieldMap:
    """The fields of a file mapped onto ``layer``; what cannot be mapped is refused at once,
    before a row is read."""
    targets = {*layer.attributes.model_fields, *WRITTEN}
    problems = [Problem("map", f"{src}={dst}", f"the file has no field {src!r}; fields: "
                        f"{', '.join(fields)}", "文件中没有该字段")
                for src, dst in pairs.items() if src not in fields]
    problems += [Problem("map", f"{src}={dst}", f"{layer.name} has no attribute {dst!r}; "
                         f"attributes: {', '.join(sorted(targets))}", "图层没有该属性")
                 for src, dst in pairs.items() if dst not in targets and dst != ID]
    to = {f: f for f in fields if f in targets and f not in pairs and f not in pairs.values()}
    to.update({src: dst for src, dst in pairs.items() if src in fields})
    chosen = id_field or next((src for src, dst in pairs.items() if dst == ID), None)
    if chosen is None:
        if driver not in STABLE_FIDS:
            problems.append(Problem("id", None, f"a {driver} file keeps no feature ids: say "
                                    "which field identifies a row, e.g. --id 编号",
                                    "请用 --id 指定标识每行的字段"))
        chosen = FID
    elif chosen not in fields:
        problems.append(Problem("id", chosen, f"the file has no field {chosen!r}; fields: "
                                f"{', '.join(fields)}", "文件中没有该字段"))
    doubled = sorted({d for d in to.values() if list(to.values()).count(d) > 1})
    problems += [Problem("map", d, "two fields of the file go to it", "两个字段映射到同一属性")
                 for d in doubled]
    if problems:
        raise InvalidInput("; ".join(f"{p.field} {p.value}: {p.reason}" for p in problems),
                           problems)
    # the id field also fills the attribute it is mapped to (a grid's code is both)
    to = {src: dst for src, dst in to.items() if dst != ID}
    ignored = tuple(f for f in fields if f not in to and f != chosen)
    return FieldMap(to=to, id_field=chosen, ignored=ignored)


def make_rows(layer: Layer, fields: FieldMap, first: int, values: dict[str, list[Any]],
              fids: list[Any], geometries: np.ndarray, outline: Any,
              seen: set[str]) -> Rows:
    """The batch's rows checked; ``seen`` collects the ids met so far (a repeat is bad).
    Geometries and attributes are checked a batch (a column) at a time, in shapely's and
    pydantic's own loops; the rest row by row."""
    out = Rows()
    shapes = _fit(layer, geometries)
    geometry_problems = _geometry_problems(layer, shapes, outline)
    given = {dst: [_blank_to_none(v) for v in values[src]] for src, dst in fields.to.items()}
    names = given.pop("name", None)
    tags_given = given.pop("tags", None)
    props, attribute_problems = validate_attribute_columns(layer, given, len(geometries))
    raw_ids = fids if fields.id_field == FID else values[fields.id_field]
    kept: list[int] = []
    good: list[tuple[int, str, str | None, str, list[str]]] = []
    for i, raw_id in enumerate(raw_ids):
        row = first + i
        problems = list(geometry_problems.get(i, []))
        source_id = "" if raw_id is None else str(raw_id).strip()
        if not source_id:
            problems.append(Problem(fields.id_field, raw_id, "no id in this row", "该行缺少标识"))
        elif source_id in seen:
            problems.append(Problem(fields.id_field, source_id, "the same id as an earlier row",
                                    "标识与前面的行重复"))
        seen.add(source_id)
        name = None if names is None else names[i]
        tags = _tags(None if tags_given is None else tags_given[i])
        problems += attribute_problems.get(i, []) + layer.tags.problems(tags)
        if name is not None and len(str(name)) > 200:
            problems.append(Problem("name", name, "text of at most 200 characters",
                                    "名称须为不超过200字的文本"))
        attributes = props[i]
        if problems or attributes is None:
            out.bad.extend(RowProblem.of(row, p) for p in problems)
            out.bad_rows.add(row)
            if source_id:
                out.ids_of_bad.append(source_id)
            continue
        kept.append(i)
        good.append((row, source_id, None if name is None else str(name), attributes, tags))
    # EWKB in one call, made hex by Python (GEOS's own hex writer is ten times slower)
    wkb = shapely.to_wkb(shapely.set_srid(shapes[kept], 4326), include_srid=True)
    out.good = [(*g, ewkb.hex()) for g, ewkb in zip(good, wkb, strict=True)]
    return out


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


def _tags(value: Any) -> list[str]:
    """Tags as a file writes them: a list, or one text split on ; , or 、."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    for sep in ("；", "，", "、", ","):
        text = text.replace(sep, ";")
    return [t.strip() for t in text.split(";") if t.strip()]


def _fit(layer: Layer, geometries: np.ndarray) -> np.ndarray:
    """A one-part Multi* where the layer wants its single part, and a single part where it
    wants a Multi*: files often say Multi for every polygon."""
    wanted = layer.geometry_type
    out = geometries.copy()
    types = shapely.get_type_id(geometries)
    if wanted in ("Point", "LineString", "Polygon"):
        multi = {"Point": 4, "LineString": 5, "Polygon": 6}[wanted]
        one = (types == multi) & (shapely.get_num_geometries(geometries) == 1)
        out[one] = shapely.get_geometry(geometries[one], 0)
    elif wanted == "MultiPolygon":
        single = types == 3
        if single.any():
            out[single] = shapely.multipolygons(geometries[single],
                                                indices=np.arange(int(single.sum())))
    return out


def _geometry_problems(layer: Layer, shapes: np.ndarray, outline: Any
                       ) -> dict[int, list[Problem]]:
    """Problems of the batch's geometries by position, each checked in one call for all."""
    found: dict[int, list[Problem]] = {}

    def only(mask: np.ndarray) -> np.ndarray:
        """The geometries where ``mask`` holds, None elsewhere (so no call sees the rest)."""
        kept = shapes.copy()
        kept[~mask] = None
        return kept

    def add(mask: np.ndarray, make: Any) -> None:
        for i in np.flatnonzero(mask):
            if i not in found:  # one geometry problem a row: the first says enough
                found[int(i)] = [make(int(i))]

    missing = shapely.is_missing(shapes)
    add(missing, lambda i: Problem("geometry", None, f"no geometry: a {layer.geometry_type} "
                                   "is required", "缺少几何"))
    present = ~missing
    names = shapely.get_type_id(shapes)
    wanted = {"Point": 0, "LineString": 1, "Polygon": 3, "MultiPolygon": 6}[layer.geometry_type]
    add(present & (names != wanted), lambda i: Problem(
        "geometry", getattr(shapes[i], "geom_type", None), f"must be a {layer.geometry_type}",
        f"几何类型须为 {layer.geometry_type}"))
    ok = present & (names == wanted)
    add(ok & (shapely.get_num_coordinates(shapes) > MAX_VERTICES), lambda i: Problem(
        "geometry", int(shapely.get_num_coordinates(shapes[i])),
        f"at most {MAX_VERTICES} vertices", f"顶点数不得超过{MAX_VERTICES}"))
    bounds = shapely.bounds(only(ok))
    out_of_range = ok & ((bounds[:, 0] < -180) | (bounds[:, 2] > 180) | (bounds[:, 1] < -90)
                         | (bounds[:, 3] > 90))
    add(out_of_range, lambda i: Problem(
        "geometry", [round(float(b), 3) for b in bounds[i]], "not longitude and latitude "
        "after reading the file's CRS: is --crs right?", "坐标超出经纬度范围,请检查坐标系"))
    ok &= ~out_of_range
    invalid = ok & ~shapely.is_valid(only(ok))
    add(invalid, lambda i: Problem("geometry", shapely.is_valid_reason(shapes[i]),
                                   "not a valid geometry", "几何无效"))
    ok &= ~invalid
    if outline is not None:
        # the prepared outline first: shapely prepares a predicate's first argument only
        outside = ok & ~shapely.covers(outline, only(ok))
        add(outside, lambda i: Problem(
            "geometry", [round(float(b), 6) for b in bounds[i]],
            "outside the subdistrict (its micro-grids): is the file's CRS or datum right?",
            "位置不在本街道(微网格)范围内,请检查坐标系或偏移"))
    return found
