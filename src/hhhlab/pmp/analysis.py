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


# -- the sweep's figures as numbers (Figs 4, 5, 18, 29): shared by the PNGs and the report -------

FIG29_CONDITIONS = ("none", "lm_only", "pm_only", "binarized")
"""The loss ablation's curves: no PMP, LM only (0, 1), PM only (1, 0), PM+LM (1, 1) binarized."""


def paired_gain(p: dict, base: dict) -> tuple[float, float | None]:
    """``(accuracy(p) − accuracy(base), its standard error or None)``: both points were evaluated
    on the same held-out pairs, so the error is that of the mean per-pair difference of outcomes
    (None without per-pair outcomes)."""
    diff = float(p["accuracy"]["value"]) - float(base["accuracy"]["value"])
    a, b = p.get("pair_correct"), base.get("pair_correct")
    if a is None or b is None or len(a) != len(b) or len(a) < 2:
        return diff, None
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return diff, float(d.std(ddof=1) / math.sqrt(len(d)))


def gain_by_n(points: list[dict], cond: str, base_cond: str, target: str | None = None
              ) -> dict[int, list[tuple[float, float | None]]]:
    """Per n, the paired gains (`paired_gain`) of ``cond`` over ``base_cond``, one per (model,
    target) measured under both (only ``target``'s when given)."""
    base = {(p.get("model"), p["target"], p["n"]): p for p in points if p["condition"] == base_cond}
    out: dict[int, list[tuple[float, float | None]]] = {}
    for p in points:
        k = (p.get("model"), p["target"], p["n"])
        if p["condition"] == cond and (target is None or p["target"] == target) and k in base:
            out.setdefault(p["n"], []).append(paired_gain(p, base[k]))
    return dict(sorted(out.items()))


def mean_gain_curve(points: list[dict], cond: str, base_cond: str = "none", target: str | None = None
                    ) -> list[dict]:
    """Fig 4 (``base_cond="none"``) / Fig 18 (binarized over ranked): per n, the mean gain over
    targets as an estimate; its 95% interval is ±1.96 × the mean's standard error, the targets'
    errors combined as independent (absent when a point lacks per-pair outcomes)."""
    rows = []
    for n, gains in gain_by_n(points, cond, base_cond, target).items():
        mean = float(np.mean([g for g, _ in gains]))
        ses = [se for _, se in gains if se is not None]
        half = 1.96 * math.sqrt(sum(se * se for se in ses)) / len(ses) if len(ses) == len(gains) else None
        rows.append({"n": n, "value": mean, "lo": None if half is None else mean - half,
                     "hi": None if half is None else mean + half, "n_targets": len(gains),
                     "method": "mean over targets of paired differences" + ("" if half is None else ", normal CI")})
    return rows


def reference_sizes(points: list[dict]) -> list[int]:
    """Fig 5's reference fine-tuning sizes (the paper's 500 and 5k pairs): the smallest and the
    largest positive size measured (one size when only one was)."""
    sizes = sorted({p["n"] for p in points if p["n"] > 0})
    return sorted({sizes[0], sizes[-1]}) if sizes else []


def transfer_at(points: list[dict], n: int, cond: str) -> dict[str, float]:
    """Fig 5: per model (in the points' order), mean accuracy over targets of ``cond`` at size ``n``."""
    by: dict[str, list[float]] = {}
    for p in points:
        if p["condition"] == cond and p["n"] == n:
            by.setdefault(str(p.get("model", "")), []).append(float(p["accuracy"]["value"]))
    return {m: float(np.mean(v)) for m, v in by.items()}


def sweep_figure_plan(points: list[dict]) -> dict[str, list[str]]:
    """Which of the sweep's figures its conditions allow, and the conditions each compares:
    Fig 4 per PMP condition measured with the no-PMP baseline, Fig 18 with binarized and ranked,
    Fig 29 with an ablation condition, Fig 5 with any positive size."""
    conds = {p["condition"] for p in points}
    plan: dict[str, list[str]] = {}
    if "none" in conds:
        pmp = [c for c in ("binarized", "ranked", "pm_only", "lm_only") if c in conds]
        if pmp:
            plan["4"] = pmp
    if {"binarized", "ranked"} <= conds:
        plan["18"] = ["binarized", "ranked"]
    if {"pm_only", "lm_only"} & conds:
        plan["29"] = [c for c in FIG29_CONDITIONS if c in conds]
    if reference_sizes(points):
        plan["5"] = sorted(conds, key=lambda c: (c != "none", c))
    return plan
