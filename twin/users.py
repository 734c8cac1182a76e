"""Users, their roles and micro-grids, passwords (argon2) and revocable bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, Engine, text

from twin.errors import Conflict, InvalidInput, NotFound, Problem, Unauthorized

Role = Literal["worker", "planner", "commander", "dispatcher", "department", "admin"]
ROLES: tuple[str, ...] = get_args(Role)

_hasher = PasswordHasher()
# name, role, micro-grids and (a department user's) department
DemoUser = tuple[str, str, Sequence[str]] | tuple[str, str, Sequence[str], str]


@dataclass(frozen=True)
class User:
    """Someone signed in: who, in what role, answering for which micro-grids."""

    id: int
    name: str
    role: str
    grids: tuple[str, ...]
    department: str | None = None  # a department user's department
    subdistrict: str | None = None  # the subdistrict this user is limited to; None: all
    subdistrict_grids: tuple[str, ...] = ()  # that subdistrict's micro-grids

    @property
    def read_grids(self) -> tuple[str, ...] | None:
        """The micro-grids this user's reads of the log, key figures and reports are limited
        to: a worker's own, a subdistrict's user's subdistrict's; None: every one (a
        district's command centre, planners and admins)."""
        if self.role == "worker":
            return self.grids
        if self.subdistrict is not None:
            return self.subdistrict_grids
        return None


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise InvalidInput("password too short",
                           [Problem("password", "***", "at least 8 characters", "密码至少8位")])
    return _hasher.hash(password)


def _grid_problems(conn: Connection, role: str, grids: Sequence[str],
                   department: str | None = None, subdistrict: str | None = None
                   ) -> list[Problem]:
    problems: list[Problem] = []
    if subdistrict is not None and not conn.execute(
            text("SELECT EXISTS (SELECT FROM twin.features WHERE layer = 'subdistricts' "
                 "AND props ->> 'code' = :s)"), {"s": subdistrict}).scalar():
        problems.append(Problem("subdistrict", subdistrict, "no subdistrict has this code",
                                "无此街道编码"))
    if (role == "department") != (department is not None):
        problems.append(Problem("department", department,
                                "a department user, and only one, names its department",
                                "部门用户须且只有部门用户指定所属部门"))
    elif department is not None and not conn.execute(
            text("SELECT EXISTS (SELECT FROM twin.departments WHERE code = :d)"),
            {"d": department}).scalar():
        problems.append(Problem("department", department, "no department has this code",
                                "无此部门"))
    if role not in ROLES:
        problems.append(Problem("role", role, f"one of {', '.join(ROLES)}", "角色无效"))
    if role == "worker" and not grids:
        problems.append(Problem("grid", [], "a worker answers for at least one micro-grid",
                                "网格员至少负责一个微网格"))
    if role != "worker" and grids:
        problems.append(Problem("grid", list(grids), "only workers are assigned micro-grids",
                                "只有网格员分配微网格"))
    known = set(conn.execute(
        text("SELECT props->>'code' FROM twin.features WHERE layer = 'micro_grids' "
             "AND props->>'code' = ANY(:codes)"), {"codes": list(grids)}).scalars())
    problems.extend(Problem("grid", code, "no micro-grid has this code", "无此微网格编码")
                    for code in grids if code not in known)
    return problems


def add_user(engine: Engine, name: str, role: str, password_hash: str,
             grids: Sequence[str] = (), department: str | None = None,
             subdistrict: str | None = None) -> User:
    """Create a user; a bad role, unknown grid, department or subdistrict or a taken name
    changes nothing. ``subdistrict`` limits what the user reads to that subdistrict."""
    with engine.begin() as conn:
        problems = _grid_problems(conn, role, grids, department, subdistrict)
        if problems:
            raise InvalidInput(f"cannot add user {name!r}", problems)
        row = conn.execute(
            text("INSERT INTO twin.users (name, role, password_hash, department, "
                 "subdistrict_code) VALUES (:n, :r, :h, :d, :s) "
                 "ON CONFLICT (name) DO NOTHING RETURNING id"),
            {"n": name, "r": role, "h": password_hash, "d": department,
             "s": subdistrict}).scalar()
        if row is None:
            raise Conflict(f"user {name!r} already exists",
                           [Problem("name", name, "already taken", "用户名已存在")])
        if grids:
            conn.execute(text("INSERT INTO twin.user_grids (user_id, grid_code) "
                              "SELECT :id, unnest(CAST(:g AS text[]))"),
                         {"id": row, "g": list(grids)})
        return _load(conn, row)


def add_user_rows(conn: Connection, users: Sequence[DemoUser], password_hash: str) -> None:
    """Create many users sharing one password hash (the sample's demo accounts) in one go."""
    conn.execute(text("INSERT INTO twin.users (name, role, password_hash, department) "
                      "SELECT unnest(CAST(:names AS text[])), unnest(CAST(:roles AS text[])), :h,"
                      " unnest(CAST(:departments AS text[]))"),
                 {"names": [u[0] for u in users], "roles": [u[1] for u in users],
                  "departments": [u[3] if len(u) > 3 else None for u in users],
                  "h": password_hash})
    conn.execute(text("INSERT INTO twin.user_grids (user_id, grid_code) "
                      "SELECT u.id, g.code FROM unnest(CAST(:names AS text[]), "
                      "CAST(:grids AS text[])) AS g(name, code) JOIN twin.users u USING (name)"),
                 {"names": [u[0] for u in users for _ in u[2]],
                  "grids": [code for u in users for code in u[2]]})


def authenticate(engine: Engine, name: str, password: str) -> User:
    """The user with this name and password; the same answer for a wrong name or password."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT id, password_hash FROM twin.users "
                                "WHERE name = :n AND active"), {"n": name}).first()
        if row is not None:
            try:
                _hasher.verify(row.password_hash, password)
            except (VerificationError, InvalidHashError):
                row = None
        if row is None:
            raise Unauthorized("wrong user name or password")
        return _load(conn, row.id)


def _load(conn: Connection, user_id: int) -> User:
    return user_of_row(conn.execute(text(f"{_USER} WHERE u.id = :id GROUP BY u.id"),
                                    {"id": user_id}).one())


def user_named(engine: Engine, name: str) -> User:
    """An active user by name (a command acting as them: `twin cases move --as`)."""
    with engine.connect() as conn:
        found = conn.execute(text("SELECT id FROM twin.users WHERE name = :n AND active"),
                             {"n": name}).scalar()
        if found is None:
            raise NotFound(f"no active user {name!r}", [Problem("name", name, "no such user",
                                                               "无此用户")])
        return _load(conn, found)


def list_users(engine: Engine) -> list[tuple[User, bool]]:
    """Every user with whether the account is active, by name."""
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id, active FROM twin.users ORDER BY name")).all()
        return [(_load(conn, row.id), row.active) for row in ids]


def disable_user(engine: Engine, name: str) -> int:
    """Deactivate an account (e.g. a lost tablet) and revoke its tokens; how many tokens."""
    with engine.begin() as conn:
        user_id = conn.execute(text("UPDATE twin.users SET active = false WHERE name = :n "
                                    "RETURNING id"), {"n": name}).scalar()
        if user_id is None:
            raise NotFound(f"no user {name!r}", [Problem("name", name, "no such user",
                                                         "无此用户")])
        revoked = conn.execute(text("UPDATE twin.tokens SET revoked_at = now() "
                                    "WHERE user_id = :id AND revoked_at IS NULL"),
                               {"id": user_id}).rowcount
    return int(revoked)


def token_digest(token: str) -> str:
    """What the tokens table stores of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


# The role of a live token's user and when the token ends: what a server remembers of a token
# it has checked (api.live), so that its read routes ask PostgreSQL for the data alone.
BEARER_ROLE_SQL = ("SELECT u.role, t.expires_at FROM twin.tokens t JOIN twin.users u "
                  "ON u.id = t.user_id WHERE t.token_hash = %(token)s "
                  "AND t.revoked_at IS NULL AND t.expires_at > now() AND u.active")
EXPIRED = "the token is unknown, expired or revoked; get a new one from POST /auth/token"


def issue_token(engine: Engine, user: User, minutes: int) -> tuple[str, datetime]:
    """A new random bearer token; only its hash is stored."""
    token = secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO twin.tokens (token_hash, user_id, expires_at) "
                          "VALUES (:h, :u, :e)"),
                     {"h": token_digest(token), "u": user.id, "e": expires})
    return token, expires


# The live token's user, role and micro-grids, by the token's digest (psycopg parameters).
# A user as a row: id, name, role, micro-grids, department, subdistrict, and that
# subdistrict's micro-grids (read once per sign-in check, only for a subdistrict's user).
_USER = """
SELECT u.id, u.name, u.role, coalesce(array_agg(g.grid_code ORDER BY g.grid_code)
       FILTER (WHERE g.grid_code IS NOT NULL), '{}') AS grids, u.department,
       u.subdistrict_code,
       CASE WHEN u.subdistrict_code IS NOT NULL THEN ARRAY(
           SELECT s.props ->> 'code' FROM twin.features s
            WHERE s.layer = 'micro_grids' AND s.subdistrict_code = u.subdistrict_code
            ORDER BY 1) END
  FROM twin.users u LEFT JOIN twin.user_grids g ON g.user_id = u.id"""
USER_OF_BEARER_SQL = (f"{_USER} JOIN twin.tokens t ON t.user_id = u.id "
                      "WHERE t.token_hash = %(token)s AND t.revoked_at IS NULL "
                      "AND t.expires_at > now() AND u.active GROUP BY u.id")


def user_of_row(row: Sequence[Any] | None) -> User:
    """The user of a USER_OF_BEARER_SQL row; no row: the token is not live (401)."""
    if row is None:
        raise Unauthorized(EXPIRED)
    return User(id=row[0], name=row[1], role=row[2], grids=tuple(row[3]), department=row[4],
                subdistrict=row[5], subdistrict_grids=tuple(row[6] or ()))


def revoke_token(engine: Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE twin.tokens SET revoked_at = now() "
                          "WHERE token_hash = :h AND revoked_at IS NULL"),
                     {"h": token_digest(token)})
