"""Buildings: what they are used for and the aggregates of who lives there (never persons)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    use: Literal["residential", "commercial", "public", "industrial", "mixed"] = Field(
        title="用途 Use"
    )
    floors: int = Field(title="层数 Floors", ge=1, le=150)
    households: int = Field(title="户数 Households", default=0, ge=0)
    elderly: int = Field(
        title="60岁以上 Aged 60+", default=0, ge=0, description="residents aged 60 and over"
    )
    built_year: int | None = Field(title="建成年份 Built", default=None, ge=1850, le=2100)
    address: str | None = Field(title="地址 Address", default=None, max_length=200)


LAYER = Layer(
    name="buildings",
    title_zh="建筑",
    title_en="Buildings",
    description="Every building with its use, floors, households and elderly residents.",
    geometry_type="Polygon",
    attributes=Attributes,
    tags=TagVocabulary(
        keys={**COMMON_KEYS, "project": ("旧住房修缮", "适老化改造", "消防安全工程", "征收地块")},
        labels=("老旧高层", "烂尾楼", "安全观察"),
    ),
    style=Style(color="#7f7f7f", fill_color="#bdbdbd", weight=0.8, fill_opacity=0.6),
    tile_attributes=("use", "floors", "households"),
    edit_roles=("worker", "planner", "commander", "admin"),
    map_min_zoom=15,
)
