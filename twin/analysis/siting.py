"""Siting: where N new facilities cover the most households (maximal covering location problem).

A pure algorithm on arrays, with no database: the coverage code measures which candidate
site reaches which building within the distance and which buildings existing facilities
already serve, and hands over

- ``weights``: the households of each of the m demand points (buildings), ``>= 0``;
- ``covers``: a sparse boolean matrix, candidates x demand, ``covers[j, i]`` when candidate
  site j reaches demand point i within the distance;
- ``covered``: the demand already served by existing facilities, which are kept;
- ``n``: how many new sites to place.

Only demand that is not yet covered, holds households and that some candidate reaches
enters the models; identical demand points (reached by the same candidates) are merged.

- :func:`solve_greedy` adds the site of largest marginal gain N times (gains kept in a
  vector and lowered only where the chosen site's demand was counted), improves the choice
  by 1-swaps (one site out, one in, best swap first, all swaps scored at once with numpy),
  then, while its budget (ms) lasts, for a fixed number of rounds drops a few neighbouring
  sites, refills greedily and 1-swaps again, keeping what is not worse (iterated local
  search; fixed rounds and seed, so the same input gives the same answer unless the budget
  runs out first). It also proves a bound: by submodularity no N sites cover more than what
  it covers plus the N largest marginal gains left.
- :func:`solve_exact` solves the integer program with HiGHS (highspy; PuLP 4 no longer
  bundles HiGHS, which this used before) under a time limit: maximise sum w_i y_i subject to y_i <=
  sum of x_j over the candidates j reaching i, sum x_j = min(N, useful candidates),
  x binary, 0 <= y <= 1.
- :func:`solve` runs the greedy first (an incumbent, HiGHS's warm start and the fallback),
  then HiGHS in the time left; it reports the greedy's gap to the proven optimum, or, when
  HiGHS fails or stops at the time limit, the best answer known with the best bound known.

Sites come out in the order of their marginal gain (each the one adding the most to those
before it), with the households each adds. When fewer than N candidates add anything the
rest are filled with candidates that add nothing (those reaching the most households).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from twin.errors import Problem, Unprocessable

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]
Method = Literal["exact", "greedy"]

DEFAULT_TIME_LIMIT_S = 10.0
DEFAULT_GREEDY_BUDGET_MS = 40.0
DEFAULT_GREEDY_ROUNDS = 25
_MIN_MIP_S = 0.05  # less time than this left for HiGHS: do not start it
_REL_TOL = 1e-9  # improvements smaller than this share of the households are noise


@dataclass(frozen=True)
class SitingResult:
    """The sites chosen and what is known about how good they are.

    ``households`` and ``marginal`` count newly covered households only (existing coverage
    is not counted again); ``bound`` is an upper bound on what any N new sites could add, and
    ``gap`` = (bound - households) / bound (0 when proven optimal). :func:`solve` also fills
    ``greedy_households`` (what the greedy alone found) and, when the optimum is proven,
    ``greedy_gap``: the greedy's relative gap to it.
    """

    sites: tuple[int, ...]  # candidate indices, in the order of their marginal gain
    marginal: tuple[float, ...]  # households each adds to those before it
    households: float  # total newly covered households (the sum of ``marginal``)
    method: Method  # which algorithm found ``sites``
    optimal: bool  # proven optimal
    bound: float  # best upper bound known on the newly covered households
    gap: float  # relative gap to ``bound``
    seconds: float  # wall time of the whole call
    already_covered: float  # households the existing facilities cover
    coverable: float  # households not yet covered that some candidate reaches
    note: str = ""  # what happened, in a sentence (a time limit, a solver failure)
    greedy_households: float | None = None
    greedy_gap: float | None = None


@dataclass(frozen=True, eq=False)
class SitingProblem:
    """One instance, validated on construction (:class:`Unprocessable` names each bad field:
    ``weights``, ``covers``, ``covered`` or ``n``). Afterwards ``weights`` is float64,
    ``covers`` a CSR boolean array, ``covered`` a boolean array (all False when None was
    given) and ``n`` an int."""

    weights: Floats  # households per demand point, shape (m,)
    covers: Any  # scipy sparse (or dense) boolean, shape (candidates, m)
    n: int  # new sites to place
    covered: Bools | None = None  # demand already covered by existing facilities, shape (m,)
    _reduced: _Reduced = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        weights, covers, covered = _validated(self.weights, self.covers, self.n, self.covered)
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "covers", covers)
        object.__setattr__(self, "covered", covered)
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "_reduced", _reduce(weights, covers, covered))

    @property
    def candidates(self) -> int:
        return int(self.covers.shape[0])

    @property
    def demand(self) -> int:
        return int(self.covers.shape[1])


@dataclass(frozen=True)
class _Reduced:
    """The part of a problem the solvers look at: uncovered demand with households that some
    candidate reaches (columns ``demand`` of the original), as a float CSR matrix."""

    a: Any  # csr (candidates x m'), data 1.0
    at: Any  # csr (m' x candidates), the transpose
    w: Floats  # weights of the m' demand points
    demand: Ints  # their indices in the original problem
    reach: Floats  # households (all, covered or not) each candidate reaches: a filler's order
    nz_cand: Ints  # the nonzeros of ``a``: candidate of each
    nz_dem: Ints  # and (reduced) demand point of each
    already_covered: float


def _validated(weights: Any, covers: Any, n: Any, covered: Any) -> tuple[Floats, Any, Bools]:
    """The inputs as the solvers want them, or :class:`Unprocessable` naming each bad field."""
    problems: list[Problem] = []
    m = -1  # demand points, when known
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        w = np.zeros(0)
        problems.append(Problem("weights", type(weights).__name__, "weights must be numbers, "
                                "the households of each demand point",
                                "权重须为数值（各需求点的户数）"))
    else:
        bad = np.flatnonzero(~np.isfinite(w) | (w < 0)) if w.ndim == 1 else np.zeros(0)
        if w.ndim != 1:
            problems.append(Problem("weights", list(w.shape), "weights must be one number per "
                                    "demand point (a 1-D array)", "权重须为每个需求点一个数"))
        elif bad.size:
            problems.append(Problem("weights", str(w[bad[0]]), f"weights must be finite and not "
                                    f"negative (demand point {bad[0]} is not)",
                                    f"权重须为有限的非负数（第 {bad[0]} 个需求点不是）"))
        else:
            m = w.shape[0]

    c: Any = None
    try:
        c = sp.csr_array(covers, dtype=bool)
    except (TypeError, ValueError):
        problems.append(Problem("covers", type(covers).__name__, "covers must be a 2-D boolean "
                                "matrix, candidates x demand points",
                                "covers 须为候选点×需求点的二维布尔矩阵"))
    if c is not None and c.ndim != 2:
        problems.append(Problem("covers", list(c.shape), "covers must be 2-D (candidates x "
                                "demand points)", "covers 须为二维（候选点×需求点）"))
        c = None
    if c is not None:
        c.sum_duplicates()
        c.eliminate_zeros()
        if m >= 0 and c.shape[1] != m:
            problems.append(Problem("covers", list(c.shape), f"covers has {c.shape[1]} columns "
                                    f"but there are {m} demand points",
                                    f"covers 有 {c.shape[1]} 列，但需求点有 {m} 个"))

    cov: Bools = np.zeros(max(m, 0), dtype=bool)
    if covered is not None:
        cov = np.asarray(covered)
        if cov.dtype != np.bool_ and cov.size and np.isin(cov, (0, 1)).all():
            cov = cov.astype(bool)
        if cov.dtype != np.bool_ or cov.ndim != 1 or (m >= 0 and cov.shape[0] != m):
            problems.append(Problem("covered", list(cov.shape), f"covered must be a boolean "
                                    f"mask of the {max(m, 0)} demand points",
                                    f"covered 须为 {max(m, 0)} 个需求点的布尔掩码"))

    candidates = int(c.shape[0]) if c is not None else None
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        problems.append(Problem("n", repr(n), "n must be a whole number", "n 须为整数"))
    elif n < 1:
        problems.append(Problem("n", int(n), "n must be at least 1", "n 至少为 1"))
    elif candidates is not None and n > candidates:
        problems.append(Problem("n", int(n), f"n is larger than the {candidates} candidate "
                                "sites", f"n 大于候选点数（{candidates} 个）"))
    if problems:
        raise Unprocessable("the siting problem is not valid: "
                            + "; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    return w, c, cov


def _reduce(w: Floats, covers: Any, covered: Bools) -> _Reduced:
    reached = np.bincount(covers.indices, minlength=covers.shape[1]) > 0
    keep = np.flatnonzero(~covered & (w > 0) & reached)
    a = covers[:, keep].astype(np.float64).tocsr()
    a.sort_indices()
    nz_cand = np.repeat(np.arange(a.shape[0], dtype=np.int64), np.diff(a.indptr))
    return _Reduced(a=a, at=a.T.tocsr(), w=w[keep], demand=keep,
                    nz_cand=nz_cand, nz_dem=a.indices.astype(np.int64),
                    reach=np.asarray(covers.astype(np.float64) @ w, dtype=np.float64),
                    already_covered=float(w[covered].sum()))


# --- greedy ------------------------------------------------------------------------------


def _gather(indptr: Any, indices: Any, rows: Ints) -> tuple[Ints, Ints]:
    """The column indices of CSR ``rows``, concatenated, and how many each row holds."""
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), lengths
    offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return indices[offsets + np.arange(total)], lengths


def _counts(r: _Reduced, sites: list[int] | Ints) -> Ints:
    """How many of ``sites`` reach each (reduced) demand point."""
    cols, _ = _gather(r.a.indptr, r.a.indices, np.asarray(sites, dtype=np.int64))
    return np.bincount(cols, minlength=r.w.shape[0]).astype(np.int64)


def _greedy_pick(r: _Reduced, k: int, allowed: Bools | None = None,
                 base: list[int] | None = None) -> tuple[list[int], list[float]]:
    """Up to k sites of ``allowed`` (all when None) added to ``base``, each the one of largest
    marginal gain; stops early when nothing adds households. The gains are kept in a vector
    and lowered, after each pick, only by the demand that pick newly covers."""
    done = _counts(r, base or []) > 0
    gains = np.asarray(r.a @ np.where(done, 0.0, r.w), dtype=np.float64)
    if allowed is not None:
        gains = np.where(allowed, gains, -1.0)
    if base:
        gains[base] = -1.0
    sites: list[int] = []
    marginal: list[float] = []
    indptr, indices = r.a.indptr, r.a.indices
    for _ in range(k):
        j = int(np.argmax(gains))
        if gains[j] <= 0:
            break
        rows = indices[indptr[j]:indptr[j + 1]]
        new = rows[~done[rows]]
        done[new] = True
        sites.append(j)
        marginal.append(float(r.w[new].sum()))
        cands, lengths = _gather(r.at.indptr, r.at.indices, new)
        gains -= np.bincount(cands, weights=np.repeat(r.w[new], lengths),
                             minlength=gains.shape[0])
        gains[j] = -1.0
    return sites, marginal


def _swap_pass(r: _Reduced, sites: list[int], deadline: float) -> list[int]:
    """Best-improvement 1-swap local search until no swap helps or the deadline passes.

    With c_i the number of chosen sites reaching i, swapping s out and k in changes coverage
    by gain0[k] + M[s, k] - loss[s]: gain0 = what k reaches of the uncovered demand, loss =
    what only s reaches, M[s, k] = what only s reaches that k reaches too. All three come
    from bincounts over the nonzeros of ``covers``."""
    sites = list(sites)
    ncand, k_sites = r.a.shape[0], len(sites)
    if not sites or k_sites >= ncand:
        return sites
    tol = _REL_TOL * max(float(r.w.sum()), 1.0)
    pos = np.full(ncand, -1, dtype=np.int64)
    pos[sites] = np.arange(k_sites)
    c = _counts(r, sites)
    owner = np.zeros(r.w.shape[0], dtype=np.int64)
    while time.perf_counter() < deadline:
        at_site = pos[r.nz_cand]
        mine = at_site >= 0
        owner[r.nz_dem[mine]] = at_site[mine]  # the one reaching i, where c_i == 1
        c_nz = c[r.nz_dem]
        free = c_nz == 0
        gain0 = np.bincount(r.nz_cand[free], weights=r.w[r.nz_dem[free]], minlength=ncand)
        one = c == 1
        loss = np.bincount(owner[one], weights=r.w[one], minlength=k_sites)
        single = c_nz == 1
        dem = r.nz_dem[single]
        m = np.bincount(owner[dem] * ncand + r.nz_cand[single], weights=r.w[dem],
                        minlength=k_sites * ncand).reshape(k_sites, ncand)
        delta = gain0[None, :] + m - loss[:, None]
        delta[:, sites] = -np.inf
        s, k = (int(v) for v in np.unravel_index(int(np.argmax(delta)), delta.shape))
        if delta[s, k] <= tol:
            break
        out = sites[s]
        c[r.a.indices[r.a.indptr[out]:r.a.indptr[out + 1]]] -= 1  # a row's columns are unique
        c[r.a.indices[r.a.indptr[k]:r.a.indptr[k + 1]]] += 1
        pos[out] = -1
        pos[k] = s
        sites[s] = k
    return sites


def _value(r: _Reduced, sites: list[int]) -> float:
    return float(r.w[_counts(r, sites) > 0].sum())


def _perturbed_search(r: _Reduced, sites: list[int], deadline: float, rounds: int
                      ) -> list[int]:
    """Iterated local search: drop a few sites (one at random and those sharing the most
    demand with it), refill greedily without them, 1-swap, keep the result when it is not
    worse. At most ``rounds`` rounds (same input, same answer) and never past the deadline."""
    best = _swap_pass(r, sites, deadline)
    best_f = _value(r, best)
    if len(best) < 2 or len(best) >= r.a.shape[0]:
        return best
    rng = np.random.default_rng(0x5171)
    current, current_f = best, best_f
    pos = np.full(r.a.shape[0], -1, dtype=np.int64)
    for _ in range(rounds):
        if time.perf_counter() >= deadline:
            break
        pos[:] = -1
        pos[current] = np.arange(len(current))
        pivot = int(rng.integers(len(current)))
        near = np.zeros(r.w.shape[0], dtype=bool)
        near[r.a.indices[r.a.indptr[current[pivot]]:r.a.indptr[current[pivot] + 1]]] = True
        hit = (pos[r.nz_cand] >= 0) & near[r.nz_dem]
        overlap = np.bincount(pos[r.nz_cand[hit]], weights=r.w[r.nz_dem[hit]],
                              minlength=len(current))
        overlap[pivot] = np.inf
        q = min(int(rng.integers(2, 5)), len(current) - 1)
        drop = set(np.argsort(-overlap, kind="stable")[:q].tolist())
        keep = [s for i, s in enumerate(current) if i not in drop]
        allowed = np.ones(r.a.shape[0], dtype=bool)
        allowed[[current[i] for i in drop]] = False
        fill, _ = _greedy_pick(r, len(current) - len(keep), allowed, keep)
        trial = _swap_pass(r, keep + fill, deadline)
        trial_f = _value(r, trial)
        if trial_f >= current_f:
            current, current_f = trial, trial_f
            if trial_f > best_f:
                best, best_f = trial, trial_f
        else:
            current, current_f = best, best_f
    return best


def _online_bound(r: _Reduced, sites: list[int], n: int) -> float:
    """An upper bound on any n sites' coverage: f(S) + the n largest gains w.r.t. S (the
    objective is submodular), and never more than all coverable households."""
    c = _counts(r, sites)
    got = float(r.w[c > 0].sum())
    gain0 = np.asarray(r.a @ np.where(c == 0, r.w, 0.0), dtype=np.float64)
    top = np.sort(gain0)[::-1][:n]
    return min(got + float(top.sum()), float(r.w.sum()))


def _ordered(r: _Reduced, chosen: list[int], n: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``chosen`` in the order of marginal gain with each one's households, then filled up to
    n with sites that add nothing (chosen ones that add nothing first, then the candidates
    reaching the most households)."""
    allowed = np.zeros(r.a.shape[0], dtype=bool)
    allowed[chosen] = True
    sites, marginal = _greedy_pick(r, len(chosen), allowed)
    picked = set(sites)
    rest = [j for j in chosen if j not in picked]
    if len(sites) + len(rest) < n:
        order = np.argsort(-r.reach, kind="stable")
        taken = picked | set(rest)
        rest += [int(j) for j in order if int(j) not in taken][: n - len(sites) - len(rest)]
    rest = rest[: n - len(sites)]
    return tuple(sites + rest), tuple(marginal + [0.0] * len(rest))


def _gap(households: float, bound: float) -> float:
    if bound <= 0:
        return 0.0
    return max(0.0, (bound - households) / bound)


def solve_greedy(problem: SitingProblem, budget_ms: float = DEFAULT_GREEDY_BUDGET_MS,
                 rounds: int = DEFAULT_GREEDY_ROUNDS) -> SitingResult:
    """Greedy by marginal gain, 1-swaps, then up to ``rounds`` rounds of perturbation and
    1-swaps, all within ``budget_ms`` from the start; the bound is the submodular one."""
    start = time.perf_counter()
    r = problem._reduced
    sites, _ = _greedy_pick(r, problem.n)
    sites = _perturbed_search(r, sites, start + budget_ms / 1000.0, rounds)
    ordered, marginal = _ordered(r, sites, problem.n)
    households = float(sum(marginal))
    bound = max(households, _online_bound(r, sites, problem.n))
    optimal = bound - households <= _REL_TOL * max(bound, 1.0)
    return SitingResult(
        sites=ordered, marginal=marginal, households=households, method="greedy",
        optimal=optimal, bound=households if optimal else bound,
        gap=0.0 if optimal else _gap(households, bound),
        seconds=time.perf_counter() - start, already_covered=r.already_covered,
        coverable=float(r.w.sum()),
        note="greedy, 1-swaps and perturbations"
        + ("; its bound proves it optimal" if optimal else ""))


# --- exact -------------------------------------------------------------------------------


_NOTHING = "nothing to cover"


class SolverFailed(RuntimeError):
    """HiGHS could not be run or gave no answer."""


@dataclass(frozen=True)
class _MipAnswer:
    sites: list[int]  # empty when HiGHS found no integer solution
    objective: float
    optimal: bool
    bound: float | None  # None when unknown
    status: str


def _groups(r: _Reduced) -> tuple[Any, Floats]:
    """Demand points reached by the same candidates merged into one: (group x candidates
    CSR of each group's candidates, group weights)."""
    at = r.at
    if at.shape[0] == 0:
        return at, r.w
    rng = np.random.default_rng(0x5171)
    keys = np.stack([at @ rng.random(at.shape[1]), at @ rng.random(at.shape[1])], axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    if (at - at[first[inverse]]).count_nonzero() != 0:  # a hash collision: merge nothing
        return at, r.w
    weights = np.bincount(inverse, weights=r.w, minlength=first.shape[0]).astype(np.float64)
    return at[first], weights


@cache
def _highs() -> Any:
    """highspy, imported once: its first solver prints HiGHS's banner to the process's own
    standard output (file descriptor 1, below Python's sys.stdout) before any option can
    be set, which would land in `twin siting --json`. That first one is made with fd 1 on
    /dev/null; later ones print nothing with output_flag off."""
    import highspy  # imported here: an import the greedy path never pays

    sys.stdout.flush()
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        highspy.Highs()  # type: ignore[no-untyped-call]  # its __init__ has no annotations
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
    return highspy


def _mip(r: _Reduced, n: int, deadline: float, start: list[int] | None) -> _MipAnswer:
    """The integer program solved by HiGHS (highspy), given what is left until ``deadline``
    (a ``time.perf_counter()`` value) once the model is built; raises :class:`SolverFailed`.

    Columns: x_j (binary, the useful candidates) then y_g (0..1, the demand groups); rows:
    y_g - sum of the x_j reaching g <= 0 for each group, and sum x_j = k. Built as sparse
    arrays in one pass, which PuLP built as Python expressions."""
    highspy = _highs()
    groups, gw = _groups(r)
    useful = np.flatnonzero(np.diff(r.a.indptr) > 0)
    k = min(n, useful.shape[0])
    if k == 0 or groups.shape[0] == 0:
        return _MipAnswer([], 0.0, True, 0.0, _NOTHING)
    nx, ny = useful.shape[0], groups.shape[0]
    reach = groups[:, useful].tocsr().astype(np.float64)
    rows = sp.vstack([sp.hstack([-reach, sp.identity(ny, format="csr")]),
                      sp.hstack([sp.csr_matrix(np.ones((1, nx))), sp.csr_matrix((1, ny))])
                      ]).tocsc()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = nx + ny, ny + 1
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.col_cost_ = np.concatenate([np.zeros(nx), np.asarray(gw, dtype=np.float64)])
    lp.col_lower_, lp.col_upper_ = np.zeros(nx + ny), np.ones(nx + ny)
    lp.row_lower_ = np.concatenate([np.full(ny, -highspy.kHighsInf), [float(k)]])
    lp.row_upper_ = np.concatenate([np.zeros(ny), [float(k)]])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_ = rows.indptr, rows.indices
    lp.a_matrix_.value_ = rows.data
    lp.integrality_ = ([highspy.HighsVarType.kInteger] * nx
                       + [highspy.HighsVarType.kContinuous] * ny)
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("threads", 1)
    solver.setOptionValue("random_seed", 0)
    if solver.passModel(lp) != highspy.HighsStatus.kOk:
        raise SolverFailed("HiGHS refused the model")
    if start is not None:  # the greedy's sites, and what they cover, as the first incumbent
        chosen = np.zeros(r.a.shape[0], dtype=np.float64)
        chosen[[j for j in start if 0 <= j < r.a.shape[0]]] = 1.0
        covered_g = (np.asarray(groups @ chosen) > 0).astype(np.float64)
        warm = highspy.HighsSolution()
        warm.col_value = np.concatenate([chosen[useful], covered_g]).tolist()
        warm.value_valid = True
        solver.setSolution(warm)
    solver.setOptionValue("time_limit", max(deadline - time.perf_counter(), _MIN_MIP_S))
    if solver.run() == highspy.HighsStatus.kError:
        raise SolverFailed(f"HiGHS failed ({solver.modelStatusToString(solver.getModelStatus())})")
    model = solver.getModelStatus()
    status = solver.modelStatusToString(model).lower()
    info = solver.getInfo()
    if info.primal_solution_status != 2:  # no feasible integer solution
        return _MipAnswer([], 0.0, False, None, status)
    values = np.asarray(solver.getSolution().col_value[:nx])
    sites = [int(j) for j in useful[values > 0.5]]
    objective = float(r.w[_counts(r, sites) > 0].sum())
    optimal = model == highspy.HighsModelStatus.kOptimal
    bound = objective if optimal else float(info.mip_dual_bound)
    return _MipAnswer(sites, objective, optimal, bound, status)


def _exact_result(problem: SitingProblem, answer: _MipAnswer, started: float, note: str
                  ) -> SitingResult:
    r = problem._reduced
    sites, marginal = _ordered(r, answer.sites, problem.n)
    households = float(sum(marginal))
    if answer.optimal:
        bound = households
    else:
        known = _online_bound(r, answer.sites, problem.n)
        bound = max(households, min(known, answer.bound if answer.bound is not None else known))
    return SitingResult(
        sites=sites, marginal=marginal, households=households, method="exact",
        optimal=answer.optimal, bound=bound, gap=_gap(households, bound),
        seconds=time.perf_counter() - started, already_covered=r.already_covered,
        coverable=float(r.w.sum()), note=note)


def solve_exact(problem: SitingProblem, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                start: tuple[int, ...] | list[int] | None = None) -> SitingResult:
    """The integer program with HiGHS within ``time_limit_s`` (a warm ``start`` optional).

    Raises :class:`SolverFailed` when HiGHS fails or finds no solution in time; when it stops at
    the limit with a solution, that solution comes back with ``optimal`` False and the best
    bound known (HiGHS's, or the submodular one of the solution).
    """
    started = time.perf_counter()
    answer = _mip(problem._reduced, problem.n, started + time_limit_s,
                  list(start) if start is not None else None)
    if not answer.sites and answer.status != _NOTHING:
        raise SolverFailed(f"HiGHS found no solution ({answer.status})")
    note = "HiGHS, proven optimal" if answer.optimal else \
        f"HiGHS stopped at the time limit of {time_limit_s:g} s, not proven optimal"
    return _exact_result(problem, answer, started, note)


def solve(problem: SitingProblem, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
          greedy_budget_ms: float = DEFAULT_GREEDY_BUDGET_MS) -> SitingResult:
    """Greedy first, then HiGHS warm-started from it within what is left of ``time_limit_s``.

    - HiGHS proves optimality: its answer (``method`` "exact"), with the greedy's households
      and its gap to the optimum in ``greedy_households`` and ``greedy_gap``;
    - HiGHS stops at the limit: the better of HiGHS's incumbent ("exact", not optimal) and the
      greedy (the greedy on a tie), with the tighter of HiGHS's and the greedy's bounds;
    - HiGHS fails, or no time is left for it: the greedy with its own bound.
    ``note`` says which happened.
    """
    started = time.perf_counter()
    deadline = started + time_limit_s
    greedy = solve_greedy(problem, min(greedy_budget_ms, 1000.0 * time_limit_s))
    mine = {"greedy_households": greedy.households}
    if greedy.optimal:
        return _with_time(greedy, started, note="greedy, proven optimal by its own bound; HiGHS "
                          "not needed", greedy_gap=0.0, **mine)
    if deadline - time.perf_counter() < _MIN_MIP_S:
        return _with_time(greedy, started, note=f"no time left for HiGHS within {time_limit_s:g} "
                          "s; greedy answer with its own bound", **mine)
    try:
        answer = _mip(problem._reduced, problem.n, deadline, list(greedy.sites))
    except SolverFailed as e:
        return _with_time(greedy, started, note=f"HiGHS failed ({e}); greedy answer with its "
                          "own bound", **mine)
    if answer.optimal and answer.objective >= greedy.households:
        exact = _exact_result(problem, answer, started, "HiGHS, proven optimal")
        return _with_time(exact, started, greedy_gap=_gap(greedy.households, exact.households),
                          **mine)
    if answer.optimal:  # HiGHS's optimum (within its tolerance) is worse: the greedy is optimal
        return _with_time(greedy, started, note="greedy, proven optimal by HiGHS", optimal=True,
                          bound=greedy.households, gap=0.0, greedy_gap=0.0, **mine)
    bound = min(greedy.bound, answer.bound if answer.bound is not None else math.inf)
    why = f"HiGHS stopped at the time limit of {time_limit_s:g} s ({answer.status})"
    if answer.sites and answer.objective > greedy.households:
        exact = _exact_result(problem, answer, started, "")
        bound = max(bound, exact.households)
        return _with_time(exact, started, note=why + "; its best solution, not proven optimal",
                          bound=bound, gap=_gap(exact.households, bound), **mine)
    bound = max(bound, greedy.households)
    return _with_time(greedy, started, note=why + "; greedy answer with the best bound known",
                      bound=bound, gap=_gap(greedy.households, bound), **mine)


def _with_time(result: SitingResult, started: float, **changes: Any) -> SitingResult:
    return replace(result, seconds=time.perf_counter() - started, **changes)
