"""Matplotlib figures of the PMP stage in the paper's styles (digest §7):

* Fig 17 — accuracy vs fine-tuning pairs (log x), one line per condition, one panel per target;
* Fig 4 — mean PMP gain (PMP − no PMP, mean over targets) vs fine-tuning pairs;
* Fig 5 — mean accuracy at two reference sizes vs model (one panel per size);
* Fig 18 — binarized-over-ranked gain vs pairs (light per target, bold mean);
* Fig 29 — the loss ablation (no PMP, LM only, PM only, PM+LM);
* Fig 33 — the synthetic experiment (no PMP, binary, weakly .. very strongly scrambled).

Inputs are the sweeps' ``points`` (dicts with ``n``, ``condition``, ``target``, ``model`` and
an ``accuracy`` estimate). n = 0 is drawn at x = 0.5 (log axes have no zero), labelled "0".
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

from hhhlab.pmp.analysis import mean_gain_curve, reference_sizes, sweep_figure_plan, transfer_at
from hhhlab.report.footnote import save_with_note

DEFAULT_MODEL_NOTE = "SmolLM2-135M-Instruct (Q4_1-dequantised) rungs"


def _x(n: int) -> float:
    return n if n > 0 else 0.5


def _log_axis(ax, sizes) -> None:
    ax.set_xscale("log")
    ticks = sorted({_x(n) for n in sizes})
    ax.set_xticks(ticks)
    ax.set_xticklabels(["0" if t == 0.5 else str(int(t)) for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("fine-tuning pairs")


def _curve(ax, pts: list[dict], label: str, **kw) -> None:
    pts = sorted(pts, key=lambda p: p["n"])
    xs = [_x(p["n"]) for p in pts]
    ys = [p["accuracy"]["value"] for p in pts]
    lo = [p["accuracy"]["value"] - p["accuracy"]["lo"] for p in pts]
    hi = [p["accuracy"]["hi"] - p["accuracy"]["value"] for p in pts]
    ax.errorbar(xs, ys, yerr=[lo, hi], label=label, marker="o", ms=3, capsize=2, **kw)


def _save(fig, path: Path, note: str) -> Path:
    if "smollm2" in note.lower() and DEFAULT_MODEL_NOTE not in note:
        note += f" {DEFAULT_MODEL_NOTE}."
    return save_with_note(fig, path, note)


def fig33_synthetic(points: list[dict], path: str | Path, *, model: str, letters: int = 26) -> Path:
    order = ["No PM pretrain", "Binary", "Weakly scrambled", "Moderately scrambled", "Strongly scrambled",
             "Very strongly scrambled"]
    colors = {"No PM pretrain": "black", "Binary": "tab:purple", "Weakly scrambled": "#9ecae1",
              "Moderately scrambled": "#4292c6", "Strongly scrambled": "#2171b5", "Very strongly scrambled": "#08306b"}
    fig, ax = plt.subplots(figsize=(6, 4))
    by = defaultdict(list)
    for p in points:
        by[p["condition"]].append(p)
    for cond in order + [c for c in by if c not in order]:
        if cond in by:
            _curve(ax, by[cond], cond, color=colors.get(cond))
    _log_axis(ax, [p["n"] for p in points])
    ax.set_ylabel("accuracy on held-out T0 pairs")
    ax.set_title(f"Synthetic ranked vs binary PMP ({letters * letters} symbols)")
    ax.axhline(0.5, color="#bbb", lw=0.8, ls=":")
    ax.legend(fontsize=8)
    return _save(fig, Path(path), f"{model}; 95% bootstrap CIs over eval pairs. Paper: Fig 33 (13B).")


def fig17_curves(points: list[dict], path: Path, *, model: str) -> Path:
    targets = sorted({p["target"] for p in points})
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), squeeze=False)
    for ax, t in zip(axes[0], targets):
        by = defaultdict(list)
        for p in points:
            if p["target"] == t:
                by[p["condition"]].append(p)
        for cond, pts in sorted(by.items()):
            _curve(ax, pts, cond, color="black" if cond == "none" else None)
        _log_axis(ax, [p["n"] for p in points])
        ax.set_title(t)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
    return _save(fig, path, f"{model}; Fig 17 style; 95% bootstrap CIs.")


def fig_gain(points: list[dict], path: Path, *, cond: str, base_cond: str, title: str, model: str) -> Path:
    """Fig 4 (PMP − none) / Fig 18 (binarized − ranked): light per target, bold mean."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for t in sorted({p["target"] for p in points}):
        rows = mean_gain_curve(points, cond, base_cond, target=t)
        ax.plot([_x(r["n"]) for r in rows], [r["value"] for r in rows], alpha=0.35, lw=1, label=t)
    rows = mean_gain_curve(points, cond, base_cond)
    ax.plot([_x(r["n"]) for r in rows], [r["value"] for r in rows], color="black", lw=2.5, label="mean")
    ax.axhline(0, color="#888", lw=0.8)
    _log_axis(ax, [r["n"] for r in rows])
    ax.set_ylabel("accuracy difference")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _save(fig, path, f"{model}.")


def fig5_transfer(points: list[dict], path: Path, *, sizes: list[int]) -> Path:
    models = list(dict.fromkeys(p["model"] for p in points))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes), 3.6), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        for cond in sorted({p["condition"] for p in points}):
            acc = transfer_at(points, n, cond)
            ax.plot(range(len(models)), [acc.get(m, float("nan")) for m in models], marker="o", label=cond,
                    color="black" if cond == "none" else None)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, fontsize=7, rotation=15)
        ax.set_title(f"mean transfer at {n} fine-tuning pairs")
        ax.set_ylabel("accuracy (mean over targets)")
        ax.legend(fontsize=7)
    return _save(fig, path, "Fig 5 style; x = model (ladder rungs, not parameter counts); " + ", ".join(models))


def sweep_figures(points: list[dict], out: Path) -> dict[str, str]:
    """Every figure the sweep's conditions allow (`sweep_figure_plan`); returns {name: path}."""
    out = Path(out)
    figs: dict[str, str] = {}
    plan = sweep_figure_plan(points)
    for model in dict.fromkeys(p["model"] for p in points):
        pts = [p for p in points if p["model"] == model]
        tag = model.replace("/", "_").replace(":", "_").replace(",", "_")
        figs[f"fig17:{model}"] = str(fig17_curves([p for p in pts if p["condition"] in ("none", "binarized", "ranked")],
                                                  out / f"fig17_{tag}.png", model=model))
        for cond in plan.get("4", []):
            if cond in ("binarized", "ranked"):
                figs[f"fig4:{model}:{cond}"] = str(fig_gain(pts, out / f"fig4_{tag}_{cond}.png", cond=cond,
                                                            base_cond="none", title=f"mean gain of {cond} PMP",
                                                            model=model))
        if "18" in plan:
            figs[f"fig18:{model}"] = str(fig_gain(pts, out / f"fig18_{tag}.png", cond="binarized", base_cond="ranked",
                                                  title="gain of binarized over ranked PMP", model=model))
        if "29" in plan:
            figs[f"fig29:{model}"] = str(fig17_curves([p for p in pts if p["condition"] in plan["29"]],
                                                      out / f"fig29_{tag}.png", model=f"{model} (binarized = PM+LM)"))
    if "5" in plan:
        figs["fig5"] = str(fig5_transfer(points, out / "fig5_transfer.png", sizes=reference_sizes(points)))
    return figs
