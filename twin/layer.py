"""What a layer is: the contract each file in ``layers/`` fills in (read by twin.layerspec)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from twin.errors import Problem

# What features are counted by: their micro-grid, residential area or subdistrict, each kept
# in a column of its own (derived from the geometry when the feature is written), and the
# layer whose outlines give each its codes and names.
Grouping = Literal["grid", "area", "subdistrict"]

# The fields every feature has next to its layer's attributes (twin.fields() in SQL), declared
# here once: those an edit writes ("photos" lives in props), those the triggers derive from
# the geometry, and those the database stamps on every write. No attribute may take a name.
WRITTEN_FIELDS = ("name", "tags", "geometry", "photos")
DERIVED_FIELDS = ("micro_grid", "residential_area")
STAMPED_FIELDS = ("id", "version", "updated", "changed_by")
COMMON_FIELDS = frozenset({*WRITTEN_FIELDS, *DERIVED_FIELDS, *STAMPED_FIELDS})
GROUP_COLUMNS: dict[Grouping, str] = {"grid": "grid_code", "area": "area_code",
                                      "subdistrict": "subdistrict_code"}
GROUP_LAYERS: dict[Grouping, str] = {"grid": "micro_grids", "area": "residential_areas",
                                     "subdistrict": "subdistricts"}
GROUPS_ZH = "分组须为grid、area或subdistrict"

GeometryType = Literal["Point", "LineString", "Polygon", "MultiPolygon"]
# "twin": features of the subdistrict, each inside a micro-grid; "areas": the areas and grids
# themselves; "base": what surrounds them on the map (water), inside or not.
Group = Literal["twin", "areas", "base"]

# GB/T 30428 (digital urban management): component classes and component states.
COMPONENT_CLASSES = ("公用设施", "道路交通", "市容环境", "园林绿化", "房屋土地", "其他设施")
COMPONENT_STATES = ("完好", "破损", "丢失", "占用")


@dataclass(frozen=True)
class TagVocabulary:
    """Tags are ``key=value`` facts from ``keys`` or bare labels from ``labels``."""

    keys: dict[str, tuple[str, ...]]
    labels: tuple[str, ...] = ()

    def problems(self, tags: list[str]) -> list[Problem]:
        """Each tag that is not in the vocabulary, with the reason."""
        found: list[Problem] = []
        for tag in tags:
            key, sep, value = tag.partition("=")
            if not sep:
                if tag not in self.labels:
                    found.append(Problem("tags", tag, f"unknown label; known: {list(self.labels)}",
                                         "未知标签"))
            elif key not in self.keys:
                found.append(Problem("tags", tag, f"unknown tag key {key!r}; known: "
                                     f"{sorted(self.keys)}", "未知标签键"))
            elif value not in self.keys[key]:
                found.append(Problem("tags", tag, f"value {value!r} not allowed for {key!r}; "
                                     f"allowed: {list(self.keys[key])}", "标签值不在词表中"))
        return found


@dataclass(frozen=True)
class Style:
    """How the map draws the layer; ``by_state`` colours features by their state attribute."""

    color: str
    fill_color: str | None = None
    weight: float = 2.0
    radius: float = 5.0
    fill_opacity: float = 0.4
    by_state: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layer:
    """One layer of the twin, declared once in ``layers/<name>.toml`` (twin.layerspec)."""

    name: str
    title_zh: str
    title_en: str
    description: str
    geometry_type: GeometryType
    attributes: type[BaseModel]
    tags: TagVocabulary
    style: Style
    state_field: str | None = None
    state_labels: dict[str, str] = field(default_factory=dict)
    tile_attributes: tuple[str, ...] = ()
    group: Group = "twin"
    # Who may edit it (workers only inside their own micro-grids); planners edit the layers
    # that planning changes.
    edit_roles: tuple[str, ...] = ("worker", "commander", "admin")
    # A position from a GPS fix less accurate than this (metres) is refused; None: no check.
    max_gps_error_m: float | None = None
    # Coverage analysis (twin/analysis/coverage.py): the default walk along the street network, in
    # metres, within which a building counts as served by this layer; None: no default.
    coverage_within_m: float | None = None
    # The state a facility must be in to serve, on the board's coverage panel (a hazardous
    # charger serves nobody); None: every feature counts. Analyses take a state only when asked.
    coverage_state: str | None = None
    # The live map (/map) loads this layer for the visible box from this zoom level on: a
    # layer of many features waits until the box holds a street's worth, not a district.
    map_min_zoom: int = 0
    # ... and gathers its points into clusters until one can see them apart (a dense layer).
    map_cluster: bool = False

    @property
    def title(self) -> str:
        return f"{self.title_zh} {self.title_en}"

    def field_label(self, key: str) -> str:
        """The bilingual label of an attribute (its Field title), or its name."""
        info = self.attributes.model_fields.get(key)
        return (info.title if info else None) or key

    @property
    def postgis_type(self) -> str:
        """The name PostGIS's GeometryType() gives this layer's geometries."""
        return self.geometry_type.upper()
