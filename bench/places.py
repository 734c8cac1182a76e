"""Placing hotline addresses: milliseconds per address one at a time, addresses per second in
a batch (an import of ~30,000 orders), and how many land on the right building.

    .venv/bin/python -m bench.places        # against the database TWIN_* settings name

The addresses are what callers would say (``twin.sample.addresses``) for buildings drawn
with a fixed seed, so runs compare. Reads only; goals: < 5 ms median, >= 95% right.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from typing import Any

from sqlalchemy import Connection, Engine, text

from twin.hotline.places import Placement, parse_address, place, place_many
from twin.sample.addresses import caller_address, kept_plate
from twin.settings import Settings
from twin.store.db import database_urls, make_engine

SEED = 20260101
IMPORT = 30_000  # the batch size of a day's import from the city system
GOALS = {"median_ms": 5.0, "right_share": 0.95}


# The roads each road meets: what a caller may name beside the building's own.
CROSSING_ROADS = """
SELECT a.name, array_agg(DISTINCT b.name ORDER BY b.name) AS others
  FROM twin.features a JOIN twin.features b
    ON b.layer = 'streets' AND b.name <> a.name AND ST_Intersects(a.geom, b.geom)
 WHERE a.layer = 'streets' AND a.name NOT LIKE '%弄' AND b.name NOT LIKE '%弄'
 GROUP BY a.name"""


def _said(conn: Connection, n: int, seed: int, subdistrict: str
          ) -> tuple[list[Any], list[str]]:
    """``n`` buildings drawn with ``seed`` and what a caller would say for each."""
    rows = conn.execute(text(
        "SELECT id, props ->> 'address' AS address FROM twin.features"
        " WHERE layer = 'buildings' AND props ->> 'address' IS NOT NULL ORDER BY id")).all()
    meets = {r.name: r.others for r in conn.execute(text(CROSSING_ROADS))}
    rng = random.Random(seed)  # noqa: S311 -- reproducible, not secret
    drawn = rng.sample(rows, min(n, len(rows)))
    return drawn, [caller_address(rng, r.address,
                                  meets.get(parse_address(r.address).road, []), subdistrict)
                   for r in drawn]


def _accuracy(drawn: list[Any], said: list[str], placed: list[Placement]) -> dict[str, Any]:
    both = list(zip(drawn, said, placed, strict=True))
    kept = [(r, p) for r, s, p in both if kept_plate(s, r.address)]
    right = sum(p.precision == "building" and p.feature_id == r.id for r, p in kept)
    return {"kept_plate": len(kept), "right": right,
            "right_share": right / len(kept) if kept else 0.0,
            "wrong_buildings": sum(p.precision == "building" and p.feature_id != r.id
                                   for r, _, p in both),
            "placed_share": sum(p.placed for p in placed) / len(placed) if placed else 0.0,
            "by_precision": {k: sum(p.precision == k for p in placed)
                             for k in ("building", "lane", "crossing", "street", None)}}


def measure(engine: Engine, n: int = 2000, seed: int = SEED,
            subdistrict: str = "南码头路街道") -> dict[str, Any]:
    """Time place() address by address and place_many() on an import-sized batch."""
    with engine.connect() as conn:
        drawn, said = _said(conn, n, seed, subdistrict)
        indexed = conn.execute(text(
            "SELECT count(*) > 0 FROM pg_indexes WHERE schemaname = 'twin'"
            " AND indexname = 'features_address_idx'")).scalar_one()
        for words in said[:20]:  # warm the caches and the prepared statements
            place(conn, words)
        ms = []
        for words in said:
            started = time.perf_counter()
            place(conn, words)
            ms.append((time.perf_counter() - started) * 1000)
        batch = (said * (IMPORT // len(said) + 1))[:IMPORT]
        started = time.perf_counter()
        placed = place_many(conn, batch)
        seconds = time.perf_counter() - started
    return {"n": len(said), "seed": seed, "address_index": indexed,
            "median_ms": statistics.median(ms),
            "p95_ms": statistics.quantiles(ms, n=20)[-1] if len(ms) > 1 else ms[0],
            "batch": len(batch), "batch_s": seconds, "batch_rate": len(batch) / seconds,
            **_accuracy(drawn, said, placed[:len(said)])}


def main() -> int:
    engine = make_engine(database_urls(Settings()).app, pool_size=1)
    try:
        r = measure(engine)
    finally:
        engine.dispose()
    ok = r["median_ms"] < GOALS["median_ms"] and r["right_share"] >= GOALS["right_share"]
    print(f"{r['n']:,} caller addresses, seed {r['seed']}, address index "
          f"{'present' if r['address_index'] else 'MISSING'}\n")
    print("| measure | value | goal |\n|---|---|---|")
    print(f"| place(), median | {r['median_ms']:.2f} ms | < {GOALS['median_ms']:g} ms |")
    print(f"| place(), p95 | {r['p95_ms']:.2f} ms | |")
    print(f"| place_many(), {r['batch']:,} at once | {r['batch_s']:.1f} s, "
          f"{r['batch_rate']:,.0f} /s | well under 60 s |")
    print(f"| right building, of {r['kept_plate']:,} that kept a door plate | "
          f"{r['right_share']:.1%} | >= {GOALS['right_share']:.0%} |")
    print(f"| wrong building | {r['wrong_buildings']} | 0 |")
    print(f"| placed at all | {r['placed_share']:.1%} | |")
    print("| by precision | " + ", ".join(f"{k or 'queued'} {v}"
                                          for k, v in r["by_precision"].items()) + " | |")
    return 0 if ok and r["wrong_buildings"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
