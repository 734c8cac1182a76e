"""Photos over HTTP against real PostGIS: stored once by hash, checked, capped, cached, kept.

The images are built here byte by byte (Pillow is not a dependency): an 8x8 grey baseline
JPEG and a 1x1 grey PNG, both of which libjpeg and libpng decode.
"""

import hashlib
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from tests.conftest import Database, login
from twin.features.photos import missing_photos, store_photo


def _segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data


def jpeg(note: bytes = b"twin") -> bytes:
    """Baseline, one 8x8 block of mid grey: one-code Huffman tables, DC 0 then end-of-block.
    ``note`` (a comment segment) makes photos that differ."""
    one_code = bytes([1] + [0] * 15) + b"\x00"
    return (b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
            + _segment(0xFE, note) + _segment(0xDB, b"\x00" + b"\x01" * 64)
            + _segment(0xC0, b"\x08\x00\x08\x00\x08\x01\x01\x11\x00")
            + _segment(0xC4, b"\x00" + one_code) + _segment(0xC4, b"\x10" + one_code)
            + _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f" + b"\xff\xd9")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data)))


def png(shade: int = 128) -> bytes:
    """One grey pixel."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(bytes([0, shade]))) + _chunk(b"IEND", b""))


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def put(client: TestClient, headers: dict[str, str], content: bytes, media_type: str,
        digest: str | None = None) -> dict[str, object]:
    response = client.put(f"/photos/{digest or sha(content)}", content=content,
                          headers={**headers, "Content-Type": media_type})
    return {"status": response.status_code, "body": response.json(),
            "location": response.headers.get("location")}


def _worker(db: Database) -> str:
    with db.app.connect() as conn:
        return str(conn.execute(text(
            "SELECT name FROM twin.users WHERE role = 'worker' ORDER BY name LIMIT 1")).scalar())


def _rows(db: Database) -> list[tuple[object, ...]]:
    with db.admin.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT sha256, media_type, bytes, uploaded_by FROM twin.photos ORDER BY 1")).all()]


@pytest.mark.parametrize(("content", "media_type"), [(jpeg(), "image/jpeg"),
                                                     (png(), "image/png")])
def test_a_photo_is_stored_once_and_served_back(client: TestClient, sample_db: Database,
                                                content: bytes, media_type: str) -> None:
    worker = _worker(sample_db)
    digest, href = sha(content), f"/photos/{sha(content)}"
    body = {"sha256": digest, "bytes": len(content), "media_type": media_type, "href": href}
    headers = login(client, worker)
    assert put(client, headers, content, media_type) == {"status": 201, "body": body,
                                                          "location": href}
    # the answer was lost on the way back: the tablet sends it again, harmlessly
    assert put(client, headers, content, f"{media_type}; q=1") == {
        "status": 200, "body": body, "location": None}
    assert _rows(sample_db) == [(digest, media_type, len(content), worker)]

    reader = login(client, "planner")  # any role reads
    got = client.get(href, headers=reader)
    assert got.status_code == 200 and got.content == content
    assert got.headers["content-type"] == media_type
    assert got.headers["etag"] == f'"{digest}"'
    assert got.headers["cache-control"] == "private, max-age=31536000, immutable"
    again = client.get(href, headers={**reader, "If-None-Match": f'"other", "{digest}"'})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == f'"{digest}"'


def test_head_tells_a_tablet_whether_to_upload(client: TestClient) -> None:
    headers = login(client, "commander")
    content = png(shade=7)
    href = f"/photos/{sha(content)}"
    before = client.head(href, headers=headers)
    assert before.status_code == 404
    assert put(client, headers, content, "image/png")["status"] == 201
    after = client.head(href, headers=headers)
    assert after.status_code == 200 and after.content == b""
    assert after.headers["content-length"] == str(len(content))
    assert after.headers["content-type"] == "image/png"
    assert after.headers["etag"] == f'"{sha(content)}"'


def test_a_photo_never_stored_is_404_even_to_a_guessed_etag(client: TestClient) -> None:
    headers = login(client, "planner")
    digest = sha(b"never sent")
    assert client.get(f"/photos/{digest}", headers=headers).status_code == 404
    guessed = client.get(f"/photos/{digest}", headers={**headers, "If-None-Match": "*"})
    assert guessed.status_code == 404


@pytest.mark.parametrize(("content", "media_type", "status", "field"), [
    (jpeg(), "image/jpeg", 422, "sha256"),  # sent under another photo's hash
    (b"GIF89a not a photo we keep", "image/gif", 415, "media_type"),
    (b"plain text, not an image", "image/jpeg", 415, "content"),
    (jpeg(), "image/png", 415, "content"),
    (png(), "image/jpeg", 415, "content"),
    (png(), "", 415, "media_type"),
])
def test_what_is_not_the_named_declared_image_is_refused(
        client: TestClient, sample_db: Database, content: bytes, media_type: str, status: int,
        field: str) -> None:
    digest = sha(png(shade=1)) if status == 422 else sha(content)
    answer = client.put(f"/photos/{digest}", content=content,
                        headers={**login(client, "planner"), "Content-Type": media_type})
    assert answer.status_code == status, answer.text
    problem = answer.json()["problems"][0]
    assert problem["field"] == field and problem["reason"] and problem["reason_zh"]
    assert _rows(sample_db) == []


@pytest.mark.parametrize("digest", [
    "ABC", sha(b"x").upper(), sha(b"x")[:-1], sha(b"x") + "0", "g" * 64])
def test_a_malformed_digest_is_400_naming_the_parameter(client: TestClient,
                                                        digest: str) -> None:
    headers = login(client, "planner")
    for method in ("GET", "PUT"):
        answer = client.request(method, f"/photos/{digest}", content=png(),
                                headers={**headers, "Content-Type": "image/png"})
        assert answer.status_code == 400, (method, answer.text)
        assert answer.json()["code"] == "InvalidParameterValue"
        assert answer.json()["problems"][0]["field"] == "sha256"
    assert client.head(f"/photos/{digest}", headers=headers).status_code == 400


def test_a_photo_over_the_cap_is_413_whether_its_length_is_declared_or_not(
        sample_db: Database) -> None:
    small = png()
    settings = sample_db.settings().model_copy(update={"photo_max_bytes": len(small)})
    big = jpeg(b"x" * len(small))
    with TestClient(create_app(settings)) as client:
        headers = {**login(client, "planner"), "Content-Type": "image/jpeg"}
        declared = client.put(f"/photos/{sha(big)}", content=big, headers=headers)
        assert declared.status_code == 413, declared.text
        assert declared.json()["problems"][0]["value"] == len(big)
        # refused on its Content-Length alone, before a byte of the body is read
        announced = client.put(f"/photos/{sha(small)}", content=small,
                               headers={**headers, "Content-Length": str(10**9)})
        assert announced.status_code == 413
        assert announced.json()["problems"][0]["value"] == 10**9
        # chunked: no Content-Length, so the server counts while reading
        chunked = client.put(f"/photos/{sha(big)}", headers=headers,
                             content=(big[k:k + 16] for k in range(0, len(big), 16)))
        assert chunked.status_code == 413, chunked.text
        assert "transfer-encoding" in chunked.request.headers
        assert put(client, headers, small, "image/png")["status"] == 201  # at the cap is fine
    assert [row[0] for row in _rows(sample_db)] == [sha(small)]


def test_every_photo_request_needs_a_live_token(client: TestClient) -> None:
    content = png()
    href = f"/photos/{sha(content)}"
    headers = login(client, "planner")
    assert put(client, headers, content, "image/png")["status"] == 201
    for method in ("PUT", "HEAD", "GET"):
        answer = client.request(method, href, content=content,
                                headers={"Content-Type": "image/png"})
        assert answer.status_code == 401, method
        assert answer.headers["www-authenticate"] == "Bearer"
    assert client.post("/auth/logout", headers=headers).status_code == 204
    assert client.get(href, headers=headers).status_code == 401


def test_the_same_photo_sent_at_once_by_many_is_one_row(sample_db: Database) -> None:
    content = jpeg(b"at once")

    def send(k: int) -> bool:
        return store_photo(sample_db.app, f"worker-{k}", sha(content), content, "image/jpeg",
                           max_bytes=1024)

    with ThreadPoolExecutor(max_workers=8) as pool:
        new = list(pool.map(send, range(16)))
    assert new.count(True) == 1
    assert [row[:3] for row in _rows(sample_db)] == [(sha(content), "image/jpeg", len(content))]


def test_an_edit_finds_which_photos_it_names_are_missing(sample_db: Database) -> None:
    here, gone = png(shade=3), png(shade=4)
    assert store_photo(sample_db.app, "planner", sha(here), here, "image/png", max_bytes=1024)
    with sample_db.app.connect() as conn:
        assert missing_photos(conn, [sha(gone), sha(here), sha(gone)]) == [sha(gone)]
        assert missing_photos(conn, [sha(here)]) == []
        assert missing_photos(conn, []) == []


@pytest.mark.parametrize("statement", [
    "UPDATE twin.photos SET uploaded_by = 'someone else'",
    "UPDATE twin.photos SET content = '\\x00', bytes = 1",
    "DELETE FROM twin.photos",
    "TRUNCATE twin.photos",
])
@pytest.mark.parametrize("role", ["app", "admin"])
def test_a_photo_is_evidence_and_cannot_be_changed_or_removed(
        sample_db: Database, statement: str, role: str) -> None:
    content = jpeg()
    assert store_photo(sample_db.app, "planner", sha(content), content, "image/jpeg",
                       max_bytes=1024)
    engine = sample_db.app if role == "app" else sample_db.admin
    refused = "permission denied" if role == "app" and sample_db.app_url != sample_db.admin_url \
        else "refused"
    with pytest.raises(DBAPIError, match=refused), engine.begin() as conn:
        conn.execute(text(statement))
    with sample_db.admin.connect() as conn:
        assert conn.execute(text("SELECT content FROM twin.photos")).scalar() == content
