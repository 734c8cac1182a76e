"""Sign in (OAuth2 password flow), see who you are, sign out (revoke the token)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import EngineDep, SettingsDep, TokenDep, UserDep
from api.errors import SIGNED, errors
from twin.users import authenticate, issue_token, revoke_token

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", summary="Get a bearer token (OAuth2 password flow)",
             responses=errors(400, 401, 503))
def token(form: Annotated[OAuth2PasswordRequestForm, Depends()], engine: EngineDep,
          settings: SettingsDep) -> dict[str, Any]:
    user = authenticate(engine, form.username, form.password)
    value, expires = issue_token(engine, user, settings.token_minutes)
    return {"access_token": value, "token_type": "bearer",
            "expires_in": settings.token_minutes * 60, "expires_at": expires.isoformat(),
            "user": {"name": user.name, "role": user.role, "grids": list(user.grids)}}


@router.get("/me", summary="The signed-in user", responses=errors(*SIGNED))
def me(user: UserDep) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "grids": list(user.grids)}


@router.post("/logout", status_code=204, summary="Revoke the token of this request",
             responses=errors(*SIGNED))
def logout(request: Request, user: UserDep, token: TokenDep, engine: EngineDep) -> Response:
    assert token is not None  # current_user has refused requests without one
    revoke_token(engine, token)
    request.app.state.signal.forget_tokens()  # others hear of it from PostgreSQL
    return Response(status_code=204)
