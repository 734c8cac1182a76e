"""OGC API Features Part 3 filtering: a CQL2 filter (text or JSON) becomes a SQL condition.

pygeofilter parses; this module walks its AST, checks every property against the layer's
queryables and every operand's type, and writes SQL over ``twin.features f`` in which each
value from the request is a bound psycopg parameter. Identifiers come from the whitelist only.

Supported: AND/OR/NOT, = <> < <= > >=, [NOT] LIKE, [NOT] IN, [NOT] BETWEEN, IS [NOT] NULL,
CASEI, + - * /, TIMESTAMP/DATE (a DATE against ``updated`` compares its UTC day), the eight
S_* functions on WKT/BBOX/GeoJSON literals, S_DWITHIN(a, b, metres[, m]), the A_* functions
on ``tags`` (as sets), and ``tags = 'k=v'`` as short for ``A_CONTAINS(tags, ('k=v'))``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache
from importlib.resources import files
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, Union, get_args, get_origin

import shapely
from lark import Lark, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lexer import PatternStr
from pygeofilter import ast, values
from pygeofilter.cql2 import (
    ARRAY_PREDICATES_MAP,
    BINARY_OP_PREDICATES_MAP,
    TEMPORAL_PREDICATES_MAP,
)
from pygeofilter.parsers.cql2_json.parser import walk_cql_json
from pygeofilter.parsers.cql2_text.parser import CQLTransformer

from twin.errors import InvalidInput, Problem
from twin.layer import Layer
from twin.registry import get_layer, layer_cache

CONFORMANCE: tuple[str, ...] = (
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/array-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
)

LANGUAGES = ("cql2-text", "cql2-json")


@dataclass(frozen=True)
class SqlFilter:
    """A boolean SQL expression over alias ``f`` and the values bound to its placeholders."""

    sql: str
    params: dict[str, Any]


Kind = Literal["int", "float", "bool", "str", "timestamp", "date", "geometry", "array"]

_NUMERIC = frozenset({"int", "float"})
_TEMPORAL = frozenset({"timestamp", "date"})
_ORDERED = _NUMERIC | _TEMPORAL | {"str"}
_JSON_TYPES = {"int": "integer", "float": "number", "bool": "boolean", "str": "string"}
_SQL_CASTS = {"int": "::bigint", "float": "::double precision", "bool": "::boolean", "str": ""}
# Constraints of an attribute that the queryables document repeats from its pydantic schema.
_CONSTRAINTS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
                "maxLength", "pattern")


@dataclass(frozen=True)
class _Queryable:
    sql: str
    kind: Kind
    enum: tuple[str, ...]
    schema: dict[str, Any]


def _attribute_kind(annotation: Any) -> tuple[Kind, tuple[str, ...]] | None:
    """The kind (and allowed values) of a scalar attribute type; ``T | None`` counts as T."""
    if get_origin(annotation) in (Union, UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not NoneType]
        if len(inner) != 1:
            return None
        annotation = inner[0]
    if get_origin(annotation) is Literal:
        options = get_args(annotation)
        return ("str", options) if all(isinstance(o, str) for o in options) else None
    simple: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "str"}
    kind = simple.get(annotation)
    return (kind, ()) if kind else None


def _attribute_constraints(field_schema: dict[str, Any]) -> dict[str, Any]:
    """Bounds, lengths and patterns of one attribute, looking inside ``T | None``."""
    branches = [b for b in field_schema.get("anyOf", [field_schema]) if b.get("type") != "null"]
    branch = branches[0] if branches else {}
    return {key: branch[key] for key in _CONSTRAINTS if key in branch}


def column_sql(layer: Layer, name: str) -> str:
    """The typed SQL of a queryable over alias f (sorting and tiles use it too)."""
    return _queryables(layer)[name].sql


def sortable_names(layer: Layer) -> list[str]:
    """Queryables with an order: every scalar one (not tags, not geometry)."""
    return [name for name, q in _queryables(layer).items() if q.kind not in ("array", "geometry")]


@layer_cache
@cache
def _queryables_of(name: str) -> dict[str, _Queryable]:
    return _build_queryables(get_layer(name))


def _queryables(layer: Layer) -> dict[str, _Queryable]:
    """The queryables of a registered layer, built once."""
    return _queryables_of(layer.name)


def _build_queryables(layer: Layer) -> dict[str, _Queryable]:
    """Every filterable name of the layer: the common columns, then the scalar attributes.

    Attributes whose type is not a scalar (int, float, bool, str, Literal of str) are not
    queryable. Attribute names are Python identifiers, so they are safe inside ``'...'``.
    """
    vocabulary = [*layer.tags.labels,
                  *(f"{key}={value}" for key, vals in layer.tags.keys.items() for value in vals)]
    found = {
        "id": _Queryable("f.id", "int", (), {"type": "integer", "title": "编号 ID"}),
        "name": _Queryable("f.name", "str", (), {"type": "string", "title": "名称 Name"}),
        "tags": _Queryable("f.tags", "array", (), {
            "type": "array", "items": {"type": "string", "enum": vocabulary},
            "title": "标签 Tags",
            "description": "'key=value' facts and bare labels; tags = 'k=v' is short for "
                           "A_CONTAINS(tags, ('k=v'))"}),
        "micro_grid": _Queryable("f.grid_code", "str", (), {
            "type": "string", "title": "微网格 Micro-grid",
            "description": "code of the micro-grid the feature lies in"}),
        "residential_area": _Queryable("f.area_code", "str", (), {
            "type": "string", "title": "居民区 Residential area",
            "description": "code of the residential area the feature lies in"}),
        "version": _Queryable("f.version", "int", (), {
            "type": "integer", "title": "版本 Version",
            "description": "1 when created, +1 per edit"}),
        "updated": _Queryable("f.valid_from", "timestamp", (), {
            "type": "string", "format": "date-time", "title": "更新时间 Updated",
            "description": "when the current version was written (UTC); a DATE compares with "
                           "its UTC day"}),
        "geometry": _Queryable("f.geom", "geometry", (), {
            "format": f"geometry-{layer.geometry_type.lower()}", "title": "几何 Geometry"}),
    }
    model_schema = layer.attributes.model_json_schema()["properties"]
    for name, info in layer.attributes.model_fields.items():
        typed = _attribute_kind(info.annotation)
        if typed is None:
            continue
        kind, enum = typed
        schema: dict[str, Any] = {"type": _JSON_TYPES[kind]}
        if enum:
            schema["enum"] = list(enum)
        schema["title"] = info.title or name
        if info.description:
            schema["description"] = info.description
        schema.update(_attribute_constraints(model_schema.get(name, {})))
        found[name] = _Queryable(f"(f.props->>'{name}'){_SQL_CASTS[kind]}", kind, enum, schema)
    return found


def queryables(layer: Layer, base_url: str) -> dict[str, Any]:
    """The JSON Schema served at ``/collections/{layer}/queryables`` (OGC API Features Part 3)."""
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": f"{base_url}/collections/{layer.name}/queryables",
        "type": "object",
        "title": layer.title,
        "properties": {name: q.schema for name, q in _queryables(layer).items()},
        "additionalProperties": False,
    }


def _invalid(reason: str, reason_zh: str, value: Any) -> InvalidInput:
    return InvalidInput(f"invalid filter: {reason}",
                        [Problem(field="filter", value=value, reason=reason, reason_zh=reason_zh)])


# --- cql2-text ------------------------------------------------------------------------------
# pygeofilter 0.4's cql2-text grammar lacks things CQL2 has or we promise: '' inside a string,
# NOT before a parenthesised OR/AND, the array functions with ( ... ) array literals, and
# S_DWITHIN. They are added here.
_TEXT_EXTENSION = r"""
%override SINGLE_QUOTED: /'(?:[^']|'')*'/
%override ?condition_1: predicate
    | "NOT"i condition_1 -> not_
    | "(" condition ")"
%extend predicate: _array_function "(" array_operand "," array_operand ")" -> array_predicate
    | _distance_function "(" expression "," expression "," full_number ["," units] ")" -> dwithin
!_array_function: "A_EQUALS"i | "A_CONTAINS"i | "A_CONTAINEDBY"i | "A_OVERLAPS"i
!_distance_function: "S_DWITHIN"i | "DWITHIN"i
?array_operand: attribute | array
array: "(" [array_item ("," array_item)*] ")"
?array_item: literal | array
?units: UNITS | SINGLE_QUOTED
UNITS: /[A-Za-z_]+/
"""


def _timestamp(text: Any) -> datetime:
    """An RFC 3339 timestamp (pygeofilter's dateparser would guess at anything)."""
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise _invalid(f"{text!r} is not a timestamp like 2025-01-31T08:00:00Z",
                       "时间戳无效", text) from None


def _date(text: Any) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise _invalid(f"{text!r} is not a date like 2025-01-31", "日期无效", text) from None


@v_args(inline=True)
class _TextTransformer(CQLTransformer):  # type: ignore[misc]  # pygeofilter is untyped
    """pygeofilter's transformer, plus the extension's rules and without its debug prints."""

    def SINGLE_QUOTED(self, token: str) -> str:  # noqa: N802  (a terminal's callback)
        return token[1:-1].replace("''", "'")

    def DATETIME(self, token: str) -> datetime:  # noqa: N802
        return _timestamp(str(token))

    def DATE(self, token: str) -> date:  # noqa: N802
        return _date(str(token))

    def array(self, *items: Any) -> list[Any]:
        return list(items)

    def array_predicate(self, function: str, lhs: Any, rhs: Any) -> Any:
        return ARRAY_PREDICATES_MAP[function.lower()](lhs, rhs)

    def dwithin(self, _function: str, lhs: Any, rhs: Any, distance: Any, units: str = "") -> Any:
        return ast.DistanceWithin(lhs, rhs, distance, str(units))

    def neg(self, value: Any) -> Any:
        """``-floors`` is 0 - floors; pygeofilter only negates numbers."""
        return -value if isinstance(value, int | float) else ast.Sub(0, value)

    def wkt__geometry_with_srid(self, srid: str, geometry: dict[str, Any]) -> dict[str, Any]:
        return {**geometry, "srid": int(srid)}

    def wkt__multipoint_2(self, *coordinates: Any) -> dict[str, Any]:
        return {"type": "MultiPoint", "coordinates": coordinates}


@cache
def _text_parser() -> Lark:
    grammar = Path(str(files("pygeofilter.parsers.cql2_text") / "grammar.lark"))
    return Lark(grammar.read_text() + _TEXT_EXTENSION, parser="lalr", maybe_placeholders=False,
                source_path=str(grammar), import_paths=[str(grammar.parent.parent)],
                transformer=_TextTransformer())


# How the grammar's non-keyword terminals read in an error message.
_TERMINAL_NAMES = {"$END": "end of filter", "SINGLE_QUOTED": "'string'", "INT": "number",
                   "FLOAT": "number", "BOOLEAN": "TRUE/FALSE", "DOUBLE_QUOTED": "property",
                   "UNITS": "units"}


def _expected(names: set[str]) -> str:
    """The keywords and symbols the parser would have accepted, readable."""
    terminals = {t.name: t.pattern for t in _text_parser().terminals}
    shown = set()
    for name in names:
        pattern = terminals.get(name)
        if name in _TERMINAL_NAMES or pattern is None:
            shown.add(_TERMINAL_NAMES.get(name, name))
        elif isinstance(pattern, PatternStr):
            shown.add(pattern.value.upper())
        else:  # the one anonymous pattern left is a property name
            shown.add("property")
    return ", ".join(sorted(shown))


def _syntax_error(exc: UnexpectedInput, text: str) -> InvalidInput:
    where = f"line {exc.line}, column {exc.column}"
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END":
        what = f"the filter ends too early; expected: {_expected(exc.expected)}"
    elif isinstance(exc, UnexpectedToken):
        what = f"unexpected {str(exc.token)!r} at {where}; expected: {_expected(exc.expected)}"
    elif isinstance(exc, UnexpectedCharacters):
        what = f"unexpected character {exc.char!r} at {where}"
    else:
        what = f"cannot read the filter at {where}"
    return _invalid(f"CQL2 text syntax error: {what}",
                    f"CQL2 文本语法错误（第 {exc.line} 行第 {exc.column} 列）", text)


def _parse_text(text: str) -> Any:
    try:
        return _text_parser().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    except InvalidInput:
        raise
    except Exception as exc:  # pygeofilter's callbacks raise ValueError, TypeError, ...
        raise _invalid(f"cannot read the filter: {exc}", "无法解析过滤条件", text) from None


# --- cql2-json ------------------------------------------------------------------------------
# pygeofilter 0.4 reads the draft JSON encoding; CQL2 1.0 writes BETWEEN with three arguments,
# allows 6-number bboxes and geometry collections. Those, S_DWITHIN and unknown operators are
# handled here before pygeofilter's walker sees the document.
_JSON_OPS = frozenset(BINARY_OP_PREDICATES_MAP) | {"between", "in", "casei"}
_DWITHIN_OPS = frozenset({"s_dwithin", "dwithin"})


def _normalise_json(node: Any) -> Any:
    if isinstance(node, list):
        return [_normalise_json(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "op" in node:
        op, args = node["op"], node.get("args")
        if not isinstance(op, str) or not isinstance(args, list):
            raise _invalid("an operation needs a string 'op' and a list 'args'",
                           "运算需要字符串 op 和列表 args", node)
        if op.lower() in _DWITHIN_OPS:
            if len(args) not in (3, 4):
                raise _invalid("S_DWITHIN takes (geometry, geometry, distance[, units])",
                               "S_DWITHIN 参数为（几何，几何，距离[，单位]）", node)
            lhs, rhs = (walk_cql_json(_normalise_json(arg)) for arg in args[:2])
            units = args[3] if len(args) == 4 else ""
            return ast.DistanceWithin(lhs, rhs, args[2], units)
        if op not in _JSON_OPS:
            raise _unknown_function(op)
        args = [_normalise_json(arg) for arg in args]
        if op == "between" and len(args) == 3:
            args = [args[0], args[1:]]
        return {"op": op, "args": args}
    if set(node) == {"timestamp"}:
        return _timestamp(node["timestamp"])
    if set(node) == {"date"}:
        return _date(node["date"])
    if "bbox" in node and "type" not in node:
        numbers = node["bbox"]
        if not isinstance(numbers, list) or len(numbers) not in (4, 6):
            raise _invalid("a bbox has 4 or 6 numbers", "bbox 需要 4 或 6 个数", node)
        return _box(numbers, node)
    if node.get("type") == "GeometryCollection":
        return values.Geometry(node)
    return {key: _normalise_json(value) for key, value in node.items()}


def _parse_json(text: str) -> Any:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise _invalid(f"not JSON: {exc}", "不是有效的 JSON", text) from None
    try:
        return walk_cql_json(_normalise_json(document))
    except InvalidInput:
        raise
    except Exception as exc:  # pygeofilter's walker raises ValueError, KeyError, TypeError...
        raise _invalid(f"not valid CQL2 JSON: {type(exc).__name__}: {exc}",
                       "不是有效的 CQL2 JSON", text) from None


# --- from the AST to SQL --------------------------------------------------------------------
_FUNCTIONS = ("casei", "bbox")


def _unknown_function(name: str) -> InvalidInput:
    return _invalid(f"unknown function or operator {name!r}; functions: "
                    f"{', '.join(f.upper() for f in _FUNCTIONS)}",
                    f"未知函数或运算符 {name}", name)


def _box(numbers: list[Any], piece: Any) -> values.Geometry:
    """A CQL2 BBOX (minx, miny[, minz], maxx, maxy[, maxz]) as a GeoJSON polygon."""
    if len(numbers) not in (4, 6) or not all(_is_number(n) for n in numbers):
        raise _invalid("BBOX takes 4 or 6 numbers", "BBOX 需要 4 或 6 个数", piece)
    half = len(numbers) // 2
    minx, miny, maxx, maxy = numbers[0], numbers[1], numbers[half], numbers[half + 1]
    if minx > maxx or miny > maxy:
        raise _invalid("BBOX needs minx <= maxx and miny <= maxy (no antimeridian crossing)",
                       "BBOX 需要最小值不大于最大值", piece)
    return values.Geometry(shapely.geometry.mapping(shapely.box(minx, miny, maxx, maxy)))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_COMPARISONS: dict[type, str] = {ast.Equal: "=", ast.NotEqual: "<>", ast.LessThan: "<",
                                 ast.LessEqual: "<=", ast.GreaterThan: ">",
                                 ast.GreaterEqual: ">="}
_ARITHMETIC: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mul: "*", ast.Div: "/"}
_SPATIAL: dict[type, str] = {
    ast.GeometryIntersects: "ST_Intersects", ast.GeometryWithin: "ST_Within",
    ast.GeometryContains: "ST_Contains", ast.GeometryDisjoint: "ST_Disjoint",
    ast.GeometryEquals: "ST_Equals", ast.GeometryTouches: "ST_Touches",
    ast.GeometryCrosses: "ST_Crosses", ast.GeometryOverlaps: "ST_Overlaps"}
_METRES = frozenset({"", "m", "meter", "meters", "metre", "metres"})
# Shortest ground length of one degree of latitude, and of longitude at the equator (WGS 84).
_M_PER_DEG_LAT = 110_574.0
_M_PER_DEG_LON = 111_320.0


@dataclass(frozen=True)
class _Expr:
    """A typed operand: SQL for a property or expression, or a literal value not yet bound."""

    kind: Kind
    label: str
    sql: str = ""
    enum: tuple[str, ...] = ()
    literal: bool = False
    value: Any = None


class _Compiler:
    """Walks one pygeofilter AST; collects the bound values as it writes SQL."""

    def __init__(self, layer: Layer, prefix: str) -> None:
        self.layer = layer
        self.prefix = prefix
        self.fields = _queryables(layer)
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        key = f"{self.prefix}{len(self.params)}"
        self.params[key] = value
        return f"%({key})s"

    def sql(self, expr: _Expr) -> str:
        """The SQL of an operand; a literal is bound here, typed so PostgreSQL need not guess."""
        if not expr.literal:
            return expr.sql
        if expr.kind == "geometry":
            wkt = shapely.to_wkt(expr.value, rounding_precision=-1)  # all digits: exact
            return f"ST_GeomFromText({self.bind(wkt)}, 4326)"
        if expr.kind == "str":
            return f"{self.bind(expr.value)}::text"
        if expr.kind == "array":
            return f"{self.bind(expr.value)}::text[]"
        return self.bind(expr.value)

    # conditions

    def condition(self, node: Any) -> str:
        if isinstance(node, ast.And | ast.Or):
            word = "AND" if isinstance(node, ast.And) else "OR"
            return f"({self.condition(node.lhs)} {word} {self.condition(node.rhs)})"
        if isinstance(node, ast.Not):
            return f"(NOT {self.condition(node.sub_node)})"
        if isinstance(node, ast.Include):
            return "FALSE" if node.not_ else "TRUE"
        if isinstance(node, bool):
            return self.bind(node)
        if type(node) in _COMPARISONS:
            return self.comparison(node)
        if isinstance(node, ast.Between):
            return self.between(node)
        if isinstance(node, ast.Like):
            return self.like(node)
        if isinstance(node, ast.In):
            return self.in_(node)
        if isinstance(node, ast.IsNull):
            return f"({self.sql(self.expr(node.lhs))} IS {'NOT ' if node.not_ else ''}NULL)"
        if type(node) in _SPATIAL:
            lhs, rhs = self.geometries(f"S_{node.op.value}", node.lhs, node.rhs)
            return f"{_SPATIAL[type(node)]}({self.sql(lhs)}, {self.sql(rhs)})"
        if isinstance(node, ast.BBox):  # ECQL's BBOX(geometry, minx, miny, maxx, maxy[, crs])
            if node.crs is not None and "4326" not in node.crs and "CRS84" not in node.crs:
                raise _invalid(f"BBOX coordinates are in WGS 84, not {node.crs}",
                               "BBOX 须为 WGS 84 坐标", node.crs)
            lhs, rhs = self.geometries("BBOX", node.lhs, _box(
                [node.minx, node.miny, node.maxx, node.maxy], "BBOX"))
            return f"ST_Intersects({self.sql(lhs)}, {self.sql(rhs)})"
        if isinstance(node, ast.DistanceWithin):
            return self.dwithin(node)
        if isinstance(node, ast.ArrayPredicate):
            return self.array(node)
        if isinstance(node, ast.TemporalPredicate):
            name = next(k for k, v in TEMPORAL_PREDICATES_MAP.items() if v is type(node)).upper()
            raise _invalid(f"temporal functions ({name}) are not supported; compare updated "
                           "with TIMESTAMP('...') or DATE('...') using <, >, BETWEEN",
                           "不支持时间函数；请用比较运算", name)
        raise _invalid(f"expected a condition, got {_describe(node)}", "此处需要条件",
                       _describe(node))

    def comparison(self, node: Any) -> str:
        op = _COMPARISONS[type(node)]
        lhs, rhs = self.expr(node.lhs), self.expr(node.rhs)
        for tags, other in ((lhs, rhs), (rhs, lhs)):
            if tags.kind == "array" and not tags.literal and other.kind == "str" \
                    and other.literal and op == "=":
                return f"({self.sql(tags)} @> {self.bind([other.value])}::text[])"
        self.check_comparable(lhs, rhs, op)
        if op in ("=", "<>"):
            self.check_enum(lhs, [rhs])
            self.check_enum(rhs, [lhs])
        left, right = self.temporal_pair(lhs, rhs)
        return f"({left} {op} {right})"

    def between(self, node: Any) -> str:
        lhs, low, high = self.expr(node.lhs), self.expr(node.low), self.expr(node.high)
        self.check_comparable(lhs, low, "BETWEEN")
        self.check_comparable(lhs, high, "BETWEEN")
        left, lower = self.temporal_pair(lhs, low)
        _, upper = self.temporal_pair(lhs, high)
        return f"({left} {'NOT ' if node.not_ else ''}BETWEEN {lower} AND {upper})"

    def like(self, node: Any) -> str:
        lhs = self.expr(node.lhs)
        if lhs.kind != "str":
            raise _mismatch(f"LIKE needs a string, {lhs.label} is {_kind_name(lhs)}", lhs.label)
        pattern = node.pattern
        inner = pattern.arguments[0] if isinstance(pattern, ast.Function) \
            and pattern.name.lower() in ("lower", "casei") and len(pattern.arguments) == 1 \
            else pattern
        if not isinstance(inner, str):
            raise _mismatch("the LIKE pattern must be a string literal (optionally in CASEI)",
                            _describe(pattern))
        if (len(inner) - len(inner.rstrip("\\"))) % 2:
            raise _invalid("a LIKE pattern cannot end with the escape character \\",
                           "LIKE 模式不能以转义符结尾", inner)
        left, right = self.sql(lhs), self.sql(self.expr(pattern))
        return f"({left} {'NOT ' if node.not_ else ''}LIKE {right})"

    def in_(self, node: Any) -> str:
        lhs = self.expr(node.lhs)
        if not isinstance(node.sub_nodes, list) or not node.sub_nodes:
            raise _invalid("IN needs a non-empty list of values", "IN 需要非空的取值列表",
                           _describe(node.sub_nodes))
        if lhs.kind == "array":
            raise _mismatch("IN does not apply to tags; use A_OVERLAPS(tags, ('a', 'b'))",
                            lhs.label)
        items = [self.expr(item) for item in node.sub_nodes]
        for item in items:
            self.check_comparable(lhs, item, "IN")
        if lhs.kind in _TEMPORAL and len({item.kind for item in items}) > 1:
            raise _mismatch("IN compares a time with dates or with timestamps, not both",
                            _describe(node.sub_nodes))
        self.check_enum(lhs, items)
        left, rights = self.sql(lhs), [self.sql(item) for item in items]
        if {lhs.kind, items[0].kind} == {"timestamp", "date"}:
            if lhs.kind == "timestamp":
                left = _utc_day(left)
            else:
                rights = [_utc_day(right) for right in rights]
        return f"({left} {'NOT ' if node.not_ else ''}IN ({', '.join(rights)}))"

    def geometries(self, name: str, *nodes: Any) -> list[_Expr]:
        found = [self.expr(node) for node in nodes]
        for expr in found:
            if expr.kind != "geometry":
                raise _mismatch(f"{name} needs geometries; {expr.label} is {_kind_name(expr)}",
                                expr.label)
        return found

    def dwithin(self, node: Any) -> str:
        """Metres on the spheroid, with a bounding-box test first so the GiST index is used."""
        lhs, rhs = self.geometries("S_DWITHIN", node.lhs, node.rhs)
        distance, units = node.distance, node.units
        if not _is_number(distance) or distance < 0:
            raise _invalid("the S_DWITHIN distance must be a number of metres >= 0",
                           "距离必须是非负的米数", distance)
        if not isinstance(units, str) or units.lower() not in _METRES:
            raise _invalid(f"distance units {units!r} are not supported; give metres "
                           "(m, meters, metres) or leave the units out",
                           "距离单位只支持米", units)
        left, right = self.sql(lhs), self.sql(rhs)
        within = f"ST_DWithin({left}::geography, {right}::geography, {self.bind(distance)})"
        if lhs.literal == rhs.literal:
            return f"({within})"
        literal, column = (lhs, right) if lhs.literal else (rhs, left)
        literal_sql = left if lhs.literal else right
        degrees = _degrees_for(float(distance), literal.value)
        return f"({column} && ST_Expand({literal_sql}, {self.bind(degrees)}) AND {within})"

    def array(self, node: Any) -> str:
        lhs, rhs = self.expr(node.lhs), self.expr(node.rhs)
        for expr in (lhs, rhs):
            if expr.kind != "array":
                raise _mismatch(f"A_{node.op.value[1:]} compares arrays; {expr.label} is "
                                f"{_kind_name(expr)}", expr.label)
        left, right = self.sql(lhs), self.sql(rhs)
        if isinstance(node, ast.ArrayEquals):  # CQL2 compares arrays as sets
            return f"({left} @> {right} AND {left} <@ {right})"
        op = {ast.ArrayContains: "@>", ast.ArrayContainedBy: "<@", ast.ArrayOverlaps: "&&"}
        return f"({left} {op[type(node)]} {right})"

    # checks

    def check_comparable(self, lhs: _Expr, rhs: _Expr, op: str) -> None:
        kinds = {lhs.kind, rhs.kind}
        same = len(kinds) == 1 or kinds <= _NUMERIC or kinds <= _TEMPORAL
        if not same or kinds & {"geometry", "array"}:
            hint = ""
            if kinds & {"geometry"}:
                hint = "; use S_EQUALS, S_INTERSECTS... for geometries"
            elif kinds & {"array"}:
                hint = "; use tags = 'k=v' or A_CONTAINS(tags, ('a', 'b'))"
            elif kinds & _TEMPORAL:
                hint = "; write times as TIMESTAMP('2025-01-31T08:00:00Z') or DATE('2025-01-31')"
            raise _mismatch(f"cannot compare {lhs.label} ({_kind_name(lhs)}) with {rhs.label} "
                            f"({_kind_name(rhs)}) using {op}{hint}", f"{lhs.label} {op} "
                            f"{rhs.label}")
        if op not in ("=", "<>", "IN") and not kinds <= _ORDERED:
            raise _mismatch(f"{op} does not apply to {_kind_name(lhs)} values", lhs.label)

    def check_enum(self, prop: _Expr, others: list[_Expr]) -> None:
        """A value an enumerated attribute can never take is a mistake, not an empty result."""
        for other in others:
            if prop.enum and other.literal and other.value not in prop.enum:
                raise _invalid(f"{prop.label} is one of {list(prop.enum)}, never "
                               f"{other.value!r}", f"{prop.label} 的取值不包括 {other.value}",
                               other.value)

    def temporal_pair(self, lhs: _Expr, rhs: _Expr) -> tuple[str, str]:
        """SQL of both sides; a timestamp compared with a date is compared by its UTC day."""
        left, right = self.sql(lhs), self.sql(rhs)
        if {lhs.kind, rhs.kind} == {"timestamp", "date"}:
            if lhs.kind == "timestamp":
                left = _utc_day(left)
            else:
                right = _utc_day(right)
        return left, right

    # operands

    def expr(self, node: Any) -> _Expr:
        if isinstance(node, ast.Attribute):
            return self.property(node.name)
        if isinstance(node, bool):
            return _Expr("bool", repr(node).upper(), literal=True, value=node)
        if isinstance(node, int | float):
            if not math.isfinite(node):
                raise _invalid("numbers must be finite", "数值必须有限", repr(node))
            return _Expr("int" if isinstance(node, int) else "float", repr(node), literal=True,
                         value=node)
        if isinstance(node, str):
            return _Expr("str", repr(node), literal=True, value=node)
        if isinstance(node, datetime):
            moment = node.astimezone(UTC) if node.tzinfo else node.replace(tzinfo=UTC)
            return _Expr("timestamp", f"TIMESTAMP('{moment.isoformat()}')", literal=True,
                         value=moment)
        if isinstance(node, date):
            return _Expr("date", f"DATE('{node.isoformat()}')", literal=True, value=node)
        if isinstance(node, values.Geometry):
            return _geometry(node.geometry)
        if isinstance(node, values.Envelope):
            return _geometry(shapely.geometry.mapping(shapely.box(
                min(node.x1, node.x2), min(node.y1, node.y2),
                max(node.x1, node.x2), max(node.y1, node.y2))))
        if isinstance(node, list):
            items = [self.expr(item) for item in node]
            if any(not item.literal or item.kind != "str" for item in items):
                raise _mismatch("array literals hold strings (tags are strings)",
                                _describe(node))
            return _Expr("array", repr([i.value for i in items]), literal=True,
                         value=[i.value for i in items])
        if isinstance(node, ast.Function):
            return self.function(node)
        if type(node) in _ARITHMETIC:
            return self.arithmetic(node)
        if isinstance(node, values.Interval):
            raise _invalid("intervals belong to temporal functions, which are not supported",
                           "不支持时间区间", _describe(node))
        raise _invalid(f"expected a value, got {_describe(node)}", "此处需要取值",
                       _describe(node))

    def property(self, name: str) -> _Expr:
        field = self.fields.get(name)
        if field is None:
            raise _invalid(f"unknown property {name!r}; queryables of {self.layer.name}: "
                           f"{', '.join(sorted(self.fields))}", f"未知属性 {name}", name)
        return _Expr(field.kind, name, field.sql, field.enum)

    def function(self, node: Any) -> _Expr:
        name = node.name.lower()
        if name in ("casei", "lower"):  # pygeofilter reads CASEI as lower
            if len(node.arguments) != 1:
                raise _invalid("CASEI takes one argument", "CASEI 只有一个参数", node.name)
            arg = self.expr(node.arguments[0])
            if arg.kind != "str":
                raise _mismatch(f"CASEI needs a string, {arg.label} is {_kind_name(arg)}",
                                arg.label)
            return _Expr("str", f"CASEI({arg.label})", f"lower({self.sql(arg)})")
        if name == "bbox":
            return self.expr(_box(list(node.arguments), f"BBOX{tuple(node.arguments)}"))
        raise _unknown_function(node.name)

    def arithmetic(self, node: Any) -> _Expr:
        """+, -, *, / on numbers; / divides as real numbers and is NULL for a zero divisor."""
        op = _ARITHMETIC[type(node)]
        lhs, rhs = self.expr(node.lhs), self.expr(node.rhs)
        for expr in (lhs, rhs):
            if expr.kind not in _NUMERIC:
                raise _mismatch(f"arithmetic needs numbers; {expr.label} is {_kind_name(expr)}",
                                expr.label)
        label = f"({lhs.label} {op} {rhs.label})"
        left, right = self.sql(lhs), self.sql(rhs)
        if op == "/":
            return _Expr("float", label, f"({left}::double precision / NULLIF({right}, 0))")
        kind: Kind = "int" if lhs.kind == rhs.kind == "int" else "float"
        return _Expr(kind, label, f"({left} {op} {right})")


def _geometry(geojson: dict[str, Any]) -> _Expr:
    """A geometry literal, checked: known type, finite lon/lat in range, valid, SRID 4326."""
    data = dict(geojson)
    srid = data.pop("srid", 4326)
    label = f"{data.get('type', 'geometry')} literal"
    if srid != 4326:
        raise _invalid(f"geometry literals are in WGS 84 (SRID 4326), not SRID {srid}",
                       "几何字面量须为 WGS 84 坐标", f"SRID={srid}")
    try:
        shape = shapely.force_2d(shapely.geometry.shape(data))
    except Exception as exc:  # shapely raises several kinds for malformed coordinates
        raise _invalid(f"not a valid geometry literal: {exc}", "几何字面量无效", label) from None
    coords = shapely.get_coordinates(shape)
    if shape.is_empty or not all(math.isfinite(c) for c in coords.flat):
        raise _invalid("a geometry literal needs finite coordinates", "几何坐标无效", label)
    if (abs(coords[:, 0]) > 180).any() or (abs(coords[:, 1]) > 90).any():
        raise _invalid("coordinates are longitude (-180..180) then latitude (-90..90)",
                       "坐标须为经度（-180..180）、纬度（-90..90）", shape.wkt)
    if not shape.is_valid:
        raise _invalid(f"invalid geometry literal: {shapely.is_valid_reason(shape)}",
                       "几何字面量无效（自相交等）", shape.wkt)
    return _Expr("geometry", label, literal=True, value=shape)


def _degrees_for(metres: float, shape: shapely.Geometry) -> float:
    """Degrees that surely cover ``metres`` around ``shape`` (longitude shrinks with latitude)."""
    lat_degrees = metres / _M_PER_DEG_LAT
    _, miny, _, maxy = shape.bounds
    latitude = max(abs(miny), abs(maxy)) + lat_degrees
    if latitude >= 89.0:
        return 360.0
    lon_degrees = metres / (_M_PER_DEG_LON * math.cos(math.radians(latitude)))
    return max(lat_degrees, lon_degrees) * 1.1  # 10 % margin for the spheroid


def _utc_day(timestamp_sql: str) -> str:
    return f"(({timestamp_sql}) AT TIME ZONE 'UTC')::date"


def _kind_name(expr: _Expr) -> str:
    names = {"int": "an integer", "float": "a number", "bool": "a boolean", "str": "a string",
             "timestamp": "a timestamp", "date": "a date", "geometry": "a geometry",
             "array": "an array"}
    return names[expr.kind]


def _describe(node: Any) -> str:
    """A short name for a piece of the parsed filter, for error messages."""
    if isinstance(node, ast.Attribute):
        return str(node.name)
    if isinstance(node, ast.Node):
        op = getattr(node, "op", None)
        return str(op.value) if op is not None else type(node).__name__
    return repr(node)


def _mismatch(reason: str, value: Any) -> InvalidInput:
    return _invalid(reason, "类型不匹配", value)


def parse_filter(text: str, lang: str, layer: Layer, *, param_prefix: str = "q") -> SqlFilter:
    """The SQL condition and parameters for a CQL2 ``filter`` on ``layer``.

    ``lang`` is the ``filter-lang`` parameter: ``cql2-text`` or ``cql2-json``. Every problem is
    an InvalidInput about field ``filter``; values are always bound, never written into SQL.
    """
    if not param_prefix.isidentifier():
        raise ValueError(f"param_prefix must be an identifier, not {param_prefix!r}")
    if lang not in LANGUAGES:
        raise _invalid(f"unknown filter-lang {lang!r}; supported: {', '.join(LANGUAGES)}",
                       "不支持的过滤语言", lang)
    try:
        tree = _parse_text(text) if lang == "cql2-text" else _parse_json(text)
        compiler = _Compiler(layer, param_prefix)
        return SqlFilter(compiler.condition(tree), compiler.params)
    except RecursionError:
        raise _invalid("the filter is nested too deeply", "过滤条件嵌套过深", text) from None
