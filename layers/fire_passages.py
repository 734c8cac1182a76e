"""Fire and life passages (消防/生命通道): open or blocked, walkable by rescuers."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["open", "blocked"] = Field(default="open", title="状态 State")
    width_m: float = Field(title="宽度(米) Width m", default=4.0, gt=0, le=30)
    blocked_by: str | None = Field(
        title="堵塞物 Blocked by", default=None, max_length=120, description="what blocks it"
    )


LAYER = Layer(
    name="fire_passages",
    title_zh="消防通道",
    title_en="Fire passages",
    description="Passages for fire engines and rescuers; blocked ones stand out.",
    geometry_type="LineString",
    attributes=Attributes,
    tags=TagVocabulary(keys=COMMON_KEYS, labels=("破窗破网", "生命通道")),
    style=Style(color="#e31a1c", weight=3, by_state={"open": "#1a9850", "blocked": "#e31a1c"}),
    state_field="state",
    state_labels={"open": "畅通 open", "blocked": "堵塞 blocked"},
    tile_attributes=("state", "width_m"),
)
