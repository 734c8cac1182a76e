"""The lifecycle as the database keeps it, whatever the path: plain SQL here."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.cases.steps import a_place, act, move, photo, report, verify
from tests.conftest import Database


def _refused(exc: pytest.ExceptionInfo[DBAPIError]) -> tuple[str, str]:
    orig: Any = exc.value.orig
    return orig.sqlstate, str(orig.diag.message_primary)


def test_an_illegal_transition_is_refused_in_plain_sql(sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    case_id = report(sample_db, None, lon, lat)
    with pytest.raises(DBAPIError) as exc:
        move(sample_db, None, case_id, "closed")
    state, message = _refused(exc)
    assert state == "TW409" and "reported case cannot go to closed" in message
    # nor without any context at all, as the owner in psql would
    with pytest.raises(DBAPIError) as exc, sample_db.admin.begin() as conn:
        conn.execute(text("UPDATE twin.cases SET state = 'handled' WHERE id = :id"),
                     {"id": case_id})
    assert _refused(exc)[0] == "TW409"
    assert sample_db.scalar("SELECT state FROM twin.cases WHERE id = :id", id=case_id) \
        == "reported"
    assert sample_db.scalar("SELECT count(*) FROM twin.case_events WHERE case_id = :id",
                            id=case_id) == 1


def test_a_move_beyond_its_role_or_without_what_it_needs_is_refused(
        sample_db: Database) -> None:
    lon, lat, grid = a_place(sample_db)
    case_id = report(sample_db, None, lon, lat)
    with pytest.raises(DBAPIError) as exc:
        move(sample_db, None, case_id, "filed", f"worker-{grid}", "worker")
    assert _refused(exc)[0] == "TW403"
    with pytest.raises(DBAPIError) as exc:
        move(sample_db, None, case_id, "not_filed")
    assert _refused(exc) == ("TW422", "not filed needs a reason")
    move(sample_db, None, case_id, "filed")
    with pytest.raises(DBAPIError) as exc:
        move(sample_db, None, case_id, "parked", context={"reason": "needs a budget"})
    assert _refused(exc) == ("TW422", "park needs the name of who approved it")


def test_events_are_kept_as_written_and_cases_never_deleted(sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    case_id = report(sample_db, None, lon, lat)
    for sql in ("UPDATE twin.case_events SET reason = 'x' WHERE case_id = :id",
                "DELETE FROM twin.case_events WHERE case_id = :id",
                "DELETE FROM twin.cases WHERE id = :id"):
        with pytest.raises(DBAPIError, match="refused"), sample_db.admin.begin() as conn:
            conn.execute(text(sql), {"id": case_id})


def test_verification_by_the_handler_or_from_afar_or_without_a_photo_is_refused(
        sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    digest = photo(sample_db)
    case_id = report(sample_db, None, lon, lat)
    move(sample_db, None, case_id, "filed")
    move(sample_db, None, case_id, "dispatched", assignee="dispatcher")
    move(sample_db, None, case_id, "handled")  # the dispatcher handled it himself
    with pytest.raises(DBAPIError) as exc:
        verify(sample_db, None, case_id, "closed", digest, lon, lat)
    assert _refused(exc) == ("TW422",
                             "verification is done by someone other than the handler")
    with pytest.raises(DBAPIError) as exc:  # 0.001 degrees north: about 111 m
        verify(sample_db, None, case_id, "closed", digest, lon, lat + 0.001, "squad-lead-1")
    state, message = _refused(exc)
    assert state == "TW422" and "within 50 m of the case" in message
    with pytest.raises(DBAPIError) as exc:
        move(sample_db, None, case_id, "closed", "squad-lead-1", "worker",
             {"case_position": f"SRID=4326;POINT({lon} {lat})"})
    assert _refused(exc) == ("TW422", "verification needs a photo")
    verify(sample_db, None, case_id, "closed", digest, lon, lat + 0.0002, "squad-lead-1")
    assert sample_db.scalar("SELECT state FROM twin.cases WHERE id = :id", id=case_id) \
        == "closed"


def test_rework_is_counted_once_per_failed_check(sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    digest = photo(sample_db)
    case_id = report(sample_db, None, lon, lat)
    move(sample_db, None, case_id, "filed")
    move(sample_db, None, case_id, "dispatched", assignee="squad-lead-1")
    for _ in range(2):
        move(sample_db, None, case_id, "handled", "squad-lead-1", "worker")
        verify(sample_db, None, case_id, "dispatched", digest, lon, lat, reason="still dirty")
    move(sample_db, None, case_id, "handled", "squad-lead-1", "worker")
    verify(sample_db, None, case_id, "closed", digest, lon, lat)
    assert sample_db.scalar("SELECT rework FROM twin.cases WHERE id = :id", id=case_id) == 2
    assert sample_db.scalar(
        "SELECT count(*) FROM twin.case_events WHERE case_id = :id AND from_state = 'handled'"
        " AND to_state = 'dispatched'", id=case_id) == 2


def test_filing_proposes_the_grid_worker_and_a_changed_grid_reroutes_open_cases(
        sample_db: Database) -> None:
    lon, lat, grid = a_place(sample_db)
    case_id = report(sample_db, None, lon, lat)  # 暴露垃圾: a grid worker's to fix
    move(sample_db, None, case_id, "filed")
    assert sample_db.one("SELECT assignee, department FROM twin.cases WHERE id = :id",
                         id=case_id) == (f"worker-{grid}", "sanitation")
    move(sample_db, None, case_id, "dispatched")
    # the grid's boundary moves away from the case: a neighbour's grid now holds it
    neighbour = sample_db.scalar(
        "SELECT g.props ->> 'code' FROM twin.features g, twin.features mine "
        "WHERE g.layer = 'micro_grids' AND mine.layer = 'micro_grids' "
        "AND mine.props ->> 'code' = :grid AND g.id <> mine.id "
        "AND ST_Touches(g.geom, mine.geom) ORDER BY g.props ->> 'code' LIMIT 1", grid=grid)
    act(sample_db, None, "admin", "admin",
        "UPDATE twin.features SET geom = ST_Multi(ST_Union(geom, ST_Buffer("
        "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 0.0003))) "
        "WHERE layer = 'micro_grids' AND props ->> 'code' = :code RETURNING id",
        lon=lon, lat=lat, code=neighbour)
    act(sample_db, None, "admin", "admin",
        "UPDATE twin.features SET geom = ST_Multi(ST_Difference(geom, ST_Buffer("
        "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 0.0003))) "
        "WHERE layer = 'micro_grids' AND props ->> 'code' = :code RETURNING id",
        lon=lon, lat=lat, code=grid)
    row = sample_db.one("SELECT grid_code, assignee, state FROM twin.cases WHERE id = :id",
                        id=case_id)
    assert tuple(row) == (neighbour, f"worker-{neighbour}", "dispatched")
    event = sample_db.one("SELECT action, changed -> 'assignee' FROM twin.case_events "
                          "WHERE case_id = :id ORDER BY version DESC LIMIT 1", id=case_id)
    assert event[0] == "reroute" and event[1] == [f"worker-{grid}", f"worker-{neighbour}"]


def test_an_approved_extension_moves_the_deadlines(sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    case_id = report(sample_db, "2026-03-02T09:00:00+08:00", lon, lat, "E0101")  # 违法搭建
    move(sample_db, "2026-03-02T09:10:00+08:00", case_id, "filed")
    move(sample_db, "2026-03-02T09:20:00+08:00", case_id, "dispatched")
    before = sample_db.one("SELECT stage_due, case_due FROM twin.cases WHERE id = :id",
                           id=case_id)
    act(sample_db, "2026-03-20T10:00:00+08:00", "squad-lead-1", "worker",
        "UPDATE twin.cases SET extension = '5d' WHERE id = :id RETURNING id",
        {"reason": "the owner appealed"}, id=case_id)
    act(sample_db, "2026-03-20T11:00:00+08:00", "dispatcher", "dispatcher",
        "UPDATE twin.cases SET extended = extended || extension, extension = NULL "
        "WHERE id = :id RETURNING id", {"reason": "approved"}, id=case_id)
    after = sample_db.one("SELECT stage_due, case_due, extended FROM twin.cases "
                          "WHERE id = :id", id=case_id)
    assert after[2] == ["5d"]
    assert after[0] > before[0] and after[1] > before[1]
    expected = sample_db.scalar("SELECT twin.add_work(CAST(:t AS timestamptz), '5d')",
                                t=before[0])
    assert after[0] == expected
    actions = [r[0] for r in sample_db.rows(
        "SELECT action FROM twin.case_events WHERE case_id = :id ORDER BY version", id=case_id)]
    assert actions[-2:] == ["extension_request", "extension_approval"]


def test_a_new_case_near_an_open_one_of_its_category_is_flagged_and_can_be_voided(
        sample_db: Database) -> None:
    lon, lat, _ = a_place(sample_db)
    first = report(sample_db, None, lon, lat)
    near = report(sample_db, None, lon + 0.0003, lat)  # about 29 m east
    other_kind = report(sample_db, None, lon, lat, "E0506")
    far = report(sample_db, None, lon + 0.001, lat)  # about 95 m
    flagged = dict(sample_db.rows("SELECT id, likely_duplicate_of FROM twin.cases"))
    assert flagged == {first: None, near: first, other_kind: None, far: None}
    move(sample_db, None, near, "void", context={"reason": "repeats an open case"},
         duplicate_of=first)
    assert sample_db.one("SELECT state, duplicate_of, closed_at IS NOT NULL FROM twin.cases "
                         "WHERE id = :id", id=near) == ("void", first, True)
