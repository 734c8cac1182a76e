"""Every knob of a run, read once from the environment (see bench/README.md)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERY_ORDER = ("Q1", "Q2", "Q3", "Q3b", "Q4", "Q5")
TARGET_ORDER = ("twin", "tipg", "pygeoapi", "floor", "floor-ref")
HTTP_TARGETS = ("twin", "tipg", "pygeoapi")
FLOOR_TARGETS = ("floor", "floor-ref")  # SQL alone, read by psycopg (bench/floor.py)


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _choice(name: str, default: tuple[str, ...], known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma (or space) separated subset of ``known``, kept in ``known``'s order."""
    raw = os.environ.get(name, "").replace(" ", ",")
    asked = [part for part in raw.split(",") if part]
    if not asked:
        return default
    folded = {k.lower(): k for k in known}
    unknown = [a for a in asked if a.lower() not in folded]
    if unknown:
        raise SystemExit(f"{name}: unknown {unknown}; choose from {', '.join(known)}")
    chosen = {folded[a.lower()] for a in asked}
    return tuple(k for k in known if k in chosen)


@dataclass(frozen=True)
class Config:
    """One run's settings; ``from_env`` documents the variable of each."""

    repo: Path
    work: Path
    results: Path
    db_name: str
    scale: int
    subdistricts: int | None  # the sample's copies grouped into this many (None: one each)
    targets: tuple[str, ...]
    queries: tuple[str, ...]
    duration: int
    warmup: int
    conns: int
    wrk_timeout: int
    check_n: int
    seed: int
    n_centres: int
    q3_use: str
    pg_tuning: bool
    quiet_max: float
    quiet_wait: float
    retries: int
    memcheck: bool
    mem_pages: int
    tipg_spec: str
    pygeoapi_spec: str
    ports: dict[str, int]
    twin_user: str
    twin_password: str
    keep_db: bool
    base_python: str

    def subdistricts_args(self) -> list[str]:
        """``twin sample``'s option grouping the copies into subdistricts, when set."""
        return ["--subdistricts", str(self.subdistricts)] if self.subdistricts else []

    @classmethod
    def from_env(cls) -> Config:
        work = Path(_env("BENCH_WORK", str(REPO / ".twin" / "bench"))).resolve()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        results = Path(_env("RESULTS", str(work / "results" / stamp))).resolve()
        base = _env("PORT_BASE", "18680")
        return cls(
            repo=REPO,
            work=work,
            results=results,
            db_name=_env("TWIN_DB_NAME", "twin_bench"),
            scale=int(_env("BENCH_SCALE", "20")),
            subdistricts=int(_env("BENCH_SUBDISTRICTS", "0")) or None,
            targets=_choice("TARGETS", TARGET_ORDER, TARGET_ORDER),
            queries=_choice("QUERIES", QUERY_ORDER, QUERY_ORDER),
            duration=int(_env("DURATION", "10")),
            warmup=int(_env("WARMUP", "3")),
            conns=int(_env("CONNS", "8")),
            wrk_timeout=int(_env("WRK_TIMEOUT", "30")),
            check_n=int(_env("CHECK_N", "10")),
            seed=int(_env("BENCH_SEED", "7")),
            n_centres=int(_env("BENCH_CENTRES", "1500")),
            q3_use=_env("Q3_USE", "auto"),
            pg_tuning=_env("PG_TUNING", "1") != "0",
            quiet_max=float(_env("QUIET_MAX", "0.10")),
            quiet_wait=float(_env("QUIET_WAIT", "10")),
            retries=int(_env("RETRIES", "1")),
            memcheck=_env("MEMCHECK", "1") != "0",
            mem_pages=int(_env("MEM_PAGES", "5")),
            tipg_spec=_env("TIPG_SPEC", "tipg==1.6.1"),
            pygeoapi_spec=_env("PYGEOAPI_SPEC", "pygeoapi==0.21.0"),
            ports={"twin": int(base), "tipg": int(base) + 1, "pygeoapi": int(base) + 2},
            twin_user=_env("BENCH_TWIN_USER", "planner"),
            twin_password=_env("TWIN_DEMO_PASSWORD", "twin-demo"),
            keep_db=_env("BENCH_KEEP_DB", "0") != "0",
            # venvs of tipg and pygeoapi are made from the interpreter behind the project's venv
            base_python=_env("BENCH_PYTHON", getattr(sys, "_base_executable", sys.executable)),
        )
