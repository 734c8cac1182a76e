"""E-bike charging points: underground, elevated-floor and street sites, safe or hazardous."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from layers._vocab import COMMON_KEYS
from twin.layer import Layer, Style, TagVocabulary


class Attributes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_type: Literal[
        "underground",
        "semi_underground",
        "elevated_floor",
        "street_cabinet",
        "street_pile",
        "centralized_parking",
    ] = Field(title="类型 Site type")
    sockets: int = Field(title="插座数 Sockets", default=10, ge=1, le=500)
    state: Literal["safe", "hazard", "out_of_service"] = Field(default="safe", title="状态 State")
    remediated: bool = Field(
        title="已整改 Remediated", default=False, description="in the report's remediation list"
    )


LAYER = Layer(
    name="charging_points",
    title_zh="电动自行车充电点",
    title_en="E-bike charging points",
    description="Charging sites for e-bikes; hazards (indoor charging, flying leads) stand out.",
    geometry_type="Point",
    attributes=Attributes,
    tags=TagVocabulary(keys=COMMON_KEYS, labels=("地下空间", "架空层", "新建")),
    style=Style(
        color="#1f78b4",
        radius=5,
        fill_opacity=0.8,
        by_state={"safe": "#1f78b4", "hazard": "#e31a1c", "out_of_service": "#6a6a6a"},
    ),
    state_field="state",
    state_labels={
        "safe": "安全 safe",
        "hazard": "隐患 hazard",
        "out_of_service": "停用 out of service",
    },
    tile_attributes=("site_type", "state"),
    edit_roles=("worker", "planner", "commander", "admin"),
    max_gps_error_m=20.0,
    # Default coverage: an e-bike is pushed to a charger, so about one block (an assumption).
    coverage_within_m=200.0,
    # The board counts safe chargers only: a hazard or one out of service serves nobody.
    coverage_state="safe",
    map_cluster=True,
)
