"""Siting at the issue's size: 54 new sites among 300 candidates for 3,000 buildings.

    .venv/bin/python -m bench.siting
    SITING_SEEDS=10 SITING_RADIUS=120 .venv/bin/python -m bench.siting

Synthetic instances on a plane, no database: a 2.0 x 1.4 km subdistrict whose buildings
stand mostly in residential compounds (clusters) holding 10-150 households each, the rest
scattered and some without households; candidate sites and existing facilities uniform;
a site covers the buildings within ``SITING_RADIUS`` metres as the crow flies (the coverage
code uses network distance, which this only imitates). For each seed it times
``twin.analysis.siting.solve_exact`` (HiGHS, cold, ``SITING_TIME_LIMIT`` s), ``solve`` (the greedy,
then HiGHS warm-started from it) and ``solve_greedy`` (greedy, 1-swaps and ``SITING_ROUNDS``
perturbation rounds within ``SITING_BUDGET_MS``; median of ``SITING_REPEATS`` runs),
checks the greedy against the optimum and prints one row per seed, then the medians against
the issue's goals (exact within 10 s, greedy within 50 ms and within 1 % of the optimum).
Results: ``.twin/bench/siting/<stamp>.json``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from twin.analysis.siting import (
    DEFAULT_GREEDY_BUDGET_MS,
    DEFAULT_GREEDY_ROUNDS,
    SitingProblem,
    solve,
    solve_exact,
    solve_greedy,
)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = int(os.environ.get("SITING_SEEDS", "5"))
BUILDINGS = int(os.environ.get("SITING_BUILDINGS", "3000"))
CANDIDATES = int(os.environ.get("SITING_CANDIDATES", "300"))
EXISTING = int(os.environ.get("SITING_EXISTING", "20"))
SITES = int(os.environ.get("SITING_SITES", "54"))
RADIUS = float(os.environ.get("SITING_RADIUS", "100"))
TIME_LIMIT = float(os.environ.get("SITING_TIME_LIMIT", "10"))
BUDGET_MS = float(os.environ.get("SITING_BUDGET_MS", str(DEFAULT_GREEDY_BUDGET_MS)))
ROUNDS = int(os.environ.get("SITING_ROUNDS", str(DEFAULT_GREEDY_ROUNDS)))
REPEATS = int(os.environ.get("SITING_REPEATS", "5"))  # greedy timings per seed (median)
WIDTH, HEIGHT = 2000.0, 1400.0


def instance(seed: int, buildings: int = BUILDINGS, candidates: int = CANDIDATES,
             existing: int = EXISTING, sites: int = SITES, radius: float = RADIUS
             ) -> SitingProblem:
    """One synthetic subdistrict as a siting problem."""
    rng = np.random.default_rng(seed)
    compounds = rng.uniform([0, 0], [WIDTH, HEIGHT], (max(buildings // 40, 1), 2))
    clustered = int(buildings * 0.7)
    owner = rng.integers(0, compounds.shape[0], clustered)
    points = np.concatenate([
        compounds[owner] + rng.normal(0, 60, (clustered, 2)),
        rng.uniform([0, 0], [WIDTH, HEIGHT], (buildings - clustered, 2)),
    ])
    households = np.concatenate([
        rng.integers(10, 151, clustered),
        np.where(rng.random(buildings - clustered) < 0.5, rng.integers(1, 40,
                 buildings - clustered), 0),
    ]).astype(np.float64)
    tree = cKDTree(points)
    cands = rng.uniform([0, 0], [WIDTH, HEIGHT], (candidates, 2))
    reach = tree.query_ball_point(cands, radius)
    rows = np.repeat(np.arange(candidates), [len(r) for r in reach])
    cols = np.concatenate([np.asarray(r, dtype=np.int64) for r in reach])
    covers = sp.csr_array((np.ones(rows.shape[0], dtype=bool), (rows, cols)),
                          shape=(candidates, buildings))
    covered = np.zeros(buildings, dtype=bool)
    for r in tree.query_ball_point(rng.uniform([0, 0], [WIDTH, HEIGHT], (existing, 2)), radius):
        covered[np.asarray(r, dtype=np.int64)] = True
    return SitingProblem(households, covers, sites, covered)


def _row(seed: int) -> dict[str, Any]:
    t = time.perf_counter()
    problem = instance(seed)
    build_s = time.perf_counter() - t
    exact = solve_exact(problem, TIME_LIMIT)
    both = solve(problem, TIME_LIMIT, BUDGET_MS)
    greedy_s = []
    for _ in range(REPEATS):
        greedy = solve_greedy(problem, BUDGET_MS, ROUNDS)
        greedy_s.append(greedy.seconds)
    gap = (exact.households - greedy.households) / exact.households if exact.households else 0.0
    return {"seed": seed, "instance_s": build_s, "households": float(problem.weights.sum()),
            "already_covered": exact.already_covered, "coverable": exact.coverable,
            "exact_s": exact.seconds, "exact_optimal": exact.optimal,
            "exact_households": exact.households, "exact_bound": exact.bound,
            "solve_s": both.seconds, "solve_optimal": both.optimal, "solve_method": both.method,
            "greedy_ms": statistics.median(greedy_s) * 1000, "greedy_households":
            greedy.households, "greedy_bound": greedy.bound, "greedy_gap": gap}


def main() -> None:
    print(f"siting: {BUILDINGS} buildings, {CANDIDATES} candidates, {EXISTING} existing "
          f"facilities, {SITES} new sites, radius {RADIUS:g} m, {SEEDS} seeds", flush=True)
    solve_greedy(instance(0, buildings=200, candidates=40, sites=5))  # warm imports
    head = ("| seed | households | already | coverable | exact s | optimal | exact adds "
            "| solve s | greedy ms | greedy adds | greedy gap |")
    print(head)
    print("|" + "---:|" * 11)
    rows = []
    for seed in range(1, SEEDS + 1):
        row = _row(seed)
        rows.append(row)
        print(f"| {seed} | {row['households']:,.0f} | {row['already_covered']:,.0f} "
              f"| {row['coverable']:,.0f} | {row['exact_s']:.2f} | {row['exact_optimal']} "
              f"| {row['exact_households']:,.0f} | {row['solve_s']:.2f} | {row['greedy_ms']:.1f} "
              f"| {row['greedy_households']:,.0f} | {row['greedy_gap']:.3%} |", flush=True)
    exact_med = statistics.median(r["exact_s"] for r in rows)
    solve_med = statistics.median(r["solve_s"] for r in rows)
    greedy_med = statistics.median(r["greedy_ms"] for r in rows)
    gap_med = statistics.median(r["greedy_gap"] for r in rows)
    gap_max = max(r["greedy_gap"] for r in rows)
    proven = sum(r["exact_optimal"] for r in rows)
    print()
    print(f"exact (HiGHS):  median {exact_med:.2f} s, max {max(r['exact_s'] for r in rows):.2f} s, "
          f"proven optimal {proven}/{len(rows)}   goal: within 10 s")
    print(f"solve (greedy, then HiGHS warm-started): median {solve_med:.2f} s")
    print(f"greedy:       median {greedy_med:.1f} ms, max {max(r['greedy_ms'] for r in rows):.1f}"
          f" ms, gap to optimum median {gap_med:.3%}, max {gap_max:.3%}   goal: within 50 ms "
          "and 1 %")
    out = ROOT / ".twin" / "bench" / "siting"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    knobs = {"buildings": BUILDINGS, "candidates": CANDIDATES, "existing": EXISTING,
             "sites": SITES, "radius": RADIUS, "time_limit": TIME_LIMIT, "budget_ms": BUDGET_MS,
             "rounds": ROUNDS, "repeats": REPEATS}
    summary = {"exact_median_s": exact_med, "solve_median_s": solve_med,
               "greedy_median_ms": greedy_med,
               "greedy_gap_median": gap_med, "greedy_gap_max": gap_max, "proven": proven}
    (out / f"{stamp}.json").write_text(json.dumps(
        {"knobs": knobs, "rows": rows, "summary": summary}, indent=2))
    print(f"results: {out / f'{stamp}.json'}")


if __name__ == "__main__":
    main()
