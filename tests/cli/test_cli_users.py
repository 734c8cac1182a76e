"""`twin user add`: from the command line, with the password from TWIN_PASSWORD."""

from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from tests.conftest import DEMO_PASSWORD, Database, login, run_twin


def _users(db: Database) -> int:
    with db.app.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM twin.users")).scalar_one())


def test_add_a_worker_for_two_grids_then_sign_in(sample_db: Database) -> None:
    with sample_db.app.connect() as conn:
        grids = conn.execute(text("SELECT props->>'code' FROM twin.features "
                                  "WHERE layer = 'micro_grids' ORDER BY 1 LIMIT 2")
                             ).scalars().all()
    env = {**sample_db.env(), "TWIN_PASSWORD": "s3cret-pass"}
    done = run_twin("user", "add", "li.ming", "--role", "worker", "--grid", grids[0],
                    "--grid", grids[1], env=env)
    assert done.returncode == 0, done.stderr
    assert "added worker li.ming" in done.stdout
    with sample_db.app.connect() as conn:
        assigned = conn.execute(text(
            "SELECT array_agg(g.grid_code ORDER BY g.grid_code) FROM twin.user_grids g "
            "JOIN twin.users u ON u.id = g.user_id WHERE u.name = 'li.ming'")).scalar()
    assert assigned == sorted(grids)


def test_bad_input_says_what_and_changes_nothing(sample_db: Database) -> None:
    env = {**sample_db.env(), "TWIN_PASSWORD": "s3cret-pass"}
    before = _users(sample_db)
    cases = [
        (["user", "add", "x.y", "--role", "mayor"], "role"),
        (["user", "add", "x.y", "--role", "worker", "--grid", "NO-SUCH-GRID"], "NO-SUCH-GRID"),
        (["user", "add", "x.y", "--role", "worker"], "at least one micro-grid"),
        (["user", "add", "admin", "--role", "admin"], "already exists"),
    ]
    for args, message in cases:
        done = run_twin(*args, env=env)
        assert done.returncode == 1, args
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    short = run_twin("user", "add", "x.y", "--role", "planner",
                     env={**env, "TWIN_PASSWORD": "short"})
    assert short.returncode == 1 and "8 characters" in short.stderr
    assert _users(sample_db) == before


def test_without_password_or_terminal_it_says_how(sample_db: Database) -> None:
    env = {k: v for k, v in sample_db.env().items() if k != "TWIN_PASSWORD"}
    done = run_twin("user", "add", "x.y", "--role", "planner", env=env, input_text="")
    assert done.returncode == 1 and "TWIN_PASSWORD" in done.stderr


def test_disable_a_user_revokes_their_tokens(sample_db: Database) -> None:
    with TestClient(create_app(sample_db.settings())) as client:
        headers = login(client, "commander")
        done = run_twin("user", "disable", "commander", env=sample_db.env())
        assert done.returncode == 0 and "1 token(s) revoked" in done.stdout
        assert client.get("/auth/me", headers=headers).status_code == 401
        assert client.post("/auth/token", data={"username": "commander",
                                                "password": DEMO_PASSWORD}).status_code == 401
    listing = run_twin("user", "list", env=sample_db.env())
    assert listing.returncode == 0
    line = next(row for row in listing.stdout.splitlines() if " commander " in row)
    assert "no" in line
    missing = run_twin("user", "disable", "ghost", env=sample_db.env())
    assert missing.returncode == 1 and "no user 'ghost'" in missing.stderr
