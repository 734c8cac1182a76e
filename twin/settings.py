"""Settings from the environment (prefix ``TWIN_``), created once at the edge and passed in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from twin.users import Role

DEFAULT_TIME_ZONE = "Asia/Shanghai"
# a browser's Origin: scheme, host and maybe port, nothing after
_ORIGIN = re.compile(r"https?://[^/\s?#*]+")
# a PostgreSQL URL, libpq's or SQLAlchemy's spelling (the driver is psycopg's either way)
_POSTGRES_URL = re.compile(r"(postgres|postgresql|postgresql\+psycopg)://\S+")


def _desktop_gis_roles() -> list[Role]:
    """Who edits from a desktop GIS: planners (buildings, streets, charging points) and admins
    (every layer, the micro-grids and areas included); workers and commanders use the pages."""
    return ["planner", "admin"]


class Settings(BaseSettings):
    """Everything Twin can be told from outside; see the README for each setting."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="An existing PostGIS database; unset: Twin runs its own cluster in data_dir.",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path(".twin")
    db_port: int = Field(
        default=5432,
        ge=1,
        le=65535,
        description="Port number naming the local cluster's socket; it never listens on TCP.",
    )
    db_name: str = "twin"
    pg_bindir: Path | None = Field(
        default=None, description="PostgreSQL's bin directory; found under /usr/lib/postgresql."
    )
    app_role: str = Field(
        default="twin_app",
        description="Database role the service connects as in the local cluster (not the owner).",
    )
    token_minutes: int = Field(default=12 * 60, ge=1, description="Lifetime of a bearer token.")
    demo_password: str = Field(
        default="twin-demo",
        description="Password of the sample twin's demo accounts (used by `twin sample`).",
    )
    # amap: 高德 tiles, in GCJ-02: the live map shifts the twin's WGS-84 features onto them
    # when it draws them (the data never changes)
    basemap: Literal["none", "osm", "tianditu", "amap"] = "none"
    tianditu_key: str | None = None
    map_review_number: str | None = None
    map_source: str | None = None  # 数据来源, shown on the map beside the 审图号
    sample_spec: str = Field(
        default="nanmatou.toml",
        description="The sample twin's spec: a path, or the name of a spec shipped in data/.",
    )
    time_zone: str = Field(
        default=DEFAULT_TIME_ZONE,
        description="The subdistrict's IANA time zone: change reports count its calendar days.",
    )
    photo_max_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1,
        description="Largest photo an edit may carry, in bytes: a tablet photo, not a raw scan.",
    )
    import_max_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024,
        ge=1,
        description="Largest GIS file an admin may upload to POST /collections/{layer}/import "
                    "(the CLI's `twin import` reads files of any size).",
    )

    caller_retention_days: int = Field(
        default=365,
        ge=1,
        description="Days a hotline caller's name and phone are kept after their order ended "
                    "(closed or sent back); `twin hotline erase` erases older ones.",
    )

    backup_dir: Path | None = Field(
        default=None,
        description="The pgBackRest repository of `twin db backup`; unset: backups/ beside the "
                    "cluster (.twin/backups). It belongs on another disk than the cluster's.",
    )
    backup_retention_full: int = Field(
        default=2,
        ge=1,
        description="Full backups kept (with every backup and WAL segment they need); an older "
                    "one is expired after the next backup, and the oldest moment one can "
                    "restore to moves forward with it.",
    )

    # NoDecode: the environment gives a comma-separated list, not JSON
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Web origins (https://host[:port]) whose pages may call the API from a "
                    "browser (CORS); comma-separated; empty: none, the default.",
    )

    implicit_if_match_roles: Annotated[list[Role], NoDecode] = Field(
        default_factory=_desktop_gis_roles,
        description="Roles whose feature edits may leave out If-Match, as QGIS does: such an "
                    "edit is based on the newest version of the feature their token read (or "
                    "wrote), so a change by anyone else since is still refused (412); "
                    "comma-separated; empty: If-Match is required of every role.",
    )

    # NoDecode: comma-separated, as cors_origins
    replica_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Read replicas of the database (`twin db replica add` prints one's URL), "
                    "comma-separated: planners' and commanders' reads that may be a second "
                    "old (items, the map's and the board's figures, reports, analyses) go to "
                    "them; empty: every read goes to the database, as before.",
    )
    replica_max_lag_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds a read replica may trail the database and still be read from; "
                    "one further behind is skipped until it catches up.",
    )

    @field_validator("cors_origins", "implicit_if_match_roles", "replica_urls", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """The environment gives a list as comma-separated text."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each a browser's Origin, named: a typo (or a path, or *) would otherwise just never
        match, and the page's calls fail in the browser with no word from the server."""
        origins = [origin.strip().rstrip("/") for origin in value]
        wrong = [origin for origin in origins if not _ORIGIN.fullmatch(origin)]
        if wrong:
            raise ValueError(f"not an origin: {', '.join(wrong)}; name each as scheme://host"
                             "[:port], e.g. https://gis.example.cn (no path, no *)")
        return origins

    @field_validator("replica_urls")
    @classmethod
    def _postgres_urls(cls, value: list[str]) -> list[str]:
        """Each a PostgreSQL URL: anything else would only surface as a replica skipped."""
        wrong = [url for url in value if not _POSTGRES_URL.match(url)]
        if wrong:
            raise ValueError(f"not a PostgreSQL URL: {', '.join(wrong)}; name each as "
                             "postgresql://user@host[:port]/database (or as `twin db replica "
                             "add` prints it)")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        """A typo would otherwise surface only at `twin db migrate`, inside PostgreSQL."""
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; e.g. Asia/Shanghai") from None
        return value

    @model_validator(mode="after")
    def _basemap_usable(self) -> Settings:
        """Tianditu serves no tile without a key: say so at start, not when a map is drawn."""
        if self.basemap == "tianditu" and not self.tianditu_key:
            raise ValueError("TWIN_BASEMAP=tianditu needs TWIN_TIANDITU_KEY (a key from "
                             "天地图 Tianditu)")
        return self

    @field_validator("data_dir", "backup_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        """The cluster (and pgBackRest, from cron) is started from other working directories
        too: pin the path now."""
        return value and value.expanduser().resolve()
