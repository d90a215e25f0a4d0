"""The paper's two human-feedback figures: the head-to-head win table (Table 2) and Elo against
non-embedding parameters (Fig 9: a line for the prompted models, points with error bars for the
other conditions). matplotlib's Agg backend, no display needed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from hhhlab.report.figures import CONDITION_STYLE
from hhhlab.report.footnote import save_with_note


def plot_win_table(table: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path,
                   order: list[str] | None = None) -> Path:
    """Row-vs-column win rates with counts; blank where two systems never met."""
    import numpy as np

    names = order or sorted(set(table) | {c for row in table.values() for c in row})
    k = len(names)
    grid = np.full((k, k), np.nan)
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * k, 1.2 + 0.8 * k))
    for i, row in enumerate(names):
        for j, col in enumerate(names):
            cell = table.get(row, {}).get(col)
            if cell:
                grid[i, j] = cell["rate"]
                ax.text(j, i, f"{cell['rate']:.2f}\n(n={int(cell['n'])})", ha="center", va="center", fontsize=8)
    im = ax.imshow(grid, cmap="RdBu", vmin=0, vmax=1)
    short = [_short(n) for n in names]
    ax.set_xticks(range(k), short, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(k), short, fontsize=8)
    ax.set_xlabel("column (opponent)")
    ax.set_ylabel("row")
    ax.set_title("Head-to-head win rate of row vs column (Table 2)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return save_with_note(fig, path)


def plot_elo_vs_params(elo: Mapping[str, Mapping[str, Any]], systems: Mapping[str, Mapping[str, Any]],
                       path: str | Path, caveats: list[str] | None = None) -> Path | None:
    """Elo (with its CI) against non-embedding parameters, one series per condition.

    ``systems[name]`` needs ``non_embedding_params`` and ``condition``; names without them are
    left out (returns None when none has them)."""
    series: dict[str, list[tuple[float, float, float, float]]] = {}
    for name, est in elo.items():
        info = systems.get(name) or {}
        n_params = info.get("non_embedding_params")
        if not n_params or est.get("value") is None:
            continue
        lo, hi = est.get("lo", est["value"]), est.get("hi", est["value"])
        series.setdefault(info.get("condition") or "all", []).append((float(n_params), est["value"], lo, hi))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for cond, pts in sorted(series.items()):
        pts.sort()
        label, colour = CONDITION_STYLE.get(cond, (cond, None))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        # A bootstrap interval need not contain the point estimate (tiny samples): clip at 0.
        err = [[max(0.0, p[1] - p[2]) for p in pts], [max(0.0, p[3] - p[1]) for p in pts]]
        line = "-o" if cond in ("prompt", "all") else "o"
        ax.errorbar(xs, ys, yerr=err, fmt=line, color=colour, label=label, capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters")
    ax.set_ylabel("relative Elo (95% CI)")
    ax.set_title("Elo from human preferences (Fig 9)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_with_note(fig, path, "; ".join(sorted(set(caveats or [])))[:200])


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2):]
