"""Shared dependencies: the engine, the settings, the signed-in user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Engine

from twin.errors import Unauthorized
from twin.settings import Settings
from twin.users import User, user_for_token

_bearer = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_pool(request: Request) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """The async pool the read routes use (psycopg, autocommit)."""
    pool: AsyncConnectionPool[AsyncConnection[Any]] = request.app.state.pool
    return pool


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
TokenDep = Annotated[str | None, Depends(_bearer)]


SIGN_IN = "sign in first: POST /auth/token gives a bearer token"


def current_user(engine: EngineDep, token: TokenDep) -> User:
    """The user of the request's bearer token; 401 without a live one."""
    if not token:
        raise Unauthorized(SIGN_IN)
    return user_for_token(engine, token)


UserDep = Annotated[User, Depends(current_user)]
