"""Real PostGIS for every test: each test gets its own database, cloned from a template.

Templates are built once per session: one migrated and empty, one holding the sample twin.
A test that cannot reach the database fails; nothing here skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from twin.settings import Settings
from twin.store.db import database_urls, make_engine
from twin.store.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "data" / "nanmatou.toml"
DEMO_PASSWORD = "demo-password"
SEED = 7


@dataclass
class Database:
    """A throw-away database: its name, the two URLs and engines for each role."""

    name: str
    admin_url: str
    app_url: str
    admin: Engine
    app: Engine

    def one(self, sql: str, **params: Any) -> Any:
        """The one row ``sql`` returns, read as the database's owner (who sees everything)."""
        with self.admin.connect() as conn:
            return conn.execute(text(sql), params).one()

    def scalar(self, sql: str, **params: Any) -> Any:
        """The one value ``sql`` returns, read as the owner."""
        with self.admin.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """Every row ``sql`` returns, read as the owner."""
        with self.admin.connect() as conn:
            return list(conn.execute(text(sql), params).all())

    def settings(self) -> Settings:
        """Settings pointing the app at this database (as the application role)."""
        return Settings(database_url=self.app_url, demo_password=DEMO_PASSWORD)

    def env(self) -> dict[str, str]:
        """Environment for running the `twin` CLI against this database."""
        return {**os.environ, "TWIN_DATABASE_URL": self.app_url,
                "TWIN_DEMO_PASSWORD": DEMO_PASSWORD}


class Server:
    """The PostgreSQL server the tests create their databases in."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.urls = database_urls(settings)
        url = make_url(self.urls.admin).set(database="postgres")
        self.maintenance = create_engine(url, isolation_level="AUTOCOMMIT")

    def url(self, which: str, name: str) -> str:
        base = self.urls.admin if which == "admin" else self.urls.app
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    def create(self, name: str, template: str | None = None) -> Database:
        clause = f' TEMPLATE "{template}"' if template else ""
        with self.maintenance.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
        admin_url, app_url = self.url("admin", name), self.url("app", name)
        return Database(name, admin_url, app_url, make_engine(admin_url, pool_size=2),
                        make_engine(app_url, pool_size=2))

    def drop(self, db: Database) -> None:
        db.admin.dispose()
        db.app.dispose()
        with self.maintenance.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def server() -> Server:
    srv = Server(Settings())
    try:
        with srv.maintenance.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # a test run without its database is a failure, not a skip
        pytest.fail(f"PostgreSQL not reachable ({exc}); run `make test`, which starts it")
    return srv


def _template(server: Server, name: str, fill: bool) -> Iterator[str]:
    db = server.create(name)
    app_role = None if server.settings.database_url else server.settings.app_role
    migrate(db.admin, app_role)
    if fill:
        # imported here: only the sample template needs the generator
        from twin.sample.generator import plan
        from twin.sample.load import load_sample
        from twin.sample.spec import load_spec
        from twin.users import hash_password

        load_sample(db.app, plan(load_spec(SPEC), seed=SEED), actor="pytest",
                    password_hash=hash_password(DEMO_PASSWORD))
    db.admin.dispose()
    db.app.dispose()
    yield name
    server.drop(db)


@pytest.fixture(scope="session")
def empty_template(server: Server) -> Iterator[str]:
    yield from _template(server, _unique("twin_tmpl_empty"), fill=False)


@pytest.fixture(scope="session")
def sample_template(server: Server) -> Iterator[str]:
    yield from _template(server, _unique("twin_tmpl_sample"), fill=True)


@pytest.fixture
def db(server: Server, empty_template: str) -> Iterator[Database]:
    """A migrated database with no features."""
    database = server.create(_unique("twin_test"), template=empty_template)
    yield database
    server.drop(database)


@pytest.fixture
def sample_db(server: Server, sample_template: str) -> Iterator[Database]:
    """A database holding the sample twin (seed SEED) and its demo accounts."""
    database = server.create(_unique("twin_test"), template=sample_template)
    yield database
    server.drop(database)


@pytest.fixture
def client(sample_db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(sample_db.settings())) as test_client:
        yield test_client


def login(client: TestClient, user: str, password: str = DEMO_PASSWORD) -> dict[str, str]:
    """Sign in through the API; the headers to send with later requests."""
    response = client.post("/auth/token", data={"username": user, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def run_twin(*args: str, env: dict[str, str], input_text: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    """Run the installed `twin` command as a user would."""
    twin = Path(sys.executable).parent / "twin"
    return subprocess.run([str(twin), *args], env=env, capture_output=True, text=True,
                          input=input_text, timeout=600, check=False, cwd=ROOT)


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """An app of ``settings`` served by uvicorn on a free loopback port; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


@pytest.fixture
def live_url(sample_db: Database) -> Iterator[str]:
    """The sample twin served over real HTTP, for clients that need it."""
    with serve(sample_db.settings()) as url:
        yield url


def bearer(url: str, user: str = "planner") -> str:
    """A token from a live server."""
    response = httpx.post(f"{url}/auth/token", data={"username": user,
                                                     "password": DEMO_PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])
