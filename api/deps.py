"""Shared dependencies: the engine, the settings, the signed-in user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine

from api.live import ChangeSignal
from api.seen import SeenVersions
from twin.errors import Unauthorized
from twin.settings import Settings
from twin.users import (
    BEARER_ROLE_SQL,
    EXPIRED,
    USER_OF_BEARER_SQL,
    User,
    token_digest,
    user_of_row,
)

_bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_pool(request: Request) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """The async pool the read routes use (psycopg, autocommit)."""
    pool: AsyncConnectionPool[AsyncConnection[Any]] = request.app.state.pool
    return pool


def get_seen(request: Request) -> SeenVersions:
    """What each token was given of each feature (api.seen)."""
    seen: SeenVersions = request.app.state.seen
    return seen


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Annotated[str | None, Depends(_bearer)]


SIGN_IN = "sign in first: POST /auth/token gives a bearer token"


async def current_user(request: Request, token: TokenDep) -> User:
    """The user of the request's bearer token (one query on the async pool); 401 without a
    live one."""
    if not token:
        raise Unauthorized(SIGN_IN)
    async with get_pool(request).connection() as conn:
        return await _user_of(conn, token_digest(token))


async def _user_of(conn: AsyncConnection[Any], digest: str) -> User:
    """The user of a live token, by its digest (401 otherwise)."""
    return user_of_row(await (await conn.execute(USER_OF_BEARER_SQL,
                                                 {"token": digest})).fetchone())


UserDep = Annotated[User, Depends(current_user)]


async def token_role(request: Request, conn: AsyncConnection[Any], digest: str) -> str:
    """The role of a bearer token's user (by the token's digest): remembered by this process
    (api.live) or asked of ``conn`` once; 401 unless the token is live."""
    signal: ChangeSignal = request.app.state.signal
    role = signal.role_of(digest)
    if role is None:
        checkpoint = signal.checkpoint()
        row = await (await conn.execute(BEARER_ROLE_SQL, {"token": digest})).fetchone()
        if row is None:
            raise Unauthorized(EXPIRED)
        role = str(row[0])
        signal.remember(checkpoint, digest, role, row[1])
    return role


def bearer_digest(request: Request) -> str:
    """The digest of the request's bearer token (``token_role`` checks that it is live)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(SIGN_IN)
    return str(token_digest(token.strip()))


async def token_scope(request: Request, conn: AsyncConnection[Any], digest: str
                      ) -> tuple[str, ...] | None:
    """A worker's micro-grids, None for every other role (401 unless the token is live).
    Roles are remembered, so only a worker's token costs a query."""
    if await token_role(request, conn, digest) != "worker":
        return None
    return (await _user_of(conn, digest)).grids
