"""The API definition as OpenAPI 3.0 (OGC API - Features Part 1 requires 3.0; FastAPI writes
3.1), with the OGC query parameters the feature routes read themselves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.errors import ErrorBody
from twin.crs import SUPPORTED
from twin.features.reads import DEFAULT_LIMIT, MAX_LIMIT


def _param(name: str, description: str, schema: dict[str, Any],
           style: str | None = None) -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "description": description,
             "schema": schema}
    if style:
        param |= {"style": style, "explode": False}
    return param


CRS_SCHEMA = {"type": "string", "format": "uri", "enum": list(SUPPORTED)}
CRS = _param("crs", "CRS of the response's coordinates (default CRS84).", CRS_SCHEMA)
FORMAT = _param("f", "json or geojson (GeoJSON, the default) or html (a page for a browser, "
                "which a browser's Accept: text/html also gets).",
                {"type": "string", "enum": ["json", "geojson", "html"]})
ITEMS = [
    _param("bbox", "minx,miny,maxx,maxy (or 6 numbers with heights) in bbox-crs.",
           {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
           "form"),
    _param("bbox-crs", "CRS of bbox (default CRS84).", CRS_SCHEMA),
    _param("limit", "Features per page.",
           {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}),
    _param("datetime", "RFC 3339 time or interval (a/b, ../b, a/..) on the feature's "
           "validity.", {"type": "string"}),
    _param("properties", "Attributes to include, comma-separated.",
           {"type": "array", "items": {"type": "string"}}, "form"),
    _param("sortby", "Sort keys, comma-separated; a leading - sorts descending.",
           {"type": "array", "items": {"type": "string"}}, "form"),
    _param("filter", "A CQL2 filter.", {"type": "string"}),
    _param("filter-lang", "cql2-text (default) or cql2-json.",
           {"type": "string", "enum": ["cql2-text", "cql2-json"], "default": "cql2-text"}),
    _param("filter-crs", "CRS of the filter's geometries (default CRS84).", CRS_SCHEMA),
    _param("cursor", "Where the next page starts; take it from the next link.",
           {"type": "string"}),
    CRS,
    FORMAT,
]
TIME = {"type": "string", "format": "date-time"}
AS_OF = _param("asOf", "RFC 3339 time: the twin as it was then (deleted features included, "
               "later ones absent).", TIME)
ITEMS.append(AS_OF)
FEED = [
    _param("order", "newest (default) or oldest first; oldest never skips a late commit.",
           {"type": "string", "enum": ["newest", "oldest"]}),
    _param("limit", "Changes per page.", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                                          "default": DEFAULT_LIMIT}),
    _param("cursor", "The change id to continue after (from the next link).", {"type": "string"}),
    *(_param(name, f"Only changes with this {name}.", {"type": "string"}) for name in
      ("layer", "micro_grid", "residential_area", "actor", "role", "operation", "feature_id")),
    _param("from", "Changes at or after this time.", TIME),
    _param("to", "Changes before this time.", TIME),
    _param("bbox", "minx,miny,maxx,maxy in CRS84: changes that happened there.",
           {"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number"}}, "form"),
    _param("f", "json (default) or csv (streamed).", {"type": "string",
                                                      "enum": ["json", "csv"]}),
]
DIFF = [_param("from", "The earlier moment.", TIME), _param("to", "The later moment.", TIME),
        FEED[-2], _param("micro_grid", "Instead of bbox: a micro-grid code.", {"type": "string"}),
        _param("layer", "Only this layer.", {"type": "string"})]
EXTRA = {"/items": ITEMS, "/items/{fid}": [CRS, AS_OF, FORMAT], "/changes": FEED,
         "/changes/stream": FEED[2:-1], "/changes/diff": DIFF}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring the JSON body a route reads and checks itself (its own size
    limit and error answers) as ``model``'s schema, with its definitions inlined."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
        return {key: inline(value) for key, value in node.items()}

    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline(schema)}}}}


def _downgrade(node: Any) -> Any:
    """Rewrite JSON Schema 2020-12 spellings (OpenAPI 3.1) as OpenAPI 3.0 schema objects."""
    if isinstance(node, list):
        return [_downgrade(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _downgrade(value) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del node[key]
            if len(rest) == 1 and "$ref" in rest[0]:
                rest = [{"allOf": rest}]  # 3.0 ignores siblings of $ref
            node |= (rest[0] if len(rest) == 1 else {key: rest}) | {"nullable": True}
    kind = node.get("type")
    if isinstance(kind, list):
        node["type"] = next(k for k in kind if k != "null")
        if "null" in kind:
            node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("examples"), list):  # a schema's examples (3.0 has one example)
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[plain] = node[bound]
            node[bound] = True
    if "prefixItems" in node:  # a tuple: 3.0 has one schema for every item
        first, *rest = node.pop("prefixItems")
        node["items"] = first if all(item == first for item in rest) else {
            "anyOf": [first, *rest]}
    if node.get("contentMediaType") == "application/octet-stream":
        node.pop("contentMediaType")
        node["format"] = "binary"
    return node


def _drop_fastapi_422(operation: dict[str, Any]) -> None:
    """FastAPI declares a 422 of its own shape for every operation with parameters; Twin
    answers a parameter FastAPI refuses with a 400 of its error body (api.errors), and a 422
    only where a route declares one."""
    content = operation.get("responses", {}).get("422", {}).get("content", {})
    if content.get("application/json", {}).get("schema", {}).get("$ref", "").endswith(
            "/HTTPValidationError"):
        del operation["responses"]["422"]


def install(app: FastAPI) -> None:
    """Serve the definition as OpenAPI 3.0.3, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description, openapi_version="3.0.3")
            paths = schema.get("paths", {})
            for path, operations in paths.items():
                extra = next((v for k, v in EXTRA.items()
                              if path.endswith(k) and path.startswith(("/collections",
                                                                       "/changes"))), [])
                for method, operation in operations.items():
                    if method == "get":
                        operation.setdefault("parameters", []).extend(extra)
                    _drop_fastapi_422(operation)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            components |= models_json_schema([(ErrorBody, "serialization")],
                                             ref_template="#/components/schemas/{model}"
                                             )[1]["$defs"]
            app.openapi_schema = _downgrade(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
