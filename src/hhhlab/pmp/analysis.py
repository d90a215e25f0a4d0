"""Fine-tuning pairs saved at equal accuracy: the number the paper shows only as curves (Fig 17).

For a condition (PMP) measured at sizes n_i with accuracy a_i, and the baseline (no PMP) curve
b(n) measured at its sizes, the **equivalent baseline size** of point i is the n at which the
baseline reaches a_i, by linear interpolation of b against log n between the measured sizes (on
the running maximum of b, so a noisy dip does not create two crossings). Pairs saved =
equivalent n − n_i; the ratio equivalent n / n_i is reported too. When a_i is above every
baseline point the saving is censored: reported as "more than" (``censored: "above"``) with
the largest baseline size as its bound; below the baseline's smallest measured accuracy it is
``censored: "below"`` (PMP worse than the baseline at its smallest n). n = 0 points (zero-shot)
are interpolated like any other but have no ratio.

CIs: a paired bootstrap over the held-out pairs. Every point of both curves was evaluated on the
same eval file, so one resample of pair indices is applied to every point's per-pair outcomes,
the curves are recomputed and the saving recomputed; the percentile interval of the resampled
savings (censored resamples at their bound) is the CI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _log(n: float) -> float:
    return math.log(n) if n > 0 else math.log(0.5)  # n = 0 sits half a pair left of n = 1


def equivalent_n(acc: float, sizes: Sequence[int], baseline: Sequence[float]) -> tuple[float, str | None]:
    """``(baseline size reaching acc, censored)``; see the module docstring."""
    order = np.argsort(sizes)
    xs = np.array([_log(sizes[i]) for i in order])
    ys = np.maximum.accumulate(np.array([baseline[i] for i in order], dtype=float))
    if acc > ys[-1]:
        return float(sizes[order[-1]]), "above"
    if acc < ys[0]:
        return float(sizes[order[0]]), "below"
    k = int(np.searchsorted(ys, acc, side="left"))
    if k == 0 or ys[k] == ys[k - 1]:
        x = xs[k]
    else:
        x = xs[k - 1] + (acc - ys[k - 1]) / (ys[k] - ys[k - 1]) * (xs[k] - xs[k - 1])
    n = math.exp(x)
    return (0.0 if n <= 0.5 + 1e-9 else n), None


def pairs_saved(points: list[dict], baseline: list[dict], *, n_boot: int = 1000, seed: int = 0,
                level: float = 0.95) -> list[dict]:
    """One row per point of ``points`` (dicts with ``n``, ``accuracy.value``, ``pair_correct``)
    against the ``baseline`` curve: equivalent n, pairs saved and ratio, each with a paired
    bootstrap CI."""
    base_sizes = [p["n"] for p in baseline]
    base_acc = [p["accuracy"]["value"] for p in baseline]
    base_correct = np.array([p["pair_correct"] for p in baseline], dtype=float)  # [B points, P pairs]
    rows = []
    rng = np.random.default_rng(seed)
    n_pairs = base_correct.shape[1]
    idx = rng.integers(0, n_pairs, size=(n_boot, n_pairs))
    base_boot = base_correct[:, idx].mean(axis=2).T  # [n_boot, B]
    for p in points:
        n, acc = p["n"], p["accuracy"]["value"]
        eq, censored = equivalent_n(acc, base_sizes, base_acc)
        correct = np.asarray(p["pair_correct"], dtype=float)
        if correct.shape[0] != n_pairs:
            raise ValueError(f"point n={n} was evaluated on {correct.shape[0]} pairs, the baseline on {n_pairs}")
        boot_acc = correct[idx].mean(axis=1)
        saved = np.array([equivalent_n(a, base_sizes, b)[0] - n for a, b in zip(boot_acc, base_boot)])
        lo, hi = np.quantile(saved, [(1 - level) / 2, (1 + level) / 2])
        rows.append({"n": n, "accuracy": acc, "equivalent_baseline_n": eq, "censored": censored,
                     "pairs_saved": {"value": eq - n, "lo": float(lo), "hi": float(hi), "n": n_pairs,
                                     "method": "paired bootstrap over eval pairs, log-n interpolation"},
                     "ratio": (eq / n) if n > 0 else None})
    return rows


def mean_gain(curves: dict[str, list[dict]], baselines: dict[str, list[dict]]) -> dict[int, float]:
    """Mean over targets of accuracy(condition) − accuracy(baseline) at each shared n (Fig 4)."""
    by_n: dict[int, list[float]] = {}
    for target, pts in curves.items():
        base = {p["n"]: p["accuracy"]["value"] for p in baselines.get(target, [])}
        for p in pts:
            if p["n"] in base:
                by_n.setdefault(p["n"], []).append(p["accuracy"]["value"] - base[p["n"]])
    return {n: float(np.mean(v)) for n, v in sorted(by_n.items())}
