"""Open311 GeoReport v2 as an outside system uses it, over real HTTP: a GeoReport client
library lists the services and reads requests; a resident's app files one form-encoded with
its key and reads it back; nothing personal is ever read back; every refusal is the spec's
error list and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
from georeport import GeoReport

from tests.cases.steps import a_place
from tests.conftest import ROOT, Database, serve
from twin.errors import InvalidInput, NotFound
from twin.hotline import loop
from twin.hotline.clients import add_client, client_for_key, deactivate_client, list_clients
from twin.hotline.open311 import STATE_NAMES
from twin.hotline.reads import STATES
from twin.hotline.rules import hotline_rules_loaded, load_hotline_rules
from twin.users import User

NAME_FIRST, NAME_LAST, PHONE = "小明", "王", "13912345678"
WORDS_PHONE = "13812345678"
DESK = User(id=0, name="pytest-desk", role="dispatcher", grids=())


@dataclass
class Open311:
    db: Database
    url: str  # .../open311/v2
    key: str
    service: str  # an active service code
    lon: float
    lat: float

    def file(self, **fields: str) -> httpx.Response:
        return httpx.post(f"{self.url}/requests.json", data={"api_key": self.key} | fields)

    def orders(self) -> int:
        return int(self.db.scalar("SELECT count(*) FROM twin.orders"))


@pytest.fixture
def open311(sample_db: Database) -> Iterator[Open311]:
    with sample_db.admin.begin() as conn:
        if not hotline_rules_loaded(conn):
            load_hotline_rules(conn, ROOT / "data" / "hotline_rules.toml")
    with sample_db.app.begin() as conn:
        key = add_client(conn, "resident-app")
    service = sample_db.scalar(
        "SELECT code FROM twin.case_categories WHERE active ORDER BY code LIMIT 1")
    lon, lat, _ = a_place(sample_db)
    with serve(sample_db.settings()) as base:
        yield Open311(sample_db, f"{base}/open311/v2", key, service, lon, lat)


def _spec_error(response: httpx.Response, status: int) -> list[dict[str, Any]]:
    """The spec's error list, with the same status, and nothing of the server's insides."""
    assert response.status_code == status, response.text
    errors: list[dict[str, Any]] = response.json()
    assert errors and all(e["code"] == status and e["description"] for e in errors)
    assert "Traceback" not in response.text
    return errors


def _refused(response: httpx.Response, status: int, field: str) -> None:
    """A refusal, naming the field first."""
    assert _spec_error(response, status)[0]["description"].startswith(field), response.text


def test_a_client_library_lists_the_services(open311: Open311) -> None:
    report = GeoReport(root_address=open311.url)
    listed = report.get_service_list()
    active = [r[0] for r in open311.db.rows(
        "SELECT code FROM twin.case_categories WHERE active ORDER BY code")]
    assert [s["service_code"] for s in listed] == active
    first = listed[0]
    assert first.keys() == {"service_code", "service_name", "description", "metadata", "type",
                            "keywords", "group"}
    row = open311.db.one(
        "SELECT name_zh, name_en, major_zh, file_when_zh, file_when_en "
        "FROM twin.case_categories WHERE code = :c", c=first["service_code"])
    assert first == {
        "service_code": first["service_code"], "service_name": f"{row.name_zh} {row.name_en}",
        "description": " ".join(w for w in (row.file_when_zh, row.file_when_en) if w),
        "metadata": False, "type": "realtime", "keywords": "", "group": row.major_zh}
    assert report.get_service_definition(open311.service) == {
        "service_code": open311.service, "attributes": []}
    with pytest.raises(requests.HTTPError):
        report.get_service_definition("E9999")
    _spec_error(httpx.get(f"{open311.url}/services/E9999.json"), 404)

    # the same in XML, and the discovery document
    as_xml = GeoReport(root_address=open311.url, output_format="xml").get_service_list()
    assert [s["service_code"] for s in as_xml] == active
    discovery = httpx.get(f"{open311.url}/discovery.json").json()
    assert discovery["endpoints"][0]["url"] == open311.url
    assert discovery["endpoints"][0]["specification"] == "http://wiki.open311.org/GeoReport_v2"


def test_a_resident_files_a_request_and_reads_it_back(open311: Open311) -> None:
    before = open311.orders()
    filed = open311.file(
        service_code=open311.service, lat=str(open311.lat), long=str(open311.lon),
        description=f"楼道里堆满杂物,请联系我 {WORDS_PHONE}", first_name=NAME_FIRST,
        last_name=NAME_LAST, phone=PHONE, email="wang@example.com",
        **{"attribute[kind]": "complaint"})
    assert filed.status_code == 200, filed.text
    [answer] = filed.json()
    assert answer.keys() == {"service_request_id", "service_notice", "account_id"}
    assert answer["account_id"] is None and "O311-resident-app-" in answer["service_notice"]
    request_id = answer["service_request_id"]
    assert open311.orders() == before + 1
    order = open311.db.one(
        "SELECT order_number, channel, kind, duty, category, placed_by, grid_code "
        "FROM twin.orders WHERE id = :id", id=int(request_id))
    assert order.order_number.startswith("O311-resident-app-")
    assert (order.channel, order.kind, order.duty, order.category, order.placed_by) == (
        "open311", "complaint", "first", open311.service, "caller")
    assert open311.db.scalar("SELECT name FROM twin.order_callers WHERE order_id = :id",
                             id=int(request_id)) == "王小明"

    report = GeoReport(root_address=open311.url)
    one = report.get_service_request(request_id)
    assert one.items() >= {
        "service_request_id": request_id, "status": "open", "status_notes": "已受理 received",
        "service_code": open311.service,
        "description": "楼道里堆满杂物,请联系我 138****5678"}.items()
    assert abs(one["lat"] - open311.lat) < 1e-6 and abs(one["long"] - open311.lon) < 1e-6
    requested = datetime.fromisoformat(one["requested_datetime"])
    assert requested.utcoffset() == timedelta(hours=8)  # the subdistrict's own time
    assert abs(requested - datetime.now(UTC)) < timedelta(minutes=5)
    assert datetime.fromisoformat(one["expected_datetime"]) > requested
    assert "extended_attributes" not in one

    # filtered as the spec says
    ids = [r["service_request_id"] for r in report.get_service_requests(
        status="open", service_code=open311.service)]
    assert request_id in ids
    assert request_id not in [r["service_request_id"] for r in report.get_service_requests(
        status="closed")]
    assert request_id not in [r["service_request_id"] for r in report.get_service_requests(
        service_code="E9999")]
    assert [r["service_request_id"] for r in report.get_service_requests(
        service_request_id=f"{request_id},999999")] == [request_id]

    # Twin's finer state, when asked
    extended = httpx.get(f"{open311.url}/requests/{request_id}.json",
                         params={"extensions": "true"}).json()[0]["extended_attributes"]
    assert extended == {"state": "received", "kind": "complaint", "duty": "first",
                        "case": None, "micro_grid": order.grid_code, "late": False,
                        "warning": False}

    # only an address: placed by the twin, or queued for a person
    by_address = open311.file(service_code=open311.service, address_string="浦东新区临沂路")
    assert by_address.status_code == 200, by_address.text
    assert open311.orders() == before + 2

    # never the caller, in any answer, in any format
    answers = [httpx.get(f"{open311.url}/{path}") for path in (
        "requests.json", "requests.xml", "requests.json?extensions=true",
        f"requests/{request_id}.json", f"requests/{request_id}.xml",
        f"requests/{request_id}.json?extensions=true", "services.json")]
    for response in answers:
        assert response.status_code == 200, response.text
        for secret in (PHONE, WORDS_PHONE, "王小明", NAME_FIRST, "wang@example.com"):
            assert secret not in response.text, (response.url, secret)


def test_status_and_period_follow_the_order(open311: Open311) -> None:
    report = GeoReport(root_address=open311.url)
    [answer] = open311.file(service_code=open311.service, lat=str(open311.lat),
                            long=str(open311.lon), description="路灯不亮").json()
    request_id = answer["service_request_id"]
    loop.move(open311.db.app, DESK, int(request_id),
              loop.OrderMove("returned", reason="不属本街道", approver="主任"), None)
    one = report.get_service_request(request_id)
    assert (one["status"], one["status_notes"]) == ("closed", "已退单 sent back")
    assert request_id in [r["service_request_id"] for r in report.get_service_requests(
        status="closed")]
    assert request_id not in [r["service_request_id"] for r in report.get_service_requests(
        status="open")]

    # an order of 120 days ago: outside the default 90 days, inside its own period
    old = loop.receive(open311.db.app, DESK, loop.Order(
        "OLD-1", datetime.now(UTC) - timedelta(days=120), "help", "first",
        category=open311.service, lon=open311.lon, lat=open311.lat)).id
    assert str(old) not in [r["service_request_id"] for r in report.get_service_requests()]
    start = (datetime.now(UTC) - timedelta(days=130)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (datetime.now(UTC) - timedelta(days=110)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [r["service_request_id"] for r in report.get_service_requests(
        start_date=start, end_date=end)] == [str(old)]
    assert [r["service_request_id"] for r in report.get_service_requests(
        start_date=start)] == [str(old)]  # start_date alone: the 90 days after it


def test_refusals_are_the_spec_errors_and_change_nothing(open311: Open311) -> None:
    before = open311.orders()
    contacts = open311.db.scalar("SELECT count(*) FROM twin.contact_log")
    where = {"lat": str(open311.lat), "long": str(open311.lon)}
    good = {"service_code": open311.service, "description": "井盖松动", "phone": PHONE} | where

    _refused(httpx.post(f"{open311.url}/requests.json", data=good), 403, "api_key")
    _refused(open311.file(**good | {"api_key": "not-a-key"}), 403, "api_key")
    _refused(open311.file(**good | {"service_code": "E9999"}), 400, "service_code")
    _refused(open311.file(**good | {"service_code": ""}), 400, "service_code")
    _refused(open311.file(service_code=open311.service, description="x"), 400,
             "address_string")
    _refused(open311.file(service_code=open311.service, lat=str(open311.lat)), 400, "long")
    _refused(open311.file(**good | {"lat": "31", "long": "121.9"}), 400,
             "lat: the position is outside the subdistrict")
    _refused(open311.file(**good | {"lat": "north"}), 400, "lat")
    _refused(open311.file(**good | {"phone": "call me"}), 400, "phone")
    _refused(open311.file(**good | {"description": "x" * 4001}), 400, "description")
    _refused(open311.file(**good | {"description": "a\x00b"}), 400, "description")
    _refused(httpx.post(f"{open311.url}/requests.json", json={"api_key": open311.key} | good),
             400, "Content-Type")
    with open311.db.app.begin() as conn:
        deactivate_client(conn, "resident-app")
    _refused(open311.file(**good), 403, "api_key")
    assert open311.orders() == before
    assert open311.db.scalar("SELECT count(*) FROM twin.contact_log") == contacts

    # reading: unknown requests and services, bad filters
    _spec_error(httpx.get(f"{open311.url}/requests/999999.json"), 404)
    _spec_error(httpx.get(f"{open311.url}/requests/abc.json"), 404)
    xml = httpx.get(f"{open311.url}/requests/999999.xml")
    assert xml.status_code == 404 and "<errors><error><code>404</code>" in xml.text
    _spec_error(httpx.get(f"{open311.url}/requests.json", params={"status": "pending"}), 400)
    _spec_error(httpx.get(f"{open311.url}/requests.json", params={
        "start_date": "2026-01-01T00:00:00Z", "end_date": "2026-06-01T00:00:00Z"}), 400)
    _spec_error(httpx.get(f"{open311.url}/requests.json",
                          params={"start_date": "yesterday"}), 400)
    _spec_error(httpx.get(f"{open311.url}/requests.json",
                          params={"service_request_id": "1,x"}), 400)
    _spec_error(httpx.get(f"{open311.url}/requests.json", params={"colour": "red"}), 400)
    _spec_error(httpx.get(f"{open311.url}/requests.yaml"), 404)


def test_clients_keep_only_a_hash_of_their_key(sample_db: Database) -> None:
    with sample_db.app.begin() as conn:
        key = add_client(conn, "city-platform")
        assert client_for_key(conn, key) == "city-platform"
        assert client_for_key(conn, key + "x") is None
        with pytest.raises(InvalidInput) as taken:
            add_client(conn, "city-platform")
        assert taken.value.problems[0].field == "name"
        with pytest.raises(InvalidInput):
            add_client(conn, "no spaces please")
        assert [c["name"] for c in list_clients(conn)] == ["city-platform"]
        assert "key_hash" not in list_clients(conn)[0]
        deactivate_client(conn, "city-platform")
        assert client_for_key(conn, key) is None
        with pytest.raises(NotFound):
            deactivate_client(conn, "nobody")
    assert key not in str(sample_db.rows("SELECT * FROM twin.open311_clients"))


def test_every_state_has_its_status_notes() -> None:
    assert set(STATE_NAMES) == set(STATES)
