"""Query parameters of the feature endpoints, checked one by one into domain values.

Each bad value is a 400 naming the parameter, the value and why; an unknown parameter is a
400 too (OGC API - Features requires it), never silently ignored.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Path
from starlette.datastructures import QueryParams

from twin.crs import CRS84, SUPPORTED, Crs, find_crs
from twin.errors import InvalidInput, NotFound, Problem
from twin.features.cql import SqlFilter, parse_filter, sortable_names
from twin.features.reads import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    ItemsQuery,
    SortKey,
    property_names,
)
from twin.layer import Layer
from twin.registry import get_layer, layer_cache
from twin.times import instant, parse_time

ITEMS_PARAMS = frozenset({"bbox", "bbox-crs", "limit", "datetime", "properties", "cursor", "f",
                          "crs", "sortby", "filter", "filter-lang", "filter-crs", "asOf"})


def bad(name: str, value: object, reason: str, reason_zh: str) -> InvalidInput:
    return InvalidInput(f"{name}={value!s}: {reason}", [Problem(name, value, reason, reason_zh)])


# What a declared number may be, so that a larger one is a 400 naming it rather than the
# database's overflow (a 500): ids, cursors and a device's sequence numbers (bigint) up to
# the largest whole number a JSON number holds exactly everywhere (2^53 - 1, as the document's
# bounds are written as doubles), versions up to PostgreSQL's integer
MAX_ID = 2**53 - 1
INTEGER = 2**31 - 1
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="a positive whole number (an id)")]


def digits(raw: str) -> bool:
    """Whether ``raw`` is a whole number written in ASCII digits: ``str.isdigit`` holds for
    superscripts too (``³``), which ``int`` refuses."""
    return raw.isascii() and raw.isdigit()


def id_number(raw: str) -> int | None:
    """A feature's or change's id from a path or query (a PostgreSQL bigint: at most 18
    digits here), or None when the text is no such number."""
    return int(raw) if digits(raw) and len(raw) <= 18 else None


def reject_unknown(params: QueryParams, allowed: Iterable[str]) -> None:
    known = set(allowed)
    unknown = [name for name in params if name not in known]
    if unknown:
        raise InvalidInput(
            f"unknown query parameter {unknown[0]!r}; allowed: {', '.join(sorted(known))}",
            [Problem(name, params[name], "unknown query parameter", "未知查询参数")
             for name in unknown])


def check_format(params: QueryParams) -> None:
    f = params.get("f")
    if f is not None and f not in ("json", "geojson", "html"):
        raise bad("f", f, "one of json, geojson, html", "格式无效")


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise bad("limit", raw, "not a whole number", "不是整数") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise bad("limit", raw, f"must be between 1 and {MAX_LIMIT}", f"须在1到{MAX_LIMIT}之间")
    return limit


def parse_bbox(raw: str | None, crs: Crs) -> tuple[float, float, float, float] | None:
    """4 numbers (or 6 with heights, which are ignored) in ``crs``'s axis order, as x/y."""
    if raw is None:
        return None
    try:
        numbers = [float(part) for part in raw.split(",")]
    except ValueError:
        raise bad("bbox", raw, "4 or 6 comma-separated numbers", "须为4或6个数字") from None
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise bad("bbox", raw, "4 or 6 comma-separated finite numbers", "须为4或6个有限数字")
    a0, b0, a1, b1 = numbers if len(numbers) == 4 else (numbers[0], numbers[1], numbers[3],
                                                          numbers[4])
    lo_a, lo_b, hi_a, hi_b = crs.bounds
    if not (lo_a <= a0 <= hi_a and lo_a <= a1 <= hi_a and lo_b <= b0 <= hi_b
            and lo_b <= b1 <= hi_b):
        raise bad("bbox", raw, f"outside the world: in {crs.uri} the axes range over "
                  f"{lo_a}..{hi_a} and {lo_b}..{hi_b}", "超出坐标范围")
    if a0 > a1 or b0 > b1:
        raise bad("bbox", raw, "inverted: give the lower corner first, then the upper",
                  "坐标顺序颠倒")
    return (b0, a0, b1, a1) if crs.lat_first else (a0, b0, a1, b1)


def parse_crs(name: str, raw: str | None) -> Crs:
    """A supported CRS by URI (or EPSG:n / CRS84); CRS84 when not given."""
    if raw is None:
        return CRS84
    crs = find_crs(raw)
    if crs is None:
        raise bad(name, raw, f"supported: {', '.join(SUPPORTED)}", "不支持的坐标参照系")
    return crs


def _instant(raw: str, whole: str) -> datetime | None:
    """One end of a ``datetime`` interval; ``..`` or nothing is open."""
    if raw in ("", ".."):
        return None
    return instant(raw, "datetime", whole,
                   expected="is not an RFC 3339 time or interval (a/b, ../b, a/..)")


def parse_datetime(raw: str | None) -> datetime | None:
    """The end of the asked time: a feature valid since before it overlaps it."""
    if raw is None:
        return None
    start, sep, end = raw.partition("/")
    if not sep:
        return _instant(start, raw)
    first, last = _instant(start, raw), _instant(end, raw)
    if first and last and first > last:
        raise bad("datetime", raw, "the interval ends before it starts", "时间区间颠倒")
    return last


def parse_properties(raw: str | None, layer: Layer) -> tuple[str, ...] | None:
    if raw is None:
        return None
    chosen = tuple(name.strip() for name in raw.split(",") if name.strip())
    known = property_names(layer)
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise bad("properties", raw, f"unknown {unknown}; known: {', '.join(known)}",
                  "未知属性")
    return chosen


def parse_sortby(raw: str | None, layer: Layer) -> tuple[SortKey, ...]:
    """``sortby=-floors,name``: a leading - sorts descending, + (or nothing) ascending."""
    if raw is None:
        return ()
    keys = []
    known = sortable_names(layer)
    for part in raw.split(","):
        name = part.strip().lstrip("+-").strip()
        if name not in known:
            raise bad("sortby", raw, f"cannot sort by {name!r}; sortable: {', '.join(known)}",
                      "不可排序的属性")
        keys.append(SortKey(name, part.strip().startswith("-")))
    return tuple(keys)


def encode_cursor(values: Sequence[Any]) -> str:
    """The next page starts after these sort values: an opaque, URL-safe token."""
    text = json.dumps(list(values), default=str, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def parse_cursor(raw: str | None, keys: int) -> tuple[Any, ...] | None:
    if raw is None:
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != keys or not all(
            v is None or isinstance(v, str | int | float | bool) for v in values):
        raise bad("cursor", raw, "use the next link the previous page gave", "翻页游标无效")
    return tuple(values)


def parse_filter_params(params: QueryParams, layer: Layer
                        ) -> tuple[tuple[str, dict[str, Any]], ...]:
    """``filter`` in ``filter-lang`` (cql2-text by default); geometries in CRS84 only."""
    filter_crs = parse_crs("filter-crs", params.get("filter-crs"))
    if filter_crs.uri != CRS84.uri:
        raise bad("filter-crs", params["filter-crs"], f"filters take {CRS84.uri} only",
                  "过滤条件只支持CRS84")
    text = params.get("filter")
    if text is None:
        if "filter-lang" in params:
            raise bad("filter-lang", params["filter-lang"], "given without a filter",
                      "缺少过滤条件")
        return ()
    found = _parsed_filter(text, params.get("filter-lang", "cql2-text"), layer.name)
    return ((found.sql, found.params),)


@layer_cache
@lru_cache(maxsize=1024)
def _parsed_filter(text: str, lang: str, layer: str) -> SqlFilter:
    """Parsing a filter costs more than running it: map clients repeat the same few."""
    return parse_filter(text, lang, get_layer(layer))


def items_query(params: QueryParams, layer: Layer) -> ItemsQuery:
    """All parameters of ``/collections/{layer}/items``, checked."""
    reject_unknown(params, ITEMS_PARAMS)
    check_format(params)
    bbox_crs = parse_crs("bbox-crs", params.get("bbox-crs"))
    sort = parse_sortby(params.get("sortby"), layer)
    return ItemsQuery(layer=layer, limit=parse_limit(params.get("limit")),
                      where=parse_filter_params(params, layer),
                      bbox=parse_bbox(params.get("bbox"), bbox_crs), bbox_srid=bbox_crs.srid,
                      crs=parse_crs("crs", params.get("crs")), sort=sort,
                      after=parse_cursor(params.get("cursor"), 2 * len(sort) + 1),
                      properties=parse_properties(params.get("properties"), layer),
                      valid_before=parse_datetime(params.get("datetime")),
                      as_of=parse_time("asOf", params.get("asOf")))


def tile_numbers(z: str, x: str, y: str) -> tuple[int, int, int]:
    """Zoom, column and row of a WebMercatorQuad tile; outside the matrix is a 404."""
    if not (digits(z) and digits(x) and digits(y)) or int(z) > 24:
        raise NotFound(f"no tile {z}/{x}/{y}: zoom 0-24, column and row whole numbers")
    zoom, col, row = int(z), int(x), int(y)
    if col >= 2**zoom or row >= 2**zoom:
        raise NotFound(f"no tile {z}/{x}/{y}: at zoom {zoom} columns and rows are below "
                       f"{2**zoom}")
    return zoom, col, row
