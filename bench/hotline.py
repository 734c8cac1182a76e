"""12345 hotline orders at scale: importing ten half years of the city system's export, the
rates by micro-grid, placing one address and how often a caller's address lands on the
building meant, against the issue's goals (issue 20).

    .venv/bin/python -m bench.hotline        # or: make bench-hotline

The database ``twin_bench_hotline`` is made once in Twin's own cluster with ``twin sample``
(the sample twin, its half year of cases and its 2,773 orders, 2026-01-01 to 06-30) and kept
as the template of every run: each run copies it to ``twin_bench_hotline_run`` (dropped at the
end unless ``HOTLINE_KEEP=1``), so that (a) always imports into a twin holding the sample's
orders only. Both get ``jit = off``, as the other bench databases do.

(a) ``twin hotline import FILE`` end to end (a process, as IT staff run it) of 27,730 orders:
    ten half years (2021-07-01 to 2026-07-01) of generated calls written as the city system
    exports them (a UTF-8 CSV headed 工单编号, 受理时间, 诉求类型, 责任规则, 来源渠道, 案件类别,
    诉求内容, 诉求地址, 来电人, 联系电话; types, rules and channels by their Chinese names),
    made once into ``.twin/bench/hotline/`` and reused;
(b) ``twin.hotline.kpis.kpis`` for the half year 2026-01-01 to 07-01 by grid, after (a);
(c) ``twin.hotline.places.place`` of one address, the sample's callers' words in turn;
(d) of the sample's orders whose words keep their building's door plate, the share placed on
    that building (``twin.sample.orders.placed_right``).

Knobs: ``HOTLINE_DB``, ``HOTLINE_ORDERS`` (27,730), ``HOTLINE_RUNS`` (20), ``HOTLINE_KEEP``,
``HOTLINE_JIT``. Results: ``.twin/bench/hotline/<stamp>.json``.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy import Connection, text

from twin.hotline.kpis import kpis
from twin.hotline.places import place
from twin.sample.history import Window
from twin.sample.orders import OrderPlan, placed_right, plan_orders
from twin.sample.spec import SampleSpec, load_spec
from twin.settings import Settings
from twin.store.db import database_urls, libpq_conninfo, make_engine

ROOT = Path(__file__).resolve().parents[1]
TWIN = ROOT / ".venv" / "bin" / "twin"
OUT = ROOT / ".twin" / "bench" / "hotline"
SPEC = ROOT / "data" / "nanmatou.toml"
RUNS = int(os.environ.get("HOTLINE_RUNS", "20"))
ZONE = ZoneInfo("Asia/Shanghai")
FROM, TO = datetime(2026, 1, 1, tzinfo=ZONE), datetime(2026, 7, 1, tzinfo=ZONE)
HALF_YEARS = 10
HEADINGS = ("工单编号", "受理时间", "诉求类型", "责任规则", "来源渠道", "案件类别", "诉求内容",
            "诉求地址", "来电人", "联系电话")
CHANNEL_ZH = {"phone": "电话", "web": "网站", "app": "随申办", "wechat": "微信",
              "other": "其他"}
GOALS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "(a)": ("< 60 s", lambda v: v < 60_000), "(b)": ("< 100 ms", lambda v: v < 100),
    "(c)": ("< 5 ms", lambda v: v < 5), "(d)": (">= 95 %", lambda v: v >= 95)}


def _env(db: str) -> dict[str, str]:
    return {**os.environ, "TWIN_DB_NAME": db}


def _twin(db: str, *args: str) -> None:
    print("$ twin", *args, flush=True)
    subprocess.run([str(TWIN), *args], env=_env(db), cwd=ROOT, check=True)  # noqa: S603


def _maintenance(db: str) -> str:
    admin = database_urls(Settings(db_name=db)).admin
    return libpq_conninfo(admin).replace(f"dbname={db}", "dbname=postgres")


def prepare_copy(base: str, run: str, jit: bool = False) -> None:
    """The template ``base`` holding the sample with its cases and orders (made once), and
    ``run``, a fresh copy of it (bench.fuzz fuzzes one too); JIT off unless ``jit``."""
    _twin(base, "db", "start")
    jit_setting = "RESET jit" if jit else "SET jit = off"
    with psycopg.connect(_maintenance(base), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (base,)
                        ).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{base}"')
        conn.execute(f'ALTER DATABASE "{base}" {jit_setting}')
    _twin(base, "db", "migrate")
    conninfo = libpq_conninfo(database_urls(Settings(db_name=base)).admin)
    with psycopg.connect(conninfo) as conn:
        features = (conn.execute("SELECT count(*) FROM twin.features").fetchone() or (0,))[0]
    if not features:
        print("loading the sample with its cases and hotline orders: a few minutes, once",
              flush=True)
        _twin(base, "sample")
    with psycopg.connect(_maintenance(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{run}" TEMPLATE "{base}"')
        conn.execute(f'ALTER DATABASE "{run}" {jit_setting}')


def drop_database(name: str) -> None:
    """Drop a copy made by ``prepare_copy``."""
    with psycopg.connect(_maintenance(name), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _export(url: str, spec: SampleSpec, n: int) -> Path:
    """The city system's export of ``n`` orders over ten half years (made once): each half
    year the sample's generator's calls, numbered BH<yyyymmdd><nnnn> apart from the
    sample's own SH numbers."""
    path = OUT / f"orders-{n}.csv"
    if path.is_file():
        return path
    assert spec.history is not None
    OUT.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, pool_size=1)
    names: dict[str, dict[str, str]] = {}
    rows: list[list[str]] = []
    with engine.connect() as conn:
        for table in ("order_kinds", "order_duties"):
            names[table] = {r.code: r.name_zh for r in conn.execute(text(
                f"SELECT code, name_zh FROM twin.{table}"))}  # noqa: S608
        per = n // HALF_YEARS
        for k in range(HALF_YEARS):
            year, month = 2021 + (k + 1) // 2, 7 if k % 2 == 0 else 1
            start = datetime(year, month, 1, tzinfo=ZONE)
            end = datetime(year + (month == 7), 1 if month == 7 else 7, 1, tzinfo=ZONE)
            count = per if k < HALF_YEARS - 1 else n - per * (HALF_YEARS - 1)
            print(f"  generating {count:,} orders for {start:%Y-%m} .. {end:%Y-%m}", flush=True)
            plan = plan_orders(conn, Window(start, end, spec.history), count, 1000 + k,
                               spec.name_zh, prefix="BH")
            for call in plan.calls:
                o = call.order
                rows.append([o.order_number, f"{o.received_at.astimezone(ZONE):%Y-%m-%d %H:%M:%S}",
                             names["order_kinds"][o.kind], names["order_duties"][o.duty],
                             CHANNEL_ZH[o.channel], o.category or "", o.words, o.address,
                             o.caller_name or "", o.caller_phone or ""])
    engine.dispose()
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADINGS)
        writer.writerows(rows)
    return path


def _timed(run: Callable[[], Any], n: int) -> dict[str, float]:
    """Median and p90 milliseconds of ``n`` runs after one warm-up."""
    run()
    took = []
    for _ in range(n):
        start = time.perf_counter()
        run()
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return {"median_ms": statistics.median(took), "p90_ms": took[int(0.9 * (n - 1))], "n": n}


def measure(run_db: str, csv_path: Path, spec: SampleSpec) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    rows = sum(1 for _ in csv_path.open(encoding="utf-8")) - 1
    print(f"  (a) twin hotline import ({rows:,} orders) ...", flush=True)
    start = time.perf_counter()
    _twin(run_db, "hotline", "import", str(csv_path))
    took = (time.perf_counter() - start) * 1000
    results[f"(a) twin hotline import, {rows:,} orders (end to end)"] = {
        "median_ms": took, "p90_ms": took, "n": 1}
    urls = database_urls(Settings(db_name=run_db))
    with psycopg.connect(libpq_conninfo(urls.admin), autocommit=True) as pg:
        for table in ("twin.orders", "twin.order_events", "twin.order_callers"):
            pg.execute(f"VACUUM ANALYZE {table}")
    app = make_engine(urls.app, pool_size=1)
    admin = make_engine(urls.admin, pool_size=1)
    try:
        print("  (b) the rates by grid ...", flush=True)
        with app.connect() as conn:
            def rates() -> None:
                kpis(conn, FROM, TO, "grid")
                conn.rollback()
            results["(b) kpis() half year by grid"] = _timed(rates, RUNS)
            groups = len(kpis(conn, FROM, TO, "grid")["groups"])
        print(f"      {groups} grids", flush=True)
        with admin.connect() as conn:
            plan = plan_orders(conn, _sample_window(spec), spec.counts.orders_received,
                               spec.seed, spec.name_zh)
            print("  (c) placing one address ...", flush=True)
            results["(c) place() one address"] = _placing(conn, plan)
            print("  (d) the sample's addresses on the right building ...", flush=True)
            right, kept = placed_right(conn, plan)
        results[f"(d) right building, {right:,} of {kept:,} with a door plate"] = {
            "share_pct": 100 * right / kept, "n": kept}
    finally:
        app.dispose()
        admin.dispose()
    return results


def _sample_window(spec: SampleSpec) -> Window:
    """The period the sample's orders were generated over (a fresh sample: the spec's)."""
    assert spec.history is not None
    first, last = spec.history.start, spec.history.end + timedelta(days=1)
    zone = spec.history.timezone
    return Window(datetime(first.year, first.month, first.day, tzinfo=zone),
                  datetime(last.year, last.month, last.day, tzinfo=zone), spec.history)


def _placing(conn: Connection, plan: OrderPlan) -> dict[str, float]:
    """``place`` of one address at a time, the sample's callers' words in turn."""
    said = [c.order.address for c in plan.calls]
    place(conn, said[0])
    took = []
    for address in said[:max(RUNS * 10, 200)]:
        start = time.perf_counter()
        place(conn, address)
        took.append((time.perf_counter() - start) * 1000)
    took.sort()
    return {"median_ms": statistics.median(took), "p90_ms": took[int(0.9 * (len(took) - 1))],
            "n": len(took)}


def main() -> int:
    base = os.environ.get("HOTLINE_DB", "twin_bench_hotline")
    run_db = f"{base}_run"
    n = int(os.environ.get("HOTLINE_ORDERS", "27730"))
    spec = load_spec(SPEC)
    started = time.perf_counter()
    prepare_copy(base, run_db, jit=os.environ.get("HOTLINE_JIT") == "1")
    csv_path = _export(database_urls(Settings(db_name=base)).admin, spec, n)
    print(f"database and export ready in {time.perf_counter() - started:.0f} s", flush=True)
    try:
        results = measure(run_db, csv_path, spec)
        with psycopg.connect(libpq_conninfo(database_urls(Settings(db_name=run_db)).admin)
                             ) as conn:
            facts = dict(zip(("orders", "events", "queued", "jit"), conn.execute(
                "SELECT count(*), (SELECT count(*) FROM twin.order_events), "
                "count(*) FILTER (WHERE geom IS NULL), current_setting('jit') FROM twin.orders"
            ).fetchone() or (), strict=True))
    finally:
        if os.environ.get("HOTLINE_KEEP") != "1":
            drop_database(run_db)
    print(f"\n{run_db}: {facts['orders']:,} orders ({facts['queued']:,} in the queue), "
          f"{facts['events']:,} order events; jit {facts['jit']}\n")
    print("| measure | median | p90 | n | goal | met |\n|---|---:|---:|---:|---:|---|")
    for name, cell in results.items():
        goal, met = GOALS[name[:3]]
        if "share_pct" in cell:
            value = cell["share_pct"]
            print(f"| {name} | {value:.1f} % | | {cell['n']:,} | {goal} | "
                  f"{'yes' if met(value) else 'NO'} |")
            continue
        value = cell["median_ms"]
        shown = (f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.1f} ms",
                 f"{cell['p90_ms'] / 1000:.1f} s" if value >= 10_000
                 else f"{cell['p90_ms']:.1f} ms")
        print(f"| {name} | {shown[0]} | {shown[1]} | {cell['n']:,} | {goal} | "
              f"{'yes' if met(value) else 'NO'} |")
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"{stamp}.json").write_text(json.dumps(
        {"db": run_db, "orders_imported": n, "facts": facts, "results": results}, indent=2,
        default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
