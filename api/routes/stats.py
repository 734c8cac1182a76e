"""What the twin holds (signed-in users only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import EngineDep, UserDep
from api.errors import SIGNED, errors
from twin.features.stats import stats

router = APIRouter(tags=["twin"], responses=errors(*SIGNED))


@router.get("/stats", summary="Features per layer, changes logged, content hash")
def twin_stats(engine: EngineDep, user: UserDep) -> dict[str, Any]:
    return stats(engine)
