"""A subdistrict's sample spec (``data/*.toml``): its names, codes, counts, centre and the
period a generated history covers, read and checked. The generator (``twin.sample.generator``)
makes a twin from it."""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt, TypeAdapter, ValidationError

from twin.errors import InvalidInput, Problem

Names = Annotated[tuple[str, ...], Field(min_length=1)]


@dataclass(frozen=True)
class StreetNames:
    """Names for street lines along the river and across it, major and minor, in order."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    riverside: str
    main_along: Names
    main_across: Names
    minor_along: Names
    minor_across: Names


@dataclass(frozen=True)
class SampleCounts:
    """How many of each thing one tile (scale 1) holds, mostly the work report's figures."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    micro_grids: PositiveInt
    squads: PositiveInt
    buildings: PositiveInt
    waste_points: NonNegativeInt
    waste_off_hour: NonNegativeInt
    waste_micro_update: NonNegativeInt
    model_waste_areas: NonNegativeInt
    charging_underground: NonNegativeInt
    charging_elevated: NonNegativeInt
    charging_street: NonNegativeInt
    # fire lanes (消防车通道) into each block of housing, entering it apart
    fire_lanes_per_estate: NonNegativeInt
    old_highrises: NonNegativeInt
    aging_retrofit: NonNegativeInt
    housing_repair: NonNegativeInt
    # the layers of the report's safety work and of the street front (twin.sample.places);
    # 0: none
    gas_hazards: NonNegativeInt = 0
    escape_checks: NonNegativeInt = 0      # premises checked in 拆窗破网 ...
    escape_openings: NonNegativeInt = 0    # ... and the openings made at them
    emergency_shelters: NonNegativeInt = 0
    key_places: NonNegativeInt = 0
    shops: NonNegativeInt = 0
    # cases filed (立案) over the [history] period by `twin sample` (the reports it does not
    # file come on top); 0: none
    cases_filed: NonNegativeInt = 0
    # 12345 hotline orders received over the [history] period by `twin sample`; 0: none
    orders_received: NonNegativeInt = 0


@dataclass(frozen=True)
class ProjectAreas:
    """Committee codes of the areas where the report places a housing project."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    housing_repair: str
    unfinished_building: str
    expropriation: str


@dataclass(frozen=True)
class HistorySpec:
    """The period a generated history (``twin sample --history``) is spread over: dates
    inclusive, in the place's time zone; most edits fall within the working hours."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    start: date
    end: date
    timezone: ZoneInfo
    working_hours: tuple[Annotated[int, Field(ge=0, le=23)], Annotated[int, Field(ge=1, le=24)]]

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("end is before start")
        if self.working_hours[0] >= self.working_hours[1]:
            raise ValueError("working hours end before they start")


@dataclass(frozen=True)
class CaseRulesSpec:
    """The files of the rules cases follow (beside the spec): categories with departments,
    the working-time calendar, and the 12345 hotline's rules (orders' kinds and duties)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    categories: Path
    calendar: Path
    hotline: Path | None = None


@dataclass(frozen=True)
class SampleSpec:
    """A parsed spec file: the place, its committees (code, name) and its counts."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    name: str
    name_zh: str
    code: str
    seed: NonNegativeInt
    centre: tuple[Annotated[float, Field(ge=-180, le=180)], Annotated[float, Field(ge=-84, le=84)]]
    area_km2: Annotated[float, Field(gt=0.2, le=50)]
    aspect: Annotated[float, Field(ge=0.25, le=4)]
    river: str
    river_edge: Literal["west", "east", "north", "south"]
    river_width_m: Annotated[float, Field(gt=10, le=3000)]
    committees: Annotated[tuple[tuple[str, str], ...], Field(min_length=1)]
    streets: StreetNames
    counts: SampleCounts
    projects: ProjectAreas
    history: HistorySpec | None = None
    cases: CaseRulesSpec | None = None


def spec_path(name: str | Path) -> Path:
    """A spec file: ``name`` as a path when it exists, else the file of that name among the
    specs that ship with Twin (the repository's ``data/``, installed as ``twin/sample/data``)."""
    given = Path(name)
    if given.exists():
        return given
    here = Path(__file__).resolve().parent
    for shipped in (here / "data", here.parents[1] / "data"):  # installed, then a checkout
        if (shipped / given).is_file():
            return shipped / given
    return given  # load_spec says it cannot be read


def load_spec(path: Path) -> SampleSpec:
    """Read a spec file; its ``committees`` names a CSV (code,name,...) beside it."""
    try:
        with path.open("rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read the sample spec: {e}",
                           [Problem("spec", str(path), str(e), "无法读取规格文件")]) from None
    csv_path = path.parent / str(raw.get("committees", ""))
    if not csv_path.is_file():
        raise InvalidInput(f"{path}: committees file {csv_path} not found",
                           [Problem("committees", str(csv_path), "no such file", "文件不存在")])
    with csv_path.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f)
        if not {"code", "name"} <= set(rows.fieldnames or ()):
            raise InvalidInput(f"{csv_path}: needs columns code and name",
                               [Problem("committees", str(csv_path), "needs columns code,name",
                                        "缺少 code 或 name 列")])
        raw["committees"] = [(row["code"], row["name"]) for row in rows]
    if isinstance(raw.get("cases"), dict):  # file names relative to the spec
        raw["cases"] = {k: path.parent / str(v) for k, v in raw["cases"].items()}
    try:
        spec = TypeAdapter(SampleSpec).validate_python(raw)
    except ValidationError as e:
        raise InvalidInput(f"{path}: not a valid sample spec", [
            Problem(".".join(str(p) for p in err["loc"]), err.get("input"), err["msg"], "规格无效")
            for err in e.errors()]) from None
    problems = _spec_problems(spec)
    if problems:
        raise InvalidInput(f"{path}: inconsistent sample spec", problems)
    return spec


def _spec_problems(spec: SampleSpec) -> list[Problem]:
    """What the types cannot say: codes that must exist, counts that must fit in others."""
    codes = [code for code, _ in spec.committees]
    found = [Problem("committees", code, "duplicate committee code", "居委会代码重复")
             for i, code in enumerate(codes) if code in codes[:i]]
    for key, code in vars(spec.projects).items():
        if code not in codes:
            found.append(Problem(f"projects.{key}", code, "not a committee code", "不是居委会代码"))
    c = spec.counts
    for key, part, whole in (("micro_grids", len(codes), c.micro_grids),
                             ("squads", c.squads, len(codes)),
                             ("model_waste_areas", c.model_waste_areas, len(codes)),
                             ("waste_off_hour", c.waste_off_hour, c.waste_points),
                             ("waste_micro_update", c.waste_micro_update, c.waste_points)):
        if part > whole:
            found.append(Problem(f"counts.{key}", part, f"{part} exceeds {whole}", "数量不匹配"))
    if c.escape_openings and not c.escape_checks:
        found.append(Problem("counts.escape_openings", c.escape_openings,
                             "openings need premises checked (escape_checks) to lie at",
                             "逃生口须属于排查场所"))
    return found
