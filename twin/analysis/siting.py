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
- :func:`solve_exact` solves the integer program with PuLP's bundled CBC (PuLP < 4; 4.0
  dropped the bundled binary) under a time limit: maximise sum w_i y_i subject to y_i <=
  sum of x_j over the candidates j reaching i, sum x_j = min(N, useful candidates),
  x binary, 0 <= y <= 1.
- :func:`solve` runs the greedy first (an incumbent, CBC's warm start and the fallback),
  then CBC in the time left; it reports the greedy's gap to the proven optimum, or, when
  CBC fails or stops at the time limit, the best answer known with the best bound known.

Sites come out in the order of their marginal gain (each the one adding the most to those
before it), with the households each adds. When fewer than N candidates add anything the
rest are filled with candidates that add nothing (those reaching the most households).
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
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
_MIN_CBC_S = 0.05  # less time than this left for CBC: do not start it
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
    """CBC could not be run or gave no answer."""


@dataclass(frozen=True)
class _CbcAnswer:
    sites: list[int]  # empty when CBC found no integer solution
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


def _cbc_bound(log: str) -> float | None:
    """CBC's best bound from its log (it minimises the negated objective)."""
    for pattern in (r"Upper bound:\s*(-?[\d.eE+-]+)", r"best possible\s*(-?[\d.eE+-]+)",
                    r"Continuous objective value is\s*(-?[\d.eE+-]+)"):
        found = re.search(pattern, log)
        if found:
            try:
                return abs(float(found.group(1)))
            except ValueError:
                continue
    return None


def _cbc(r: _Reduced, n: int, deadline: float, start: list[int] | None) -> _CbcAnswer:
    """The integer program solved by PuLP's CBC, given what is left until ``deadline`` (a
    ``time.perf_counter()`` value) once the model is built; raises :class:`SolverFailed`."""
    import pulp  # imported here: an import the greedy path never pays

    quiet = getattr(pulp, "set_v4_migration_warnings", None)
    if quiet is not None:  # PuLP 3.3 warns about 4.0 on every variable; pyproject pins < 4
        quiet(False)

    groups, gw = _groups(r)
    useful = np.flatnonzero(np.diff(r.a.indptr) > 0)
    k = min(n, useful.shape[0])
    if k == 0 or groups.shape[0] == 0:
        return _CbcAnswer([], 0.0, True, 0.0, _NOTHING)
    prob = pulp.LpProblem("siting", pulp.LpMaximize)
    x = {int(j): pulp.LpVariable(f"x{j}", cat=pulp.LpBinary) for j in useful}
    y = [pulp.LpVariable(f"y{g}", lowBound=0, upBound=1) for g in range(groups.shape[0])]
    prob += pulp.lpSum(float(gw[g]) * y[g] for g in range(len(y)))
    indptr, indices = groups.indptr, groups.indices
    for g in range(len(y)):
        prob += y[g] <= pulp.lpSum(x[int(j)] for j in indices[indptr[g]:indptr[g + 1]])
    prob += pulp.lpSum(x.values()) == k
    if start is not None:
        chosen = {j for j in start if j in x}
        for j, var in x.items():
            var.setInitialValue(1.0 if j in chosen else 0.0)
        hit = np.zeros(r.a.shape[0], dtype=bool)
        hit[list(chosen)] = True
        covered_g = np.asarray(groups @ hit.astype(np.float64)) > 0
        for g, var in enumerate(y):
            var.setInitialValue(1.0 if covered_g[g] else 0.0)
    with tempfile.TemporaryDirectory(prefix="twin-siting-") as tmp:
        log = Path(tmp) / "cbc.log"
        left = max(deadline - time.perf_counter(), _MIN_CBC_S)
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=round(left, 3),
                                   warmStart=start is not None, logPath=str(log))
        solver.tmpDir = tmp
        try:
            prob.solve(solver)
        except pulp.PulpSolverError as e:
            raise SolverFailed(str(e)) from e
        text = log.read_text(errors="replace") if log.exists() else ""
    status = pulp.LpSolution.get(prob.sol_status, str(prob.sol_status)).lower()
    has_solution = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if not has_solution:
        return _CbcAnswer([], 0.0, False, _cbc_bound(text), status)
    sites = [j for j, var in x.items() if (var.value() or 0.0) > 0.5]
    objective = float(r.w[_counts(r, sites) > 0].sum())
    optimal = prob.sol_status == pulp.LpSolutionOptimal
    bound = objective if optimal else _cbc_bound(text)
    return _CbcAnswer(sites, objective, optimal, bound, status)


def _exact_result(problem: SitingProblem, answer: _CbcAnswer, started: float, note: str
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
    """The integer program with CBC within ``time_limit_s`` (a warm ``start`` optional).

    Raises :class:`SolverFailed` when CBC fails or finds no solution in time; when it stops at
    the limit with a solution, that solution comes back with ``optimal`` False and the best
    bound known (CBC's, or the submodular one of the solution).
    """
    started = time.perf_counter()
    answer = _cbc(problem._reduced, problem.n, started + time_limit_s,
                  list(start) if start is not None else None)
    if not answer.sites and answer.status != _NOTHING:
        raise SolverFailed(f"CBC found no solution ({answer.status})")
    note = "CBC, proven optimal" if answer.optimal else \
        f"CBC stopped at the time limit of {time_limit_s:g} s, not proven optimal"
    return _exact_result(problem, answer, started, note)


def solve(problem: SitingProblem, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
          greedy_budget_ms: float = DEFAULT_GREEDY_BUDGET_MS) -> SitingResult:
    """Greedy first, then CBC warm-started from it within what is left of ``time_limit_s``.

    - CBC proves optimality: its answer (``method`` "exact"), with the greedy's households
      and its gap to the optimum in ``greedy_households`` and ``greedy_gap``;
    - CBC stops at the limit: the better of CBC's incumbent ("exact", not optimal) and the
      greedy (the greedy on a tie), with the tighter of CBC's and the greedy's bounds;
    - CBC fails, or no time is left for it: the greedy with its own bound.
    ``note`` says which happened.
    """
    started = time.perf_counter()
    deadline = started + time_limit_s
    greedy = solve_greedy(problem, min(greedy_budget_ms, 1000.0 * time_limit_s))
    mine = {"greedy_households": greedy.households}
    if greedy.optimal:
        return _with_time(greedy, started, note="greedy, proven optimal by its own bound; CBC "
                          "not needed", greedy_gap=0.0, **mine)
    if deadline - time.perf_counter() < _MIN_CBC_S:
        return _with_time(greedy, started, note=f"no time left for CBC within {time_limit_s:g} "
                          "s; greedy answer with its own bound", **mine)
    try:
        answer = _cbc(problem._reduced, problem.n, deadline, list(greedy.sites))
    except SolverFailed as e:
        return _with_time(greedy, started, note=f"CBC failed ({e}); greedy answer with its "
                          "own bound", **mine)
    if answer.optimal and answer.objective >= greedy.households:
        exact = _exact_result(problem, answer, started, "CBC, proven optimal")
        return _with_time(exact, started, greedy_gap=_gap(greedy.households, exact.households),
                          **mine)
    if answer.optimal:  # CBC's optimum (within its tolerance) is worse: the greedy is optimal
        return _with_time(greedy, started, note="greedy, proven optimal by CBC", optimal=True,
                          bound=greedy.households, gap=0.0, greedy_gap=0.0, **mine)
    bound = min(greedy.bound, answer.bound if answer.bound is not None else math.inf)
    why = f"CBC stopped at the time limit of {time_limit_s:g} s ({answer.status})"
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
