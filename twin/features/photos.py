"""Photos of field edits, stored once under the SHA-256 of their bytes and never changed.

Tablets upload over links that drop: naming a photo by its hash makes a re-send harmless (the
same bytes land on the same row), lets an edit refer to photos sent before or after it, and
lets the server check that what arrived is what the tablet took.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

from twin.errors import (
    InvalidInput,
    NotFound,
    Problem,
    TooLarge,
    Unprocessable,
    UnsupportedMediaType,
)

MAGIC = {"image/jpeg": b"\xff\xd8\xff", "image/png": b"\x89PNG\r\n\x1a\n"}
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class PhotoInfo:
    """What is known of a stored photo without reading its bytes."""

    sha256: str
    media_type: str
    bytes: int


@dataclass(frozen=True)
class Photo(PhotoInfo):
    content: bytes


def check_digest(digest: str) -> str:
    """A photo is named by its SHA-256 in lowercase hex; anything else names no photo."""
    if not _DIGEST.fullmatch(digest):
        raise InvalidInput(f"sha256={digest}: not a SHA-256 digest", [Problem(
            "sha256", digest, "64 lowercase hexadecimal digits: the SHA-256 of the photo",
            "应为64位小写十六进制数字, 即照片的 SHA-256")])
    return digest


def check_size(size: int, max_bytes: int) -> None:
    """Refuse a photo over the cap; the API asks before reading a body and while reading it."""
    if size > max_bytes:
        raise TooLarge(f"a photo may have at most {max_bytes} bytes", [Problem(
            "content", size, f"at most {max_bytes} bytes", f"照片不得超过 {max_bytes} 字节")])


def check_media_type(declared: str) -> str:
    """Only JPEG and PNG: what tablets take, and what every browser shows."""
    if declared not in MAGIC:
        raise UnsupportedMediaType(f"{declared or 'no media type'}: a photo is image/jpeg or "
                                   "image/png", [Problem(
                                       "media_type", declared, "image/jpeg or image/png",
                                       "照片须为 image/jpeg 或 image/png")])
    return declared


def _check_content(content: bytes, declared: str) -> None:
    """The bytes must be the image they are declared to be: its magic number, not a name."""
    found = next((kind for kind, magic in MAGIC.items() if content.startswith(magic)), None)
    if found == declared:
        return
    if found is None:
        reason, reason_zh = "not a JPEG or PNG image", "不是 JPEG 或 PNG 图片"
    else:
        reason = f"the content is {found}, not {declared} as declared"
        reason_zh = f"内容为 {found}, 与声明的 {declared} 不符"
    raise UnsupportedMediaType(reason, [Problem("content", content[:8].hex(), reason,
                                                reason_zh)])


def store_photo(engine: Engine, user_name: str, digest: str, content: bytes,
                declared_type: str, *, max_bytes: int) -> bool:
    """Store a photo checked to be the named, declared, small-enough image; True when new.

    ON CONFLICT DO NOTHING makes the same photo sent twice, or by two tablets at once, one
    row: the second insert waits for the first and then does nothing.
    """
    check_digest(digest)
    check_size(len(content), max_bytes)
    _check_content(content, check_media_type(declared_type))
    actual = hashlib.sha256(content).hexdigest()
    if actual != digest:
        raise Unprocessable("the photo's SHA-256 is not the one it was sent under", [Problem(
            "sha256", digest, f"the content's SHA-256 is {actual}: sent incomplete or changed",
            f"内容的 SHA-256 为 {actual}: 上传不完整或内容被改动")])
    with engine.begin() as conn:
        stored = conn.execute(text(
            "INSERT INTO twin.photos (sha256, media_type, bytes, content, uploaded_by) "
            "VALUES (:sha256, :media_type, :bytes, :content, :user) "
            "ON CONFLICT (sha256) DO NOTHING RETURNING sha256"),
            {"sha256": digest, "media_type": declared_type, "bytes": len(content),
             "content": content, "user": user_name}).first()
    return stored is not None


def missing_photos(conn: Connection, digests: Sequence[str]) -> list[str]:
    """Which of ``digests`` are not stored, each once, in the order given: an edit may only
    refer to photos that arrived (in the edit's own transaction, hence ``conn``)."""
    wanted = list(dict.fromkeys(digests))
    stored = set(conn.execute(text(
        "SELECT sha256 FROM twin.photos WHERE sha256 = ANY(CAST(:digests AS text[]))"),
        {"digests": wanted}).scalars())
    return [digest for digest in wanted if digest not in stored]


def _not_found(digest: str) -> NotFound:
    return NotFound(f"no photo {digest}", [Problem("sha256", digest, "no photo with this hash",
                                                   "没有此哈希的照片")])


def photo_info(engine: Engine, digest: str) -> PhotoInfo:
    """Type and size of a stored photo, without its bytes (HEAD, and 304s)."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT sha256, media_type, bytes FROM twin.photos "
                                "WHERE sha256 = :sha256"), {"sha256": digest}).first()
    if row is None:
        raise _not_found(digest)
    return PhotoInfo(*row)


def read_photo(engine: Engine, digest: str) -> Photo:
    """A stored photo with its bytes."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT sha256, media_type, bytes, content FROM twin.photos "
                                "WHERE sha256 = :sha256"), {"sha256": digest}).first()
    if row is None:
        raise _not_found(digest)
    return Photo(row[0], row[1], row[2], bytes(row[3]))
