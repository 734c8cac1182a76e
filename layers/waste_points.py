"""Waste drop points (垃圾投放点), some open off-hours (误时投放点)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["ok", "full", "damaged", "closed"] = Field(default="ok", title="状态 State")
    bins: int = Field(title="桶数 Bins", default=4, ge=1, le=50)
    off_hour: bool = Field(
        title="误时投放 Off-hours",
        default=False,
        description="误时投放点: open outside fixed hours",
    )


LAYER = Layer(
    name="waste_points",
    title_zh="垃圾投放点",
    title_en="Waste drop points",
    description="Where residents drop sorted waste; full or damaged points need a visit.",
    geometry_type="Point",
    attributes=Attributes,
    tags=TagVocabulary(keys=COMMON_KEYS, labels=("微更新", "示范点", "商铺")),
    style=Style(
        color="#33a02c",
        radius=4,
        fill_opacity=0.8,
        by_state={"ok": "#33a02c", "full": "#e31a1c", "damaged": "#ff7f00", "closed": "#6a6a6a"},
    ),
    state_field="state",
    state_labels={
        "ok": "正常 ok",
        "full": "满溢 full",
        "damaged": "破损 damaged",
        "closed": "关闭 closed",
    },
    tile_attributes=("state", "off_hour"),
    max_gps_error_m=20.0,
    # Default coverage: about a two-minute walk carrying sorted waste (a planning assumption).
    coverage_within_m=120.0,
    map_cluster=True,
)
