"""Streets: the network planners measure walking and fire-engine distances along."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    road_class: Literal["main", "secondary", "branch", "alley"] = Field(title="道路等级 Road class")
    width_m: float = Field(title="宽度(米) Width m", gt=0, le=100)
    fire_engine: bool = Field(
        title="消防车可通行 Fire engine", default=True, description="wide enough for a fire engine"
    )


LAYER = Layer(
    name="streets",
    title_zh="道路",
    title_en="Streets",
    description="Street centre lines, one feature per segment between junctions.",
    geometry_type="LineString",
    attributes=Attributes,
    tags=TagVocabulary(keys=COMMON_KEYS, labels=("单行道", "步行街")),
    style=Style(color="#444444", weight=2.0),
    tile_attributes=("road_class",),
    edit_roles=("worker", "planner", "commander", "admin"),
)
