"""Photos by content hash: PUT them from a tablet, HEAD to skip a re-upload, GET them back."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, SettingsDep, UserDep
from api.errors import NOT_MODIFIED, SIGNED, errors
from api.params import digits
from twin.features.photos import (
    MAGIC,
    check_digest,
    check_media_type,
    check_size,
    photo_info,
    read_photo,
    store_photo,
)

router = APIRouter(tags=["photos"], responses=errors(*SIGNED))

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_IMAGE = {"content": {media_type: _BINARY for media_type in MAGIC}}


def _headers(digest: str) -> dict[str, str]:
    """A photo's bytes never change under its hash: a client may keep it for good."""
    return {"ETag": f'"{digest}"', "Cache-Control": "private, max-age=31536000, immutable"}


async def _read_capped(request: Request, max_bytes: int) -> bytes:
    """The body, refused as soon as it is known to be too large: by its Content-Length before
    reading anything, else by counting, so a huge upload is never held in memory."""
    length = request.headers.get("content-length", "")
    if digits(length):
        check_size(int(length), max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        check_size(len(body), max_bytes)
    return bytes(body)


@router.put("/photos/{sha256}", status_code=201, summary="Upload a photo under its SHA-256",
            response_description="Stored now (Location names it)",
            responses=errors(413, 415, 422) | {
                200: {"description": "Already stored: the re-send changed nothing"}},
            openapi_extra={"requestBody": {"required": True, **_IMAGE}})
async def upload(request: Request, sha256: str, user: UserDep, engine: EngineDep,
                 settings: SettingsDep) -> JSONResponse:
    """201 the first time, 200 for the same bytes again: a tablet that lost the answer simply
    sends the photo again."""
    digest = check_digest(sha256)
    declared = check_media_type(
        request.headers.get("content-type", "").partition(";")[0].strip().lower())
    content = await _read_capped(request, settings.photo_max_bytes)
    new = await run_in_threadpool(store_photo, engine, user.name, digest, content, declared,
                                  max_bytes=settings.photo_max_bytes)
    href = f"/photos/{digest}"
    body: dict[str, Any] = {"sha256": digest, "bytes": len(content), "media_type": declared,
                            "href": href}
    if new:
        return JSONResponse(body, status_code=201, headers={"Location": href})
    return JSONResponse(body)


@router.head("/photos/{sha256}", summary="Whether a photo is stored (200) or not (404)",
             response_class=Response, responses=errors(404))
def photo_stored(sha256: str, user: UserDep, engine: EngineDep) -> Response:
    """Lets a tablet skip uploading what the server already has."""
    info = photo_info(engine, check_digest(sha256))
    return Response(media_type=info.media_type,
                    headers={**_headers(info.sha256), "Content-Length": str(info.bytes)})


@router.get("/photos/{sha256}", summary="A photo's bytes", response_class=Response,
            responses={200: _IMAGE} | NOT_MODIFIED | errors(404))
def photo(request: Request, sha256: str, user: UserDep, engine: EngineDep) -> Response:
    """Served with a strong ETag (the hash itself), so a client never fetches it twice."""
    digest = check_digest(sha256)
    asked = [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]
    if f'"{digest}"' in asked or "*" in asked:
        photo_info(engine, digest)  # a guessed ETag of a photo never stored is still a 404
        return Response(status_code=304, headers=_headers(digest))
    stored = read_photo(engine, digest)
    return Response(stored.content, media_type=stored.media_type, headers=_headers(digest))
