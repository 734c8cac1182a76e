"""Edits through OGC API - Features Part 4: create, replace, update and delete features.

Every change of an existing feature names the version it was based on in ``If-Match`` (the
ETag a read gave, in any CRS; api.etags): missing is 428, stale is 412 with the current
version. A role that may leave it out, as QGIS does (TWIN_IMPLICIT_IF_MATCH_ROLES), is based
on the newest version its token was given instead (api.seen). ``Idempotency-Key`` makes a
retried request answer the first result instead of applying twice. A request may carry
``reason``, ``device_time``, ``device_id`` and ``accuracy_m`` as members of the Feature (or,
for DELETE, as query parameters); they land in the change log. ``PATCH`` takes a partial
Feature or a JSON Merge Patch (RFC 7396), told apart by ``Content-Type``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import EngineDep, UserDep, bearer_digest, get_seen
from api.errors import SIGNED, errors, media, twin_error_response
from api.etags import FEATURE_ETAG
from api.etags import based_on as based_on  # cases and orders import it from here
from api.options import accepts
from api.params import digits, id_number, reject_unknown
from twin.crs import SUPPORTED, find_crs, geometry_to_crs84
from twin.errors import (
    InvalidInput,
    PreconditionRequired,
    Problem,
    TooLarge,
    Unprocessable,
    UnsupportedMediaType,
)
from twin.features.cql import queryables
from twin.features.edits import (
    MAX_KEY,
    MAX_PHOTOS,
    MAX_REASON,
    Edit,
    Op,
    Outcome,
    etag,
    submit,
)
from twin.layer import DERIVED_FIELDS, STAMPED_FIELDS, Layer
from twin.registry import get_layer
from twin.times import instant
from twin.users import User

router = APIRouter(tags=["edits"], responses=errors(*SIGNED, 403, 404))
# how a change names its base (_base_version), as the routes' summaries say it
BASED_ON = "If-Match required, or for TWIN_IMPLICIT_IF_MATCH_ROLES the version the token read"
GEOJSON = "application/geo+json"
MAX_BODY = 1024 * 1024  # one feature: 10,000 vertices fit in well under this
EDIT_MEMBERS = {"reason": "reason", "device_time": "device_time", "device_id": "device",
                "accuracy_m": "accuracy_m"}
MERGE_PATCH = "application/merge-patch+json"
PARTIAL_FEATURE = ("application/geo+json", "application/json")
ACCEPT_PATCH = ", ".join((MERGE_PATCH, *PARTIAL_FEATURE))


def _body_of(*media_types: str) -> dict[str, Any]:
    """A route's JSON body as the document declares it (the route reads it itself): a
    GeoJSON Feature, whole or partial, or a merge patch of one; the edit's context members
    beside its properties."""
    feature = {"type": "object", "properties": {
        "type": {"type": "string", "enum": ["Feature"]},
        "geometry": {"type": "object", "nullable": True},
        "properties": {"type": "object"},
        "reason": {"type": "string"}, "device_time": {"type": "string", "format": "date-time"},
        "device_id": {"type": "string"}, "accuracy_m": {"type": "number"}}}
    return {"requestBody": {"required": True, "content": {
        kind: {"schema": feature} for kind in media_types}}}


# a feature written: its GeoJSON and ETag; what an edit may be refused with besides
WRITTEN = media("application/geo+json")
REFUSED = errors(413, 422)


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused beyond ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared and digits(declared) and int(declared) > limit:
        raise _too_large(int(declared), limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(len(body), limit)
    if b"\\u0000" in body:  # PostgreSQL text cannot hold it
        raise Unprocessable("text may not contain NUL characters", [Problem(
            "body", "\\u0000", "NUL characters are not allowed", "文本不得包含 NUL 字符")])
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}", [Problem(
            "body", None, f"not JSON: {exc}", "请求体不是有效的JSON")]) from None


def _too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(f"the body has {size} bytes; at most {limit} are accepted", [Problem(
        "body", size, f"at most {limit} bytes", f"请求体不得超过 {limit} 字节")])


def _fields(body: Any, need_geometry: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A GeoJSON Feature's fields (properties and geometry) and its edit members."""
    if not isinstance(body, dict) or body.get("type") != "Feature":
        raise Unprocessable("the body must be a GeoJSON Feature", [Problem(
            "type", body.get("type") if isinstance(body, dict) else None,
            'must be "Feature"', "请求体须为 GeoJSON Feature")])
    properties = body.get("properties") or {}
    if not isinstance(properties, dict):
        raise Unprocessable("properties must be an object", [Problem(
            "properties", properties, "an object", "properties 须为对象")])
    # what the database derives or stamps is read back, never written: a client may send it
    fields = {k: v for k, v in properties.items()
              if k not in DERIVED_FIELDS and k not in STAMPED_FIELDS}
    if "geometry" in body or need_geometry:
        fields["geometry"] = body.get("geometry")
    members = {EDIT_MEMBERS[k]: v for k, v in body.items() if k in EDIT_MEMBERS}
    return fields, members


def _merge_fields(body: Any, fid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JSON Merge Patch of a feature (RFC 7396) as the fields it sets (null: removed, so
    an optional attribute takes its default) and its edit members. The patch is merged
    into the current feature where that is read, in the edit's transaction."""
    if not isinstance(body, dict):
        raise Unprocessable("a JSON Merge Patch of a feature is an object", [Problem(
            "body", body, "an object, e.g. {\"properties\": {\"state\": \"full\"}}",
            "合并补丁须为 JSON 对象")])
    problems = []
    if body.get("type", "Feature") != "Feature":
        problems.append(Problem("type", body["type"], 'absent or "Feature"',
                                "type 只能为 Feature"))
    if body.get("id") is not None and str(body["id"]) != fid:
        problems.append(Problem("id", body["id"], f"{fid}, the URL's: an id never changes",
                                "要素编号不可修改"))
    properties = body.get("properties", {})
    if not isinstance(properties, dict):
        problems.append(Problem("properties", properties, "an object of the attributes to "
                                "change; null removes one (not all of them)",
                                "properties 须为对象;删除单个属性请设为 null"))
        properties = {}
    if problems:
        raise Unprocessable("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    fields = {k: v for k, v in properties.items()
              if k not in DERIVED_FIELDS and k not in STAMPED_FIELDS}
    if "geometry" in body:
        fields["geometry"] = body["geometry"]
    members = {EDIT_MEMBERS[k]: v for k, v in body.items() if k in EDIT_MEMBERS}
    return fields, members


def _patch_format(request: Request) -> bool:
    """Whether a PATCH body is a JSON Merge Patch (else a partial Feature), from its
    ``Content-Type``; without one 400 (OGC API - Features Part 4 asks it), another is 415."""
    declared = request.headers.get("content-type")
    media = (declared or "").split(";")[0].strip().lower()
    if media == MERGE_PATCH:
        return True
    if media in PARTIAL_FEATURE:
        return False
    if not media:
        raise InvalidInput(f"say what the body is: Content-Type {ACCEPT_PATCH}", [Problem(
            "Content-Type", declared, f"required: one of {ACCEPT_PATCH}",
            "须提供 Content-Type(合并补丁或 GeoJSON 要素)")])
    raise UnsupportedMediaType(
        f"a PATCH body of type {media} cannot be applied: send a JSON Merge Patch "
        f"({MERGE_PATCH}) or a partial GeoJSON Feature (application/geo+json)", [Problem(
            "Content-Type", declared, f"one of {ACCEPT_PATCH}",
            "不支持的补丁格式:请用 application/merge-patch+json 或 application/geo+json")])


def _edit(layer: str, op: Op, fields: dict[str, Any], members: dict[str, Any],
          request: Request, fid: int | None = None, base: int | None = None,
          merge_patch: bool = False) -> Edit:
    """The domain's edit, its context members checked."""
    problems = [Problem(name, value, "NUL characters are not allowed", "文本不得包含 NUL 字符")
                for name, value in members.items() if isinstance(value, str) and "\x00" in value]
    reason = members.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > MAX_REASON):
        problems.append(Problem("reason", reason, f"text of at most {MAX_REASON} characters",
                                f"原因须为不超过{MAX_REASON}字的文本"))
    when: datetime | None = None
    if members.get("device_time") is not None:
        try:
            when = instant(str(members["device_time"]), "device_time")
        except InvalidInput as exc:
            problems += exc.problems
    accuracy = members.get("accuracy_m")
    if accuracy is not None and (isinstance(accuracy, bool)
                                 or not isinstance(accuracy, int | float)):
        problems.append(Problem("accuracy_m", accuracy, "a number of metres", "精度须为米数"))
    device = members.get("device")
    if device is not None and (not isinstance(device, str) or len(device) > MAX_KEY):
        problems.append(Problem("device_id", device, f"text of at most {MAX_KEY} characters",
                                f"设备编号须为不超过{MAX_KEY}字的文本"))
    if problems:
        raise Unprocessable("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    sent_in = request.headers.get("content-crs")
    if sent_in is not None and "geometry" in fields:
        crs = find_crs(sent_in.strip().strip("<>"))
        if crs is None:
            raise InvalidInput(f"Content-Crs {sent_in!r} is not a CRS Twin speaks", [Problem(
                "Content-Crs", sent_in, f"one of {', '.join(f'<{u}>' for u in SUPPORTED)}",
                "不支持的坐标系")])
        fields = {**fields, "geometry": geometry_to_crs84(fields["geometry"], crs)}
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_KEY:
        raise InvalidInput(f"Idempotency-Key must have 1 to {MAX_KEY} characters", [Problem(
            "Idempotency-Key", key, f"1 to {MAX_KEY} characters", f"幂等键长度须为1至{MAX_KEY}")])
    return Edit(layer, op, fields, fid, base, edit_id=key, device=device,
                device_time=when, reason=reason,
                accuracy_m=float(accuracy) if accuracy is not None else None,
                merge_patch=merge_patch)


def _base_version(request: Request, layer: str, fid: str, user: User) -> tuple[int, int]:
    """The feature id and the version the edit is based on: the one ``If-Match`` names, or,
    when it is left out by a role that may (QGIS sends none), the newest one this token was
    given (api.seen); 428 when that is not known either."""
    number = id_number(fid) or -1
    seen = get_seen(request)
    if "if-match" in request.headers or not seen.kept_for(user.role):
        return number, based_on(request, FEATURE_ETAG, number, "feature", "要素",
                                f'"{fid}-<version>"')
    version = seen.version(bearer_digest(request), layer, number)
    if version is None:
        raise PreconditionRequired(
            f"this token has not read feature {fid} of {layer} (or the server restarted since), "
            f"so which version you change is unknown: read it (GET /collections/{layer}/items/"
            f"{fid}, or a page of items holding it; in QGIS, reload the layer) and send the edit "
            f"again, or send If-Match with the ETag of your read", [Problem(
                "If-Match", None, "required unless this token read the feature first",
                "须提供 If-Match,或先用同一令牌读取该要素")])
    return number, version


def _answer(outcome: Outcome, layer: str, request: Request) -> Response:
    """The HTTP answer of an outcome (a retried request's is its first one's)."""
    if outcome.refusal is not None:
        return twin_error_response(outcome.refusal, request)
    if outcome.feature is None:
        return Response(status_code=204)
    fid, version = outcome.feature["id"], outcome.version or 0
    headers = {"ETag": etag(fid, version)}
    if outcome.created:
        headers["Location"] = f"{str(request.base_url).rstrip('/')}/collections/{layer}/items/{fid}"
    feature = {k: v for k, v in outcome.feature.items() if k != "layer"}
    return JSONResponse(feature, status_code=201 if outcome.created else 200,
                        media_type=GEOJSON, headers=headers)


async def _submit(engine: Any, user: User, edit: Edit, request: Request) -> Response:
    """The edit applied or refused; the version it made counts as given to this token (the
    client holds what it sent), the base of its next edit without If-Match (api.seen)."""
    outcome = await run_in_threadpool(submit, engine, user, edit, False)
    if outcome.refusal is None and outcome.feature is not None and outcome.version:
        get_seen(request).saw(user.role, bearer_digest(request), edit.layer,
                              [(outcome.feature["id"], outcome.version)])
    return _answer(outcome, edit.layer, request)


@router.post("/collections/{layer}/items", summary="Add a feature (OGC API Part 4)",
             status_code=201, response_class=Response,
             responses=media("application/geo+json", status=201,
                             description="Added: its Location and ETag") | REFUSED,
             openapi_extra=_body_of(*PARTIAL_FEATURE))
@accepts(", ".join(PARTIAL_FEATURE))
async def create(request: Request, layer: str, engine: EngineDep, user: UserDep) -> Response:
    reject_unknown(request.query_params, set())
    get_layer(layer)
    fields, members = _fields(await read_json(request, MAX_BODY), need_geometry=True)
    return await _submit(engine, user, _edit(layer, "create", fields, members, request),
                         request)


async def _change(request: Request, layer: str, fid: str, op: Op, engine: Any,
                  user: User, merge_patch: bool = False) -> Response:
    """PUT and PATCH: the same checks; PUT replaces the whole feature, so needs a geometry."""
    reject_unknown(request.query_params, set())
    get_layer(layer)
    number, base = _base_version(request, layer, fid, user)
    body = await read_json(request, MAX_BODY)
    fields, members = (_merge_fields(body, fid) if merge_patch
                       else _fields(body, need_geometry=op == "replace"))
    return await _submit(engine, user, _edit(layer, op, fields, members, request, number,
                                             base, merge_patch), request)


@router.put("/collections/{layer}/items/{fid}", summary=f"Replace a feature ({BASED_ON})",
            response_class=Response, responses=WRITTEN | REFUSED | errors(412, 428),
            openapi_extra=_body_of(*PARTIAL_FEATURE))
async def replace(request: Request, layer: str, fid: str, engine: EngineDep,
                  user: UserDep) -> Response:
    return await _change(request, layer, fid, "replace", engine, user)


@router.patch("/collections/{layer}/items/{fid}",
              summary=f"Change some attributes and/or the geometry ({BASED_ON}): a JSON "
                      "Merge Patch (application/merge-patch+json) or a partial Feature",
              response_class=Response,
              responses=WRITTEN | REFUSED | errors(412, 415, 428),
              openapi_extra=_body_of(MERGE_PATCH, *PARTIAL_FEATURE))
@accepts(ACCEPT_PATCH)
async def update(request: Request, layer: str, fid: str, engine: EngineDep,
                 user: UserDep) -> Response:
    try:
        merge_patch = _patch_format(request)
    except UnsupportedMediaType as exc:  # RFC 5789 §2.2: say which formats would do
        answer = twin_error_response(exc, request)
        answer.headers["Accept-Patch"] = ACCEPT_PATCH
        return answer
    return await _change(request, layer, fid, "update", engine, user, merge_patch)


@router.delete("/collections/{layer}/items/{fid}", summary=f"Delete a feature ({BASED_ON}); "
               "reason, device_time, device_id as query parameters", status_code=204,
               response_class=Response, responses=errors(412, 422, 428))
async def delete(request: Request, layer: str, fid: str, engine: EngineDep,
                 user: UserDep) -> Response:
    reject_unknown(request.query_params, {"reason", "device_time", "device_id"})
    get_layer(layer)
    number, base = _base_version(request, layer, fid, user)
    members = {EDIT_MEMBERS[k]: v for k, v in request.query_params.items()}
    return await _submit(engine, user, _edit(layer, "delete", {}, members, request, number,
                                             base), request)


SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# what the database derives or stamps: returned, never received
READ_ONLY = ("id", *DERIVED_FIELDS, *STAMPED_FIELDS)


@router.get("/collections/{layer}/schema", summary="The layer's features as JSON Schema "
            "(OGC API - Features Part 5): what a read returns and an edit receives",
            response_class=Response, responses=media("application/schema+json"))
def schema(request: Request, layer: str, user: UserDep) -> Response:
    reject_unknown(request.query_params, {"f"})
    found = get_layer(layer)
    doc = feature_schema(found, str(request.base_url).rstrip("/"))
    doc["x-twin"] = {"layer": found.name, "title": found.title,
                     "geometry_type": found.geometry_type, "state_field": found.state_field,
                     "state_labels": found.state_labels, "max_gps_error_m": found.max_gps_error_m,
                     "editable": user.role in found.edit_roles, "edit_roles": found.edit_roles,
                     # the layer's own attributes: what an edit form shows
                     "attributes": list(found.attributes.model_fields)}
    return Response(json.dumps(doc, ensure_ascii=False), media_type="application/schema+json")


def feature_schema(layer: Layer, base: str) -> dict[str, Any]:
    """A feature of ``layer`` as OGC API - Features Part 5 describes it: one logical schema
    of what a read returns and an edit receives (id and what the database derives or stamps
    are read-only), id and geometry marked by their roles, ``updated`` as the instant that
    ``datetime`` selects on, each property numbered (``x-ogc-propertySeq``: QGIS orders its
    fields by it, and otherwise by name) and with a single ``type`` (QGIS reads no other)."""
    common = queryables(layer, base)["properties"]
    model = layer.attributes.model_json_schema()
    properties: dict[str, dict[str, Any]] = {
        "id": {**common["id"], "x-ogc-role": "id"},
        "geometry": {**common["geometry"], "x-ogc-role": "primary-geometry"},
        "name": {**common["name"], "maxLength": 200},
        **{name: _single_type(p, model.get("$defs", {}))
           for name, p in model["properties"].items()},
        "tags": {**common["tags"], "description": "'key=value' facts and bare labels from the "
                                                  "layer's vocabulary"},
        "photos": {"type": "array", "title": "照片 Photos", "maxItems": MAX_PHOTOS,
                   "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                   "description": "SHA-256 digests of photos uploaded to /photos/{sha256}"},
        "micro_grid": {**common["micro_grid"]},
        "residential_area": {**common["residential_area"]},
        "version": {**common["version"]},
        "updated": {**common["updated"], "x-ogc-role": "primary-instant"},
        "changed_by": {"type": "string", "title": "修改人 Changed by",
                       "description": "who wrote the current version"},
    }
    for seq, (name, prop) in enumerate(properties.items(), start=1):
        if name in READ_ONLY:
            prop["readOnly"] = True
        prop["x-ogc-propertySeq"] = seq
    return {"$schema": SCHEMA_DIALECT, "$id": f"{base}/collections/{layer.name}/schema",
            "type": "object", "title": layer.title, "description": layer.description,
            "properties": properties, "required": ["geometry", *model.get("required", [])],
            "additionalProperties": False}


def _single_type(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """An attribute's schema with one ``type``: pydantic's ``anyOf [X, null]`` of an optional
    attribute folded into X (not being required says it may be absent), a ``$ref`` inlined
    (Part 5 recommends no references)."""
    if "$ref" in prop:
        prop = {**defs.get(prop["$ref"].rsplit("/", 1)[-1], {}),
                **{k: v for k, v in prop.items() if k != "$ref"}}
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1 and "anyOf" in prop:
        folded = {k: v for k, v in prop.items() if k != "anyOf"}
        return {**_single_type(branches[0], defs), **folded}
    return dict(prop)
