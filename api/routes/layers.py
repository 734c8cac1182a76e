"""Layers declared in a running twin (admins): ``POST /layers`` adds one, ``PUT
/layers/{name}`` changes one (If-Match: the version read), both with the spec as JSON or as the
TOML of ``layers/``; every layer's spec and its versions are readable by anyone signed in. The
HTTP shape of twin.features.layers."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, UserDep
from api.errors import SIGNED, errors
from api.etags import based_on
from twin.errors import InvalidInput, NotFound, Problem, UnsupportedMediaType
from twin.features.layers import declare_layer, layer_etag, layer_versions
from twin.layerspec import SpecError, parse_spec_text
from twin.registry import all_layers, spec_of
from twin.store.layerspecs import newest_specs

router = APIRouter(tags=["layers"], responses=errors(*SIGNED))
# what declaring a layer may be refused with: not an admin, a body too large or of another
# type, a spec the twin (or its features) cannot take
DECLARE_REFUSED = errors(403, 413, 415, 422)

LAYER_ETAG = re.compile(r'"([a-z][a-z0-9_]*)-(\d+)"')
SPEC_TYPES = ("application/json", "application/toml")


async def _spec(request: Request) -> dict[str, Any]:
    """The body: a spec as a JSON object, or as TOML."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind not in SPEC_TYPES:
        raise UnsupportedMediaType(f"send the spec as {' or '.join(SPEC_TYPES)}, not {kind!r}",
                                   [Problem("Content-Type", kind, f"one of {list(SPEC_TYPES)}",
                                            "须为 JSON 或 TOML")])
    body = (await request.body()).decode("utf-8", errors="replace")
    try:
        spec = json.loads(body) if kind == "application/json" else parse_spec_text(body)
    except (json.JSONDecodeError, SpecError) as exc:
        raise InvalidInput(f"the body is not {kind}: {exc}",
                           [Problem("body", body[:200], str(exc), "无法解析")]) from None
    if not isinstance(spec, dict):
        raise InvalidInput("the spec is an object", [Problem("body", spec, "an object",
                                                             "须为对象")])
    return spec


def _answer(layer: str, version: int, body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={
        "ETag": layer_etag(layer, version), "Location": f"/layers/{layer}"})


@router.get("/layers", summary="Every layer, with its spec's version: declared where, by whom")
def layers_list(engine: EngineDep, user: UserDep) -> dict[str, Any]:
    with engine.connect() as conn:
        newest = newest_specs(conn)
    return {"layers": [
        {"name": name, "title": layer.title, "geometry": layer.geometry_type,
         "group": layer.group,
         **{k: v for k, v in newest.get(name, {}).items() if k not in ("layer", "spec")},
         "links": [{"rel": "describedby", "href": f"/layers/{name}"},
                   {"rel": "collection", "href": f"/collections/{name}"}]}
        for name, layer in all_layers().items()]}


@router.get("/layers/{name}", summary="A layer's spec as the twin serves it",
            response_class=JSONResponse, responses=errors(404))
def layer_spec(name: str, engine: EngineDep, user: UserDep) -> JSONResponse:
    spec = spec_of(name)
    with engine.connect() as conn:
        newest = newest_specs(conn).get(name)
    if newest is None:
        raise NotFound(f"layer {name} is not recorded in this twin: run `twin db migrate`")
    return _answer(name, newest["version"], {"version": newest["version"], "spec": spec})


@router.get("/layers/{name}/versions", summary="A layer's schema history: every version, "
                                               "who declared it, when, what changed",
            responses=errors(404))
def layer_history(name: str, engine: EngineDep, user: UserDep) -> dict[str, Any]:
    spec_of(name)
    with engine.connect() as conn:
        return {"versions": layer_versions(conn, name)}


@router.post("/layers", status_code=201, summary="Add a layer to the running twin (admin)",
             response_class=JSONResponse, responses=DECLARE_REFUSED | errors(409))
async def add_layer(request: Request, engine: EngineDep, user: UserDep) -> JSONResponse:
    """The spec (JSON, or the TOML of a ``layers/`` file): served, editable, on the tablets'
    forms and the map at once, on every server, without a restart."""
    spec = await _spec(request)
    done = await run_in_threadpool(declare_layer, engine, user, spec)
    return _answer(done.layer, done.version, done.as_dict(), 201)


@router.put("/layers/{name}", summary="Change a layer (admin): new attributes, enum values, "
                                      "states, words; If-Match the version read",
            response_class=JSONResponse,
            responses=DECLARE_REFUSED | errors(404, 409, 412, 428))
async def change_layer(name: str, request: Request, engine: EngineDep,
                       user: UserDep) -> JSONResponse:
    """Logged as the layer's next version, with what changed; a change its features might
    not fit (a removal, a type or range changed) is a 422 naming each."""
    spec_of(name)
    base = based_on(request, LAYER_ETAG, name, "layer", "图层", '"<layer>-<version>"')
    spec = await _spec(request)
    if spec.get("name") != name:
        raise InvalidInput(f"the spec is of layer {spec.get('name')!r}, not {name!r}",
                           [Problem("name", spec.get("name"), f"must be {name!r}",
                                    "图层名不符")])
    done = await run_in_threadpool(declare_layer, engine, user, spec, base)
    return _answer(done.layer, done.version, done.as_dict())
