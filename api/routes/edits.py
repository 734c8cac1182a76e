"""Edits through OGC API - Features Part 4: create, replace, update and delete features.

Every change of an existing feature names the version it was based on in ``If-Match`` (the
ETag a read gave): missing is 428, stale is 412 with the current version. ``Idempotency-Key``
makes a retried request answer the first result instead of applying twice. A request may
carry ``reason``, ``device_time``, ``device_id`` and ``accuracy_m`` as members of the
Feature (or, for DELETE, as query parameters); they land in the change log.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.deps import EngineDep, UserDep
from api.errors import twin_error_response
from api.params import id_number, reject_unknown
from twin.errors import (
    InvalidInput,
    PreconditionFailed,
    PreconditionRequired,
    Problem,
    TooLarge,
    Unprocessable,
)
from twin.features.edits import MAX_KEY, MAX_REASON, Edit, Op, Outcome, etag, submit
from twin.layer import DERIVED_FIELDS, STAMPED_FIELDS
from twin.registry import get_layer
from twin.times import instant

router = APIRouter(tags=["edits"])
GEOJSON = "application/geo+json"
MAX_BODY = 1024 * 1024  # one feature: 10,000 vertices fit in well under this
EDIT_MEMBERS = {"reason": "reason", "device_time": "device_time", "device_id": "device",
                "accuracy_m": "accuracy_m"}
_ETAG = re.compile(r'"(\d+)-(\d+)"')


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, refused beyond ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
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


def _edit(layer: str, op: Op, fields: dict[str, Any], members: dict[str, Any],
          request: Request, fid: int | None = None, base: int | None = None) -> Edit:
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
    key = request.headers.get("idempotency-key")
    if key is not None and not 0 < len(key) <= MAX_KEY:
        raise InvalidInput(f"Idempotency-Key must have 1 to {MAX_KEY} characters", [Problem(
            "Idempotency-Key", key, f"1 to {MAX_KEY} characters", f"幂等键长度须为1至{MAX_KEY}")])
    return Edit(layer, op, fields, fid, base, edit_id=key, device=device,
                device_time=when, reason=reason,
                accuracy_m=float(accuracy) if accuracy is not None else None)


def based_on(request: Request, etag: re.Pattern[str], number: int, what: str, what_zh: str,
             shape: str) -> int:
    """The version ``If-Match`` names of the thing ``what`` numbered ``number`` (its ETag
    ``etag``, e.g. ``"<id>-<version>"``, printed as ``shape``): 428 without one, 412 when it
    names another thing."""
    asked = request.headers.get("if-match")
    if asked is None or asked.strip() == "*":
        raise PreconditionRequired(
            f"say which version of the {what} you change: If-Match with the ETag of your read",
            [Problem("If-Match", asked, "required: the ETag of the version you read",
                     "须提供 If-Match(所读版本的 ETag)")])
    found = etag.fullmatch(asked.strip().split(",")[0].strip())
    if found is None or int(found.group(1)) != number:
        raise PreconditionFailed(f"If-Match {asked} does not name a version of {what} "
                                 f"{number}", [Problem("If-Match", asked, f"expected {shape}",
                                                       f"If-Match 与该{what_zh}不符")])
    return int(found.group(2))


def _base_version(request: Request, fid: str) -> tuple[int, int]:
    """The feature id and the version ``If-Match`` names."""
    number = id_number(fid) or -1
    return number, based_on(request, _ETAG, number, "feature", "要素",
                            f'"{fid}-<version>"')


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


async def _submit(engine: Any, user: Any, edit: Edit, request: Request) -> Response:
    outcome = await run_in_threadpool(submit, engine, user, edit, False)
    return _answer(outcome, edit.layer, request)


@router.post("/collections/{layer}/items", summary="Add a feature (OGC API Part 4)",
             status_code=201)
async def create(request: Request, layer: str, engine: EngineDep, user: UserDep) -> Response:
    reject_unknown(request.query_params, set())
    get_layer(layer)
    fields, members = _fields(await read_json(request, MAX_BODY), need_geometry=True)
    return await _submit(engine, user, _edit(layer, "create", fields, members, request),
                         request)


async def _change(request: Request, layer: str, fid: str, op: Op, engine: Any,
                  user: Any) -> Response:
    """PUT and PATCH: the same checks; PUT replaces the whole feature, so needs a geometry."""
    reject_unknown(request.query_params, set())
    get_layer(layer)
    number, base = _base_version(request, fid)
    fields, members = _fields(await read_json(request, MAX_BODY),
                              need_geometry=op == "replace")
    return await _submit(engine, user, _edit(layer, op, fields, members, request, number,
                                             base), request)


@router.put("/collections/{layer}/items/{fid}", summary="Replace a feature (If-Match required)")
async def replace(request: Request, layer: str, fid: str, engine: EngineDep,
                  user: UserDep) -> Response:
    return await _change(request, layer, fid, "replace", engine, user)


@router.patch("/collections/{layer}/items/{fid}",
              summary="Change some attributes and/or the geometry (If-Match required)")
async def update(request: Request, layer: str, fid: str, engine: EngineDep,
                 user: UserDep) -> Response:
    return await _change(request, layer, fid, "update", engine, user)


@router.delete("/collections/{layer}/items/{fid}", summary="Delete a feature (If-Match "
               "required); reason, device_time, device_id as query parameters", status_code=204)
async def delete(request: Request, layer: str, fid: str, engine: EngineDep,
                 user: UserDep) -> Response:
    reject_unknown(request.query_params, {"reason", "device_time", "device_id"})
    get_layer(layer)
    number, base = _base_version(request, fid)
    members = {EDIT_MEMBERS[k]: v for k, v in request.query_params.items()}
    return await _submit(engine, user, _edit(layer, "delete", {}, members, request, number,
                                             base), request)


@router.get("/collections/{layer}/schema", summary="The layer's attributes as JSON Schema, "
            "for edit forms")
def schema(request: Request, layer: str, user: UserDep) -> dict[str, Any]:
    reject_unknown(request.query_params, {"f"})
    found = get_layer(layer)
    doc = found.attributes.model_json_schema()
    doc["x-twin"] = {"layer": found.name, "title": found.title,
                     "geometry_type": found.geometry_type, "state_field": found.state_field,
                     "state_labels": found.state_labels, "max_gps_error_m": found.max_gps_error_m,
                     "editable": user.role in found.edit_roles, "edit_roles": found.edit_roles}
    return doc
