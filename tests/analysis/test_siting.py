"""Siting (maximal covering location): exact against brute force, the greedy's gap, existing
coverage, bad input. Pure algorithm, no database; timings belong in ``bench/siting.py``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from twin.analysis import siting
from twin.analysis.siting import SitingProblem, SitingResult, solve, solve_exact, solve_greedy
from twin.errors import Unprocessable

# Five buildings, five candidate sites, two to place. Households:
HAND_W = np.array([10, 20, 30, 40, 50], dtype=float)
HAND_COVERS = np.array([
    [1, 1, 0, 0, 0],  # site 0 reaches buildings 0, 1: 30 households
    [0, 1, 1, 0, 0],  # site 1: 1, 2 (50)
    [0, 0, 0, 1, 0],  # site 2: 3 (40)
    [0, 0, 0, 0, 1],  # site 3: 4 (50)
    [0, 0, 1, 1, 0],  # site 4: 2, 3 (70)
], dtype=bool)
# By hand: site 4 (70) then site 3 (+50) = 120; every other pair covers 100 at most.

# Seven buildings, six sites, two to place: a trap for the greedy and for 1-swaps.
TRAP_W = np.array([4, 4, 4, 5, 1, 4, 4], dtype=float)
TRAP_COVERS = np.array([
    [1, 1, 0, 1, 0, 0, 0],  # site 0: 13, the greedy's first pick (tied with site 3)
    [0, 0, 0, 1, 1, 0, 1],  # site 1: 10, then +5 -> 18
    [1, 0, 1, 0, 1, 0, 0],  # site 2: 9
    [0, 1, 1, 1, 0, 0, 0],  # site 3: 13
    [0, 0, 0, 0, 0, 0, 1],  # site 4: 4
    [1, 0, 0, 0, 0, 1, 0],  # site 5: 8; sites 3 and 5 together cover 21, the optimum
], dtype=bool)
# Every single swap out of {0, 1} keeps 18 households, so no 1-swap helps.


def brute_force(weights: np.ndarray, covers: np.ndarray, n: int,
                covered: np.ndarray | None = None) -> float:
    """The optimum over all subsets of n candidates."""
    new = ~covered if covered is not None else np.ones(weights.shape[0], dtype=bool)
    return max(float(weights[covers[list(s)].any(axis=0) & new].sum())
               for s in itertools.combinations(range(covers.shape[0]), n))


def plane(seed: int, demand: int = 3000, candidates: int = 300, n: int = 54,
          radius: float = 100.0, existing: int = 20) -> SitingProblem:
    """Buildings, candidate sites and existing facilities at random on a 2.0 x 1.4 km plane;
    a site covers the buildings within ``radius`` metres."""
    rng = np.random.default_rng(seed)
    size = np.array([2000.0, 1400.0])
    tree = cKDTree(rng.random((demand, 2)) * size)
    reach = tree.query_ball_point(rng.random((candidates, 2)) * size, radius)
    rows = np.repeat(np.arange(candidates), [len(r) for r in reach])
    cols = np.concatenate([np.asarray(r, dtype=np.int64) for r in reach])
    covers = sp.csr_array((np.ones(rows.shape[0], dtype=bool), (rows, cols)),
                          shape=(candidates, demand))
    covered = np.zeros(demand, dtype=bool)
    for r in tree.query_ball_point(rng.random((existing, 2)) * size, radius):
        covered[np.asarray(r, dtype=np.int64)] = True
    weights = rng.integers(0, 150, demand).astype(float)
    return SitingProblem(weights, covers, n, covered)


def well_formed(result: SitingResult, problem: SitingProblem) -> None:
    assert len(result.sites) == problem.n
    assert len(set(result.sites)) == problem.n
    assert all(0 <= j < problem.candidates for j in result.sites)
    assert len(result.marginal) == problem.n
    assert result.households == pytest.approx(sum(result.marginal))
    # each site the one adding most to those before it: the gains never grow (submodularity)
    assert all(a >= b - 1e-9 for a, b in itertools.pairwise(result.marginal))
    # the households really are what the sites newly cover
    hit = np.asarray(problem.covers[list(result.sites)].sum(axis=0)).ravel() > 0
    assert problem.covered is not None
    newly = hit & ~problem.covered
    assert result.households == pytest.approx(float(problem.weights[newly].sum()))
    assert result.bound >= result.households - 1e-6
    assert 0.0 <= result.gap <= 1.0


def test_hand_case_exact_and_greedy() -> None:
    problem = SitingProblem(HAND_W, sp.csr_array(HAND_COVERS), 2)
    assert brute_force(HAND_W, HAND_COVERS, 2) == 120
    exact = solve_exact(problem, time_limit_s=10)
    well_formed(exact, problem)
    assert exact.sites == (4, 3)
    assert exact.marginal == (70.0, 50.0)
    assert exact.households == 120
    assert exact.method == "exact"
    assert exact.optimal
    assert exact.gap == 0.0
    assert exact.bound == 120
    assert exact.coverable == 150
    assert exact.already_covered == 0
    greedy = solve_greedy(problem)
    well_formed(greedy, problem)
    assert greedy.method == "greedy"
    assert greedy.sites == (4, 3)
    assert greedy.households == 120
    result = solve(problem)
    well_formed(result, problem)
    assert (result.sites, result.households, result.optimal) == ((4, 3), 120, True)
    assert result.greedy_gap == 0.0


def test_exact_equals_brute_force_on_tiny_instances() -> None:
    rng = np.random.default_rng(11)
    for _ in range(12):
        m, c = int(rng.integers(6, 14)), int(rng.integers(3, 8))
        n = int(rng.integers(1, c + 1))
        covers = rng.random((c, m)) < 0.3
        weights = rng.integers(0, 9, m).astype(float)
        covered = rng.random(m) < 0.2
        problem = SitingProblem(weights, covers, n, covered)
        best = brute_force(weights, covers, n, covered)
        exact = solve_exact(problem, time_limit_s=10)
        well_formed(exact, problem)
        assert exact.optimal
        assert exact.households == pytest.approx(best)
        greedy = solve_greedy(problem)
        well_formed(greedy, problem)
        assert greedy.households <= best + 1e-9
        assert greedy.bound >= best - 1e-9  # the greedy's bound is a true upper bound
        combined = solve(problem)
        well_formed(combined, problem)
        assert combined.optimal
        assert combined.households == pytest.approx(best)


def test_greedy_trap_and_its_reported_gap() -> None:
    problem = SitingProblem(TRAP_W, TRAP_COVERS, 2)
    assert brute_force(TRAP_W, TRAP_COVERS, 2) == 21
    swaps_only = solve_greedy(problem, budget_ms=10_000, rounds=0)
    assert swaps_only.households == 18  # greedy 13 + 5, and no 1-swap improves it
    greedy = solve_greedy(problem, budget_ms=10_000)
    well_formed(greedy, problem)
    assert greedy.households == 18  # with two sites the perturbations are 1-swaps too
    assert not greedy.optimal
    assert greedy.bound >= 21
    assert greedy.gap == pytest.approx((greedy.bound - 18) / greedy.bound)

    result = solve(problem)
    well_formed(result, problem)
    assert result.method == "exact"
    assert result.optimal
    assert set(result.sites) == {3, 5}
    assert result.households == 21
    assert result.marginal == (13.0, 8.0)
    assert result.greedy_households == 18
    assert result.greedy_gap == pytest.approx(3 / 21)
    assert result.gap == 0.0


def test_existing_coverage_is_kept_and_adds_nothing() -> None:
    covered = np.array([False, False, True, True, False])  # buildings 2 and 3 are served
    problem = SitingProblem(HAND_W, HAND_COVERS, 2, covered)
    best = brute_force(HAND_W, HAND_COVERS, 2, covered)
    assert best == 80  # site 3 (50) then site 0 (+30); sites 2 and 4 add nothing now
    for result in (solve_exact(problem), solve_greedy(problem), solve(problem)):
        well_formed(result, problem)
        assert result.households == 80
        assert result.sites == (3, 0)
        assert result.marginal == (50.0, 30.0)
        assert result.already_covered == 70
        assert result.coverable == 80


def test_more_sites_than_useful_candidates_are_filled_with_zeros() -> None:
    covered = np.array([True, True, True, True, False])  # only building 4 is left
    problem = SitingProblem(HAND_W, HAND_COVERS, 3, covered)
    for result in (solve_exact(problem), solve_greedy(problem), solve(problem)):
        well_formed(result, problem)
        assert result.sites[0] == 3
        assert result.marginal == (50.0, 0.0, 0.0)
        assert result.households == 50
        assert result.optimal


def test_everything_already_covered() -> None:
    problem = SitingProblem(HAND_W, HAND_COVERS, 2, np.ones(5, dtype=bool))
    for result in (solve_exact(problem), solve_greedy(problem), solve(problem)):
        well_formed(result, problem)
        assert result.households == 0
        assert result.optimal
        assert result.marginal == (0.0, 0.0)


def test_random_plane_instance_exact_optimal_and_greedy_within_one_percent() -> None:
    problem = plane(seed=3)
    exact = solve_exact(problem, time_limit_s=60)
    well_formed(exact, problem)
    assert exact.optimal
    assert exact.gap == 0.0
    greedy = solve_greedy(problem, budget_ms=10_000)  # rounds, not the clock, end it here
    well_formed(greedy, problem)
    assert greedy.households <= exact.households + 1e-6
    assert greedy.households >= 0.99 * exact.households
    assert greedy.bound >= exact.households - 1e-6
    result = solve(problem, time_limit_s=60)
    well_formed(result, problem)
    assert result.optimal
    assert result.households == pytest.approx(exact.households)
    assert result.greedy_households is not None
    assert result.greedy_gap is not None and 0.0 <= result.greedy_gap <= 0.01


def test_mip_failure_falls_back_to_the_greedy(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise siting.SolverFailed("no cbc here")

    monkeypatch.setattr(siting, "_mip", broken)
    problem = SitingProblem(TRAP_W, TRAP_COVERS, 2)
    result = solve(problem)
    assert result.method == "greedy"
    assert result.households == 18
    assert not result.optimal
    assert result.bound >= 21
    assert "HiGHS failed" in result.note
    assert result.greedy_gap is None
    with pytest.raises(siting.SolverFailed):
        solve_exact(problem)


def test_mip_time_limit_keeps_the_greedy_with_the_best_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def stopped(*args: object, **kwargs: object) -> object:
        return siting._MipAnswer([], 0.0, False, 21.5, "no solution found")

    monkeypatch.setattr(siting, "_mip", stopped)
    result = solve(SitingProblem(TRAP_W, TRAP_COVERS, 2), time_limit_s=1)
    assert result.method == "greedy"
    assert result.households == 18
    assert not result.optimal
    assert result.bound == 21.5  # HiGHS's bound, tighter than the greedy's own
    assert result.gap == pytest.approx(3.5 / 21.5)
    assert "time limit" in result.note

    def incumbent(*args: object, **kwargs: object) -> object:
        return siting._MipAnswer([3, 5], 21.0, False, 22.0, "solution found")

    monkeypatch.setattr(siting, "_mip", incumbent)
    result = solve(SitingProblem(TRAP_W, TRAP_COVERS, 2), time_limit_s=1)
    assert result.method == "exact"
    assert not result.optimal
    assert result.households == 21
    assert result.bound == 22.0
    assert result.greedy_households == 18


def test_a_real_time_limit_still_answers() -> None:
    problem = plane(seed=5, radius=120.0)
    result = solve(problem, time_limit_s=0.01)  # no time for HiGHS at all
    assert result.method == "greedy"
    assert "no time left" in result.note
    well_formed(result, problem)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"n": 0}, "n"),
    ({"n": -3}, "n"),
    ({"n": 6}, "n"),  # five candidates
    ({"n": 2.5}, "n"),
    ({"n": True}, "n"),
    ({"covers": np.ones((5, 4), dtype=bool)}, "covers"),
    ({"covers": "everything"}, "covers"),
    ({"covered": np.zeros(4, dtype=bool)}, "covered"),
    ({"covered": np.array(["yes"] * 5)}, "covered"),
    ({"weights": np.array([1, 2, -3, 4, 5], dtype=float)}, "weights"),
    ({"weights": np.array([1, 2, np.nan, 4, 5])}, "weights"),
    ({"weights": np.ones((5, 1))}, "weights"),
])
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"weights": HAND_W, "covers": HAND_COVERS, "n": 2,
                               "covered": None, **kwargs}
    with pytest.raises(Unprocessable) as raised:
        SitingProblem(**args)  # type: ignore[arg-type]
    fields = [p.field for p in raised.value.problems]
    assert fields == [field]
    problem = raised.value.problems[0]
    assert problem.reason and problem.reason_zh
    assert field in str(raised.value)


def test_n_larger_than_candidates_says_how_many() -> None:
    with pytest.raises(Unprocessable) as raised:
        SitingProblem(HAND_W, sp.csr_array(HAND_COVERS), 54)
    (problem,) = raised.value.problems
    assert (problem.field, problem.value) == ("n", 54)
    assert "5 candidate" in problem.reason
