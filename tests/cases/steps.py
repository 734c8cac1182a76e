"""Moving cases in tests as plain SQL would, dated by the owner's clock (twin.clock): the
same triggers as the API, at the moments a test needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.conftest import Database

# a 1x1 PNG, stored as a photo so that verifications can name it
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def photo(db: Database) -> str:
    """The digest of a stored photo."""
    with db.admin.begin() as conn:
        return str(conn.execute(text(
            "INSERT INTO twin.photos (sha256, media_type, bytes, content, uploaded_by) "
            "VALUES (encode(sha256(:c), 'hex'), 'image/png', length(:c), :c, 'pytest') "
            "ON CONFLICT (sha256) DO UPDATE SET sha256 = EXCLUDED.sha256 RETURNING sha256"),
            {"c": PNG}).scalar_one())


def act(db: Database, at: str | None, actor: str, role: str, sql: str,
        context: dict[str, str] | None = None, **params: Any) -> Any:
    """Run ``sql`` as ``actor`` in ``role`` at moment ``at`` (None: now), with the case
    context (reason, case_photos, case_position, case_approver); its first value."""
    with db.admin.begin() as conn:
        conn.execute(text("SELECT twin.set_context(:a, :r)"), {"a": actor, "r": role})
        if at is not None:
            conn.execute(text("SELECT set_config('twin.clock', :t, true)"), {"t": at})
        for key, value in (context or {}).items():
            conn.execute(text("SELECT set_config('twin.' || :k, :v, true)"),
                         {"k": key, "v": value})
        result = conn.execute(text(sql), params)
        return result.scalar() if result.returns_rows else None


def a_place(db: Database, grid: str | None = None) -> tuple[float, float, str]:
    """A point inside a micro-grid (the first one, or ``grid``) and that grid's code."""
    row = db.one("SELECT ST_X(p), ST_Y(p), props ->> 'code' FROM twin.features, "
                 "ST_PointOnSurface(geom) AS p WHERE layer = 'micro_grids' "
                 "AND (CAST(:g AS text) IS NULL OR props ->> 'code' = :g) "
                 "ORDER BY props ->> 'code' LIMIT 1", g=grid)
    return float(row[0]), float(row[1]), str(row[2])


def report(db: Database, at: str | None, lon: float, lat: float, category: str = "E0102",
           actor: str = "dispatcher", role: str = "dispatcher", source: str = "patrol") -> int:
    return int(act(db, at, actor, role,
                   "INSERT INTO twin.cases (geom, category, source) VALUES "
                   "(ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :cat, :src) RETURNING id",
                   lon=lon, lat=lat, cat=category, src=source))


def move(db: Database, at: str | None, case_id: int, to: str, actor: str = "dispatcher",
         role: str = "dispatcher", context: dict[str, str] | None = None, **sets: Any) -> None:
    extra = "".join(f", {k} = :{k}" for k in sets)
    act(db, at, actor, role, f"UPDATE twin.cases SET state = :to{extra} WHERE id = :id",
        context, to=to, id=case_id, **sets)


def verify(db: Database, at: str | None, case_id: int, to: str, digest: str,
           lon: float, lat: float, actor: str = "dispatcher", reason: str = "checked") -> None:
    move(db, at, case_id, to, actor, "dispatcher", {
        "case_photos": "{" + digest + "}", "case_position": f"SRID=4326;POINT({lon} {lat})",
        "reason": reason})


def through(db: Database, lon: float, lat: float, times: list[str], digest: str,
            category: str = "E0102") -> int:
    """A case reported, filed, dispatched, handled and closed at the five ``times``."""
    case_id = report(db, times[0], lon, lat, category)
    move(db, times[1], case_id, "filed")
    move(db, times[2], case_id, "dispatched", assignee="squad-lead-1")
    move(db, times[3], case_id, "handled", "squad-lead-1", "worker")
    verify(db, times[4], case_id, "closed", digest, lon, lat)
    return case_id
