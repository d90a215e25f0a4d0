"""Scaling figures of the PM-vs-IL sweep in the paper's style (its Figs 3, 14 and 15).

x is the number of non-embedding parameters on a log axis (the paper's x-axis); every point
carries its 95% CI as an error bar. Ranked datasets are drawn in blue and binary ones in orange,
as in the paper's Fig 3, with bold lines for the mean over each kind.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

KIND_COLOURS = {"ranked": "tab:blue", "binary": "tab:orange"}
OBJECTIVE_STYLE = {"preference": ("Preference Modeling", "tab:blue", "o"),
                   "imitation": ("Imitation Learning", "tab:orange", "s"),
                   "classifier": ("Classifier (BCE)", "tab:green", "^")}


def _errorbar(ax, xs, ys, cis, **kw) -> None:
    order = np.argsort(xs)
    xs, ys = np.asarray(xs)[order], np.asarray(ys)[order]
    lo = np.array([c[0] for c in cis])[order]
    hi = np.array([c[1] for c in cis])[order]
    ax.errorbar(xs, ys, yerr=[ys - lo, hi - ys], capsize=3, **kw)


def plot_sweep(results: dict | str | Path, out_dir: Path) -> list[Path]:
    """Write ``accuracy_vs_params.png`` (Figs 14–15) and ``pm_minus_il.png`` (Fig 3).
    ``results``: a sweep's results, its ``sweep.json`` document, or that file's path (legacy too)."""
    from hhhlab.results import payload_of

    results = payload_of(results, kind="sweep_objectives")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    datasets = list(results["datasets"])
    ncols = min(3, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, datasets):
        by_obj: dict[str, list[dict]] = defaultdict(list)
        for c in results["cells"]:
            if c["dataset"] == name and c.get("accuracy") is not None:
                by_obj[c["objective"]].append(c)
        for obj, cells in by_obj.items():
            label, colour, marker = OBJECTIVE_STYLE.get(obj, (obj, None, "o"))
            _errorbar(ax, [c["non_embedding_params"] for c in cells], [c["accuracy"] for c in cells],
                      [c["accuracy_ci"] for c in cells], label=label, color=colour, marker=marker)
        kind = results["datasets"][name]["kind"]
        ax.set(xscale="log", title=f"{name} ({kind.capitalize()})", xlabel="Non-embedding parameters",
               ylabel="Accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(datasets):]:
        ax.axis("off")
    fig.tight_layout()
    paths.append(out_dir / "accuracy_vs_params.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    gains = results.get("gains") or []
    if gains:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        by_ds: dict[str, list[dict]] = defaultdict(list)
        for g in gains:
            by_ds[g["dataset"]].append(g)
        for name, rows in by_ds.items():
            colour = KIND_COLOURS.get(rows[0]["kind"], "grey")
            _errorbar(ax, [r["non_embedding_params"] for r in rows], [r["gain"] for r in rows],
                      [r["gain_ci"] for r in rows], color=colour, alpha=0.35, marker=".", label=None)
        for kind, colour in KIND_COLOURS.items():
            rows = [g for g in gains if g["kind"] == kind]
            if not rows:
                continue
            per_size: dict[int, list[float]] = defaultdict(list)
            for r in rows:
                per_size[r["non_embedding_params"]].append(r["gain"])
            xs = sorted(per_size)
            ax.plot(xs, [np.mean(per_size[x]) for x in xs], color=colour, lw=3, marker="o",
                    label=f"Mean over {kind} ({len({r['dataset'] for r in rows})} datasets)")
        ax.axhline(0, color="black", lw=0.8)
        ax.set(xscale="log", xlabel="Non-embedding parameters", ylabel="Accuracy gain (PM − IL)",
               title="Acc Gain of Preference Modeling over Imitation Learning")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / "pm_minus_il.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
