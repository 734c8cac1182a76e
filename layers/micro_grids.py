"""Micro-grids (微网格): the unit a grid worker answers for; ``code`` is stable and unique."""

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        title="编码 Code", pattern=r"^[0-9A-Za-z-]{3,40}$", description="stable grid code"
    )
    squad: str | None = Field(
        title="中队 Squad", default=None, max_length=80, description="中队 in charge"
    )


LAYER = Layer(
    name="micro_grids",
    title_zh="微网格",
    title_en="Micro-grids",
    description="The tiling of the subdistrict into grids, each answered for by its workers.",
    geometry_type="MultiPolygon",
    attributes=Attributes,
    tags=TagVocabulary(keys=COMMON_KEYS),
    style=Style(color="#ff7f00", fill_color="#fdbf6f", weight=1.0, fill_opacity=0.05),
    tile_attributes=("code",),
    group="areas",
    edit_roles=("admin",),
)
