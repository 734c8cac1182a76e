"""Water (水系): rivers and other water bodies, drawn under the twin so that the map needs no
basemap from the internet. A river is often a subdistrict's edge, so water may lie outside the
micro-grids."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["river", "canal", "lake", "pond"] = Field(title="类型 Kind")
    width_m: float | None = Field(title="宽度(米) Width m", default=None, gt=0, le=5000)


LAYER = Layer(
    name="water",
    title_zh="水系",
    title_en="Water",
    description="Rivers and water bodies, in and around the subdistrict.",
    geometry_type="MultiPolygon",
    attributes=Attributes,
    tags=TagVocabulary(keys=COMMON_KEYS, labels=("通航", "景观水体")),
    style=Style(color="#6baed6", fill_color="#c6dbef", weight=1.0, fill_opacity=0.7),
    tile_attributes=("kind",),
    group="base",
    edit_roles=("admin",),
)
