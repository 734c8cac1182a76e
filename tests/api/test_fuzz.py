"""The API fuzzed, the short pass: schemathesis sends every operation of the OpenAPI document
a few generated requests, valid and invalid, as every role of the sample twin and with no
token, against the real app on the real twin (bench/fuzz.py, whose long pass is `make fuzz`).
None may be a 5xx or break what the document declares, and a refused one may change nothing.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from bench.fuzz import Fuzzer
from tests.conftest import DEMO_PASSWORD, Database, login, serve
from twin.store.db import libpq_conninfo

# Requests generated per operation and mode (bench.fuzz.MODES), each sent as every role and
# none: about 1,900 requests, two to four minutes on 2 shared CPUs; `make fuzz` sends 25.
EXAMPLES = 2


def test_no_operation_fails_for_any_role(sample_db: Database) -> None:
    with serve(sample_db.settings()) as url:
        fuzzer = Fuzzer(url, libpq_conninfo(sample_db.admin_url), DEMO_PASSWORD, EXAMPLES,
                        log=lambda line: None)
        operations = len(list(fuzzer.schema.get_all_operations()))
        report = fuzzer.run()
    print(report.summary())  # the counts, with -rP
    assert not report.failures, report.summary()
    assert len(report.operations) == operations > 80
    assert report.requests["2xx"] > 0 and report.requests["4xx"] > 0


def test_a_role_without_layers_to_edit_gets_its_scope(client: TestClient) -> None:
    """Found by the fuzz: a dispatcher's (or a department's) scope had no layer to read and
    the empty union lost its column names (a 500)."""
    for user in ("dispatcher", "dept-chengguan"):
        answer = client.get("/sync/scope", params={"grids": "310115010021-03"},
                            headers=login(client, user))
        assert answer.status_code == 200, answer.text
        assert answer.json()["features"]["features"] == []


def test_an_id_beyond_the_database_s_integers_is_named(client: TestClient) -> None:
    """Found by the fuzz: an id past PostgreSQL's bigint reached the database and overflowed
    there (a 500); ids are declared with their bounds, so it is a 400 naming the id."""
    admin = login(client, "admin")
    huge = "-323055522168150638566300439877255168"
    for method, path, field in (("GET", f"/imports/{huge}", "import_id"),
                                ("POST", f"/imports/{huge}/revert", "import_id"),
                                ("POST", f"/changes/{huge}/revert", "change_id"),
                                ("POST", f"/conflicts/{huge}/resolve", "conflict_id"),
                                ("GET", f"/analysis/coverage/buildings/{huge}", "building_id")):
        answer = client.request(method, path, headers=admin, json={"reason": "fuzz"})
        assert answer.status_code == 400, (path, answer.text)
        assert field in {p["field"] for p in answer.json()["problems"]}


def test_text_with_nul_is_a_400_naming_where_it_came(client: TestClient,
                                                      sample_db: Database) -> None:
    """Found by the fuzz: a NUL in a sign-in, a filter of the change feed, a revert's actor,
    a caller read's purpose or an Open311 query reached PostgreSQL, which cannot hold it in
    text (a 500). It is a 400 naming the parameter (or the body), and nothing is written."""
    answer = client.post("/auth/token", data={"username": "admin\x00", "password": "x"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["problems"][0]["field"] == "body"
    admin = login(client, "admin")
    answer = client.get("/changes", params={"actor": "a\x00"}, headers=admin)
    assert answer.status_code == 400, answer.text
    assert answer.json()["problems"][0] == {
        "field": "actor", "value": "a\x00", "reason": "NUL characters are not allowed",
        "reason_zh": "文本不得包含 NUL 字符"}
    changes = sample_db.scalar("SELECT count(*) FROM twin.changes")
    answer = client.post("/changes/revert", headers=admin, json={
        "actor": "pytest\x00", "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z",
        "reason": "fuzz"})
    assert answer.status_code == 400, answer.text
    assert sample_db.scalar("SELECT count(*) FROM twin.changes") == changes
    answer = client.get("/open311/v2/requests.json", params={"service_code": "\x00"})
    assert answer.status_code == 400, answer.text
    assert "service_code" in answer.json()[0]["description"]


def test_a_digit_int_cannot_read_is_no_number(client: TestClient) -> None:
    """Found by the fuzz: ``str.isdigit`` holds for a superscript (``³``), which ``int``
    refuses, so an id or a number written with one was a 500; it is no number (a 404 for a
    path's id, a 400 for a parameter)."""
    for user, path, status in (
            ("dispatcher", "/orders/³/caller", 404), ("planner", "/cases/³", 404),
            ("planner", "/collections/buildings/items/³", 404),
            ("planner", "/collections/buildings/tiles/WebMercatorQuad/³/0/0", 404),
            ("planner", "/cases?limit=³", 400), ("worker-310115010021-03", "/sync/scope?since=³",
                                                  400)):
        answer = client.get(path, headers=login(client, user))
        assert answer.status_code == status, (path, answer.text)


def test_an_unknown_layer_to_compare_is_a_400_naming_it(client: TestClient) -> None:
    """Found by the fuzz: the diff's ``layer`` filter was a 404 (no such path) where the
    feed's is a 400 naming the parameter."""
    answer = client.get("/changes/diff", headers=login(client, "planner"), params={
        "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z",
        "micro_grid": "310115010021-03", "layer": "nowhere"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["problems"][0]["field"] == "layer"
