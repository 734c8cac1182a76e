"""Signing in: tokens expire and can be revoked; every request but the public ones needs one."""

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import DEMO_PASSWORD, Database, login

PUBLIC = ["/", "/conformance", "/api", "/api.html"]


def test_public_pages_need_no_token(client: TestClient) -> None:
    for path in PUBLIC:
        assert client.get(path).status_code == 200, path


def test_landing_page_links(client: TestClient) -> None:
    links = {link["rel"] for link in client.get("/").json()["links"]}
    assert {"self", "service-desc", "service-doc", "conformance"} <= links
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")
    assert "数字孪生" in page.text and "/api.html" in page.text


def test_everything_else_needs_a_token(client: TestClient) -> None:
    for path in ["/stats", "/auth/me"]:
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "POST /auth/token" in response.json()["description"]
    bad = client.get("/stats", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401


def test_sign_in_and_use_the_token(client: TestClient) -> None:
    response = client.post("/auth/token", data={"username": "planner",
                                                "password": DEMO_PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert client.get("/auth/me", headers=headers).json() == {
        "name": "planner", "role": "planner", "grids": []}
    stats = client.get("/stats", headers=headers).json()
    assert stats["layers"]["micro_grids"] == 263


def test_a_worker_token_knows_its_grid(client: TestClient, sample_db: Database) -> None:
    with sample_db.app.connect() as conn:
        grid = conn.execute(text("SELECT grid_code FROM twin.user_grids ORDER BY grid_code "
                                 "LIMIT 1")).scalar_one()
    me = client.get("/auth/me", headers=login(client, f"worker-{grid}")).json()
    assert me == {"name": f"worker-{grid}", "role": "worker", "grids": [grid]}


def test_wrong_password_or_user_is_401_and_says_nothing_more(client: TestClient) -> None:
    wrong_password = client.post("/auth/token", data={"username": "admin", "password": "nope!"})
    no_user = client.post("/auth/token", data={"username": "ghost", "password": "nope!"})
    assert wrong_password.status_code == no_user.status_code == 401
    assert wrong_password.json() == no_user.json()


def test_missing_form_fields_are_400_naming_the_field(client: TestClient) -> None:
    response = client.post("/auth/token", data={"username": "admin"})
    assert response.status_code == 400
    assert any(p["field"] == "password" for p in response.json()["problems"])


def test_logout_revokes_the_token(client: TestClient) -> None:
    headers = login(client, "admin")
    assert client.get(READ, headers=headers).status_code == 200  # the server remembers it
    assert client.post("/auth/logout", headers=headers).status_code == 204
    assert client.get("/auth/me", headers=headers).status_code == 401
    assert client.get(READ, headers=headers).status_code == 401  # forgotten at once


READ = "/collections/waste_points/items?limit=1"


def _refused_soon(client: TestClient, headers: dict[str, str]) -> bool:
    """Whether the read route refuses the token within 5 s (it hears of the change from
    PostgreSQL's twin_tokens notification, a few milliseconds after the commit)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if client.get(READ, headers=headers).status_code == 401:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("change", [
    "UPDATE twin.tokens SET revoked_at = now()",
    "UPDATE twin.tokens SET expires_at = now() - interval '1 second'",
    "DELETE FROM twin.tokens",
    "UPDATE twin.users SET active = false WHERE name = 'commander'",
])
def test_a_remembered_token_is_refused_once_changed_elsewhere(
        client: TestClient, sample_db: Database, change: str) -> None:
    """The read routes remember a checked token; a change made by another process (the CLI,
    SQL) reaches them through PostgreSQL and they refuse it."""
    headers = login(client, "commander")
    for _ in range(3):
        assert client.get(READ, headers=headers).status_code == 200
    with sample_db.admin.begin() as conn:
        conn.execute(text(change))
    assert _refused_soon(client, headers)


def test_an_expired_token_is_refused(client: TestClient, sample_db: Database) -> None:
    headers = login(client, "commander")
    with sample_db.admin.begin() as conn:
        conn.execute(text("UPDATE twin.tokens SET expires_at = now() - interval '1 second'"))
    assert client.get("/auth/me", headers=headers).status_code == 401


def test_passwords_are_stored_hashed(sample_db: Database) -> None:
    with sample_db.admin.connect() as conn:
        hashes = conn.execute(text("SELECT DISTINCT password_hash FROM twin.users")).scalars()
        assert all(h.startswith("$argon2") and DEMO_PASSWORD not in h for h in hashes)
