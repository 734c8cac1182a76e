"""Street-network coverage at district and city size: ``twin/analysis/network.py`` on synthetic
grids.

    .venv/bin/python -m bench.coverage                       # 100,000 and 1,000,000 nodes
    COVERAGE_NODES=10000 .venv/bin/python -m bench.coverage  # a quick try
    COVERAGE_NODES=100000 COVERAGE_RUNS=9 .venv/bin/python -m bench.coverage

No database: for each size in ``COVERAGE_NODES`` a square street grid (blocks of
``COVERAGE_BLOCK`` metres, every street one straight line across, in a metric frame) is noded
by ``Network.from_lines``; ``COVERAGE_BUILDINGS`` buildings per node and one facility per
``COVERAGE_NODES_PER_FACILITY`` nodes are random points up to 30 m off a random street point.
The measures follow issue 6's goal (nearest facility within ``COVERAGE_WITHIN`` = 500 m for
every building), medians of ``COVERAGE_RUNS`` runs (the build: ``COVERAGE_BUILD_RUNS``):

- build: ``Network.from_lines`` on the street lines (noding, node keys, STRtree, CSR matrix);
- snap buildings: ``Network.snap`` of all buildings;
- coverage recomputed: graph and snapped buildings in memory, ``snap`` of the facilities and
  ``Network.nearest`` (one multi-source Dijkstra up to the limit, then every building's
  distance through either end of its edge or along it);
- one building, from the result: snap the building's point, look up its answer in the
  coverage in memory (what ``twin.analysis.coverage.building_coverage`` does once the layer's result
  is cached); one building, cold: ``snap`` + ``nearest`` for that building alone;
- what-if: one facility added at a random point, as ``twin.analysis.coverage.what_if`` does it: the
  buildings within the limit as the crow flies (a k-d tree), their distances from the new
  facility searched only in its disc (``Network.from_one``), the newly covered among them;
- peak memory: ``ru_maxrss`` of the process after the builds and after the size (it only
  grows: sizes run smallest first; a build run holds the previous run's network until it
  returns, and noding's transient memory counts); and the resident memory (VmRSS) at the
  end, with the network, the snapped buildings and the coverage held.

The first run checks that the what-if equals a full recompute with the extra facility.
Results: ``.twin/bench/coverage/<stamp>.json``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from scipy.spatial import cKDTree

from twin.analysis.network import Floats, Network

ROOT = Path(__file__).resolve().parents[1]
SIZES = [int(s) for s in os.environ.get("COVERAGE_NODES", "100000,1000000").split(",") if s]
RUNS = int(os.environ.get("COVERAGE_RUNS", "5"))
BUILD_RUNS = int(os.environ.get("COVERAGE_BUILD_RUNS", "3"))
BLOCK = float(os.environ.get("COVERAGE_BLOCK", "80"))
BUILDINGS_PER_NODE = float(os.environ.get("COVERAGE_BUILDINGS", "0.5"))
NODES_PER_FACILITY = int(os.environ.get("COVERAGE_NODES_PER_FACILITY", "100"))
WITHIN = float(os.environ.get("COVERAGE_WITHIN", "500"))
OFF_STREET = 30.0  # metres a building or facility may stand off its street point
SEED = int(os.environ.get("COVERAGE_SEED", "6"))


def streets(nodes: int) -> Any:
    """A square grid of about ``nodes`` crossings: each street one line across (metres)."""
    side = max(2, math.isqrt(nodes - 1) + 1)
    far = (side - 1) * BLOCK
    at = np.arange(side) * BLOCK
    across = [[(0.0, c), (far, c)] for c in at] + [[(c, 0.0), (c, far)] for c in at]
    return shapely.linestrings(across)


def near_streets(lines: Any, count: int, rng: np.random.Generator) -> tuple[Floats, Floats]:
    """``count`` random points up to ``OFF_STREET`` metres off random points of the streets."""
    which = rng.integers(0, len(lines), count)
    spots = shapely.line_interpolate_point(lines[which], rng.random(count), normalized=True)
    xy = shapely.get_coordinates(spots) + rng.uniform(-OFF_STREET, OFF_STREET, (count, 2))
    return xy[:, 0].astype(np.float64), xy[:, 1].astype(np.float64)


def _timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """The median seconds of ``runs`` calls, and the last call's answer."""
    seconds = []
    out: Any = None
    for _ in range(runs):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t)
    return statistics.median(seconds), out


def _resident_mb() -> float:
    """The process's resident memory now (VmRSS; Linux), after a collection and after the C
    heap hands back what is free (glibc keeps noding's freed memory otherwise): what the
    process holds."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: measured as it is
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _same(a: Floats, b: Floats) -> bool:
    """The same distances: unreached in both, or equal to the micrometre."""
    fin = np.isfinite(a)
    return bool(np.array_equal(fin, np.isfinite(b)) and np.allclose(a[fin], b[fin], atol=1e-6))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(nodes: int) -> dict[str, Any]:
    rng = np.random.default_rng(SEED + nodes)
    lines = streets(nodes)
    build_s, net = _timed(lambda: Network.from_lines(lines), BUILD_RUNS)
    build_mb = _peak_mb()
    n_buildings = max(1, int(nodes * BUILDINGS_PER_NODE))
    n_facilities = max(1, nodes // NODES_PER_FACILITY)
    bx, by = near_streets(lines, n_buildings, rng)
    fx, fy = near_streets(lines, n_facilities, rng)
    snap_s, buildings = _timed(lambda: net.snap(bx, by), RUNS)

    def recompute() -> Any:
        return net.nearest(net.snap(fx, fy), buildings, WITHIN)

    cover_s, found = _timed(recompute, RUNS)
    covered = float(np.isfinite(found.distance).mean())

    # one building: from the result in memory, and cold (its own search)
    picks = rng.integers(0, n_buildings, RUNS)
    lookup: list[float] = []
    cold: list[float] = []
    for k in picks:
        x, y = bx[k:k + 1], by[k:k + 1]
        t = time.perf_counter()
        net.snap(x, y)
        answer = (float(found.distance[k]), int(found.source[k]))
        lookup.append(time.perf_counter() - t)
        t = time.perf_counter()
        alone = net.nearest(net.snap(fx, fy), net.snap(x, y), WITHIN)
        cold.append(time.perf_counter() - t)
        assert _same(alone.distance, np.array([answer[0]])), "one building differs"

    # what-if: one facility added; as twin.analysis.coverage.what_if: the buildings within the limit
    # as the crow flies (k-d tree), their distances from it alone searched in its disc
    # (Network.from_one), the newly covered among them
    tree_s, tree = _timed(lambda: cKDTree(np.column_stack([bx, by])), 1)
    wx, wy = near_streets(lines, RUNS, rng)
    what_if: list[float] = []
    for i in range(RUNS):
        gc.collect()
        t = time.perf_counter()
        at = np.array([wx[i], wy[i]])
        near = np.sort(np.asarray(tree.query_ball_point(at, WITHIN), dtype=np.int64))
        d = net.from_one(net.snap(wx[i:i + 1], wy[i:i + 1]), at, buildings.take(near), WITHIN)
        gained = near[(d <= WITHIN) & ~np.isfinite(found.distance[near])]
        what_if.append(time.perf_counter() - t)
        if i == 0:
            updated = found.distance.copy()
            updated[near] = np.minimum(updated[near], d)
            full = net.nearest(net.snap(np.append(fx, wx[0]), np.append(fy, wy[0])),
                               buildings, WITHIN)
            assert _same(updated, full.distance), "what-if differs from a full recompute"
            assert len(gained) == int(np.isfinite(full.distance).sum()
                                       - np.isfinite(found.distance).sum())
    return {"nodes": net.node_count, "edges": net.edge_count, "buildings": n_buildings,
            "facilities": n_facilities, "covered_share": covered, "build_s": build_s,
            "snap_buildings_s": snap_s, "coverage_s": cover_s,
            "one_building_ms": statistics.median(lookup) * 1000,
            "one_building_cold_ms": statistics.median(cold) * 1000,
            "what_if_ms": statistics.median(what_if) * 1000, "trees_s": tree_s,
            "peak_build_mb": build_mb,
            "peak_mb": _peak_mb(), "resident_mb": _resident_mb()}


def _goal_coverage(nodes: int) -> str:
    return "within 50 ms" if nodes <= 200_000 else "within 1 s"


def print_table(r: dict[str, Any]) -> None:
    print(f"\n{r['nodes']:,} nodes, {r['edges']:,} edges, {r['buildings']:,} buildings, "
          f"{r['facilities']:,} facilities, within {WITHIN:g} m: "
          f"{r['covered_share']:.1%} of buildings covered")
    print("| measure (median) | Twin | goal (issue 6) |")
    print("|---|---:|---|")
    rows = [
        ("network build (`Network.from_lines`)", f"{r['build_s']:.2f} s", "-"),
        ("snap all buildings", f"{r['snap_buildings_s']:.2f} s", "-"),
        ("a layer's coverage recomputed (snap facilities + Dijkstra + distances)",
         f"{r['coverage_s'] * 1000:.0f} ms", _goal_coverage(r["nodes"])),
        ("one building's answer (snap + lookup in the result)",
         f"{r['one_building_ms']:.3f} ms", "within 1 ms"),
        ("one building, cold (snap + its own `nearest`)",
         f"{r['one_building_cold_ms']:.1f} ms", "(1 ms)"),
        ("k-d tree of the buildings (once per network)", f"{r['trees_s']:.2f} s", "-"),
        ("what if a facility were added here (`Network.from_one` in its disc)",
         f"{r['what_if_ms']:.2f} ms", "within 5 ms"),
        ("peak memory after the builds (ru_maxrss)", f"{r['peak_build_mb']:.0f} MB", "-"),
        ("peak memory at the end (ru_maxrss, process so far)", f"{r['peak_mb']:.0f} MB",
         "-"),
        ("resident at the end (network, snapped buildings, result held)",
         f"{r['resident_mb']:.0f} MB", "under 300 MB"),
    ]
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")
    print("Note: one building from the result assumes the layer's coverage is cached, as "
          "`building_coverage` does.", flush=True)


def main() -> None:
    print(f"coverage: grids of {', '.join(f'{s:,}' for s in SIZES)} nodes, block {BLOCK:g} m, "
          f"{RUNS} runs ({BUILD_RUNS} for the build), within {WITHIN:g} m; "
          f"baseline {_peak_mb():.0f} MB", flush=True)
    results = []
    for nodes in sorted(SIZES):
        r = measure(nodes)
        results.append(r)
        print_table(r)
    out = ROOT / ".twin" / "bench" / "coverage"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    knobs = {"sizes": SIZES, "runs": RUNS, "build_runs": BUILD_RUNS, "block": BLOCK,
             "buildings_per_node": BUILDINGS_PER_NODE, "nodes_per_facility": NODES_PER_FACILITY,
             "within": WITHIN, "seed": SEED}
    (out / f"{stamp}.json").write_text(json.dumps({"knobs": knobs, "results": results},
                                                  indent=2))
    print(f"\nresults: {out / f'{stamp}.json'}")


if __name__ == "__main__":
    main()
