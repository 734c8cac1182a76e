"""Reverting changes (admins only): the HTTP shape of twin.history.revert."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from api.deps import EngineDep, UserDep
from api.errors import SIGNED, errors
from api.params import Id
from twin.history.revert import Reverted, revert_actor, revert_change

# only admins revert; a revert that would overwrite a later edit is a 409 naming it
router = APIRouter(tags=["history"], responses=errors(*SIGNED, 403, 409, 422))

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class RevertBody(BaseModel):
    """Why: recorded in every change the revert makes."""

    model_config = ConfigDict(extra="forbid")

    reason: Text = Field(description="why the change is undone (recorded in the log)")


class RevertRangeBody(RevertBody):
    """Whose changes, when ([from, to), RFC 3339 with a time zone), optionally one layer."""

    actor: Text
    start: AwareDatetime = Field(alias="from")
    to: AwareDatetime
    layer: str | None = None


def _answer(done: list[Reverted]) -> dict[str, Any]:
    return {"reverted": [asdict(r) for r in done]}


@router.post("/changes/{change_id}/revert", summary="Undo one change (admin)",
             responses=errors(404))
def revert_one(change_id: Id, body: RevertBody, engine: EngineDep,
               user: UserDep) -> dict[str, Any]:
    return _answer(revert_change(engine, user, change_id, body.reason))


@router.post("/changes/revert", summary="Undo every change of an actor in [from, to) (admin)")
def revert_range(body: RevertRangeBody, engine: EngineDep, user: UserDep) -> dict[str, Any]:
    return _answer(revert_actor(engine, user, body.actor, body.start, body.to, body.reason,
                                body.layer))
