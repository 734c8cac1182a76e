"""Residential areas (居民区): one per residential committee, identified by its statistical code."""

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(
        title="编码 Code", pattern=r"^[0-9A-Za-z-]{3,32}$", description="statistical division code"
    )
    committee: str = Field(
        title="居委会 Committee", min_length=1, max_length=80, description="居委会 name"
    )
    households: int = Field(title="户数 Households", default=0, ge=0)
    model_waste_area: bool = Field(
        title="垃圾分类示范 Model waste area", default=False, description="垃圾分类示范居民区"
    )


LAYER = Layer(
    name="residential_areas",
    title_zh="居民区",
    title_en="Residential areas",
    description="Areas of the residential committees; every feature is assigned to one.",
    geometry_type="MultiPolygon",
    attributes=Attributes,
    tags=TagVocabulary(keys=COMMON_KEYS, labels=("新建居民区", "示范居民区")),
    style=Style(color="#6a3d9a", fill_color="#cab2d6", weight=2.5, fill_opacity=0.08),
    tile_attributes=("code", "committee"),
    group="areas",
    edit_roles=("admin",),
)
