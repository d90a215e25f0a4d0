"""Elo scores from pairwise comparisons: Bradley–Terry by maximum likelihood with the PM loss.

The model (paper §2.4, eq. 3.1): system i has a score R_i in Elo points and

    P(i beats j) = 1 / (1 + 10^((R_j - R_i) / 400))  =  sigmoid(r_i - r_j),  r = R ln(10) / 400

so 100 points is a 64% win rate. Fitting the scores by maximum likelihood on the outcomes is
minimising the preference-model loss ``log(1 + exp(r_loser - r_winner))`` summed over the
comparisons — the same loss a PM is trained with. A weak Gaussian prior (sd ``prior_sd`` Elo
points, 500 by default: worth well under one comparison per system) keeps the fit finite when a
system wins every comparison, and fixes the free additive constant; scores are then reported
relative to ``anchor`` (0 Elo) or to their mean. Fitted by Newton's method on counts aggregated
per ordered pair (a handful of iterations, exact to 1e-9); tested against a plain L2-penalised
logistic regression (scikit-learn) on the same battles.

How a rating on the paper's 8-point scale becomes an outcome (``method``):

* ``wins`` (default, as the paper fits its win table): A wins on 1-4, B wins on 5-8;
* ``half-ties``: the two "slightly better" points (4, 5) count as ties, half a win each;
* ``soft``: a graded target, P(A better) = (8 - rating) / 7 (1 -> 1.0, 4 -> 0.57, 8 -> 0.0);
* ``strength``: wins weighted by the rating's strength (1 slightly ... 4 much), normalised so the
  weights sum to the number of comparisons (a strength-weighted likelihood).

CIs are percentile bootstraps over comparisons (resampled with replacement, refitted, and
re-anchored each time). This is what FastChat's arena moved to from online Elo: the online update
depends on the order of the comparisons, the MLE does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hhhlab.stats import N_BOOT, Estimate

SCALE = 400.0 / math.log(10.0)  # Elo points per logit
METHODS = ("wins", "half-ties", "soft", "strength")


def outcomes(ratings: Sequence[int] | np.ndarray, method: str = "wins") -> tuple[np.ndarray, np.ndarray]:
    """``(y, w)``: the target P(A better) and the weight of each comparison under ``method``."""
    r = np.asarray(ratings, dtype=float)
    if r.size and (r.min() < 1 or r.max() > 8 or np.any(r != np.round(r))):
        raise ValueError("ratings must be integers from 1 (A much better) to 8 (B much better)")
    wins = (r <= 4).astype(float)
    ones = np.ones_like(r)
    if method == "wins":
        return wins, ones
    if method == "half-ties":
        return np.where((r == 4) | (r == 5), 0.5, wins), ones
    if method == "soft":
        return (8.0 - r) / 7.0, ones
    if method == "strength":
        s = np.where(r <= 4, 5 - r, r - 4)
        return wins, s * (len(s) / s.sum()) if len(s) else s
    raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")


def fit_bt(a: np.ndarray, b: np.ndarray, y: np.ndarray, w: np.ndarray, k: int, *, prior_sd: float = 500.0,
           init: np.ndarray | None = None, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """MAP Bradley–Terry scores (Elo points, length ``k``) for comparisons ``a[i]`` vs ``b[i]``
    with target ``y[i]`` = P(a better) and weight ``w[i]``; ``prior_sd`` in Elo points (inf: none,
    then the scores are only defined up to a constant and one is pinned at 0)."""
    # Aggregate per ordered pair: the likelihood only needs sum(w) and sum(w*y) for each.
    key = a * k + b
    wsum = np.bincount(key, weights=w, minlength=k * k)
    wysum = np.bincount(key, weights=w * y, minlength=k * k)
    nz = np.nonzero(wsum)[0]
    ia, ib, W, WY = nz // k, nz % k, wsum[nz], wysum[nz]
    prec = 0.0 if not math.isfinite(prior_sd) else (SCALE / prior_sd) ** 2  # prior precision in logits
    theta = np.zeros(k) if init is None else init / SCALE
    eye = np.eye(k)
    D = np.zeros((len(nz), k))
    D[np.arange(len(nz)), ia] += 1.0
    D[np.arange(len(nz)), ib] -= 1.0
    for _ in range(max_iter):
        d = D @ theta
        p = 1.0 / (1.0 + np.exp(-d))
        grad = D.T @ (W * p - WY) + prec * theta
        hess = (D.T * (W * p * (1 - p))) @ D + prec * eye
        if prec == 0.0:  # pin the first score (gauge) so the Hessian is invertible
            hess[0, :], hess[:, 0], hess[0, 0], grad[0] = 0.0, 0.0, 1.0, 0.0
        step = np.linalg.solve(hess + 1e-12 * eye, grad)
        theta = theta - step
        if np.max(np.abs(step)) < tol:
            break
    return theta * SCALE


def pm_loss(scores_elo: np.ndarray, a: np.ndarray, b: np.ndarray, y: np.ndarray) -> float:
    """Mean PM loss (eq. 3.1, with a soft target) of Elo scores on comparisons: log(1+exp(r_bad-r_good))."""
    d = (scores_elo[a] - scores_elo[b]) / SCALE
    return float(np.mean(y * np.logaddexp(0, -d) + (1 - y) * np.logaddexp(0, d)))


@dataclass
class EloFit:
    """Scores with bootstrap CIs, keyed by name; ``estimates`` values are in Elo points."""

    names: list[str]
    estimates: dict[str, Estimate]
    method: str
    n_comparisons: int
    prior_sd: float
    anchor: str | None
    loss: float
    boot_sd: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict]:
        from hhhlab.results import estimate_dict

        return {name: estimate_dict(est) for name, est in self.estimates.items()}


def fit_elo(battles: Sequence[tuple[str, str, int]], *, method: str = "wins", prior_sd: float = 500.0,
            n_boot: int = N_BOOT, seed: int = 0, anchor: str | None = None, level: float = 0.95) -> EloFit:
    """Elo scores of every name in ``battles`` ((name_a, name_b, rating 1-8) each)."""
    names = sorted({x for a, b, _ in battles for x in (a, b)})
    if anchor is not None and anchor not in names:
        raise ValueError(f"anchor {anchor!r} is not among the compared: {', '.join(names)}")
    idx = {n: i for i, n in enumerate(names)}
    k, n = len(names), len(battles)
    a = np.array([idx[x] for x, _, _ in battles], dtype=int)
    b = np.array([idx[x] for _, x, _ in battles], dtype=int)
    y, w = outcomes([r for *_, r in battles], method)

    def center(scores: np.ndarray) -> np.ndarray:
        return scores - (scores[idx[anchor]] if anchor is not None else scores.mean())

    if k == 0:
        return EloFit([], {}, method, 0, prior_sd, anchor, float("nan"))
    full = fit_bt(a, b, y, w, k, prior_sd=prior_sd)
    values = center(full)
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, k))
    for i in range(n_boot):
        sel = rng.integers(0, n, n)
        boots[i] = center(fit_bt(a[sel], b[sel], y[sel], w[sel], k, prior_sd=prior_sd, init=full))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, alpha, axis=0), np.quantile(boots, 1 - alpha, axis=0)
    counts = np.bincount(a, minlength=k) + np.bincount(b, minlength=k)
    label = f"bradley-terry-mle ({method}, PM loss, Elo scale, prior sd {prior_sd:g}) + bootstrap-percentile"
    ests = {nm: Estimate(float(values[i]), float(lo[i]), float(hi[i]), int(counts[i]), label)
            for i, nm in enumerate(names)}
    return EloFit(names, ests, method, n, prior_sd, anchor, pm_loss(full, a, b, y),
                  {nm: float(boots[:, i].std()) for i, nm in enumerate(names)})


def win_table(battles: Sequence[tuple[str, str, int]]) -> dict[str, dict[str, dict[str, float]]]:
    """Head-to-head (paper Table 2): ``table[row][col] = {"wins", "n", "rate"}``, the share of
    their comparisons that ``row`` won (on wins alone: the side the rating favours)."""
    wins: dict[tuple[str, str], int] = {}
    total: dict[tuple[str, str], int] = {}
    for x, z, r in battles:
        for row, col, won in ((x, z, r <= 4), (z, x, r > 4)):
            total[row, col] = total.get((row, col), 0) + 1
            wins[row, col] = wins.get((row, col), 0) + int(won)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for (row, col), nn in sorted(total.items()):
        table.setdefault(row, {})[col] = {"wins": wins[row, col], "n": nn, "rate": wins[row, col] / nn}
    return table


def expected_win_rate(gap_elo: float) -> float:
    """P(win) of a system ``gap_elo`` points above its opponent (100 -> 0.64)."""
    return 1.0 / (1.0 + 10 ** (-gap_elo / 400.0))
