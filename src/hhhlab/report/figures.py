"""Paper-style figures from an ``hhhlab eval`` report: metric vs non-embedding parameters.

The paper's alignment-eval figures share one look: x = number of (non-embedding) parameters on a
log axis, one line per condition (No Intervention / Full Prompt / Context Distilled, or LM /
LM+Prompt / LM+Context Distillation), points with 95% CIs. ``PAPER_FIGURES`` lists the ones we
reproduce (Fig 2 left, 6, 7, 8, 10, 21); any other eval gets one panel per headline metric.
Figures are written with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CONDITION_STYLE = {  # the paper's legend names and a fixed colour per condition
    "plain": ("No Intervention (LM)", "tab:gray"),
    "prompt": ("Full Prompt (LM+Prompt)", "tab:blue"),
    "distilled": ("Context Distilled", "tab:orange"),
}
METRIC_STYLE = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Panel:
    eval: str
    metrics: tuple[str, ...]  # one line per (condition, metric)
    title: str
    ylabel: str
    conditions: tuple[str, ...] | None = None  # None = every condition in the report
    tax: bool = False  # plot plain - other (the paper's "alignment tax") instead of the metric


@dataclass(frozen=True)
class Figure:
    name: str
    panels: tuple[Panel, ...]


PAPER_FIGURES = (
    Figure("fig2_left_hhh", (Panel("hhh_alignment", ("acc_mi",), "Prompting and Context Distillation on Alignment Evals",
                                   "HHH eval accuracy (mutual information)"),)),
    Figure("fig6_left_hhh_by_category", tuple(
        Panel("hhh_alignment", ("acc_mi_other", "acc_mi_honest", "acc_mi_helpful", "acc_mi_harmless"),
              f"HHH Evals by Category ({c})", "accuracy", conditions=(c,)) for c in ("plain", "prompt", "distilled"))),
    Figure("fig6_right_truthfulqa", (Panel("truthfulqa_mc1", ("acc_mi", "acc"), "TruthfulQA (MC1)", "accuracy"),)),
    Figure("fig21_truthfulqa_metrics", (Panel("truthfulqa_mc1", ("acc_mi", "acc_mean", "acc"),
                                              "TruthfulQA MC1 with various metrics", "accuracy"),)),
    Figure("fig7_lambada", (Panel("lambada", ("acc",), "Lambada (zero-shot)", "accuracy"),
                            Panel("lambada", ("acc",), "Lambada Alignment Tax", "LM - Aligned Accuracy", tax=True))),
    Figure("fig8_toxicity", (Panel("toxicity", ("nontoxic_mean_toxicity",), "Toxicity, non-toxic prompts", "average toxicity"),
                             Panel("toxicity", ("toxic_mean_toxicity",), "Toxicity, toxic prompts", "average toxicity"))),
    Figure("fig23_toxicity_appendix", tuple(
        Panel("toxicity", (f"{split}_{m}",), f"{title}, {split.replace('nontoxic', 'non-toxic')} prompts", title)
        for m, title in (("max_toxicity", "Expected Max Toxicity"), ("toxic_any", "Prob. of Toxicity"))
        for split in ("nontoxic", "toxic"))),
    Figure("fig10_code", (Panel("humaneval", ("pass@10", "pass@1"), "Codex (HumanEval) Alignment Tax", "fraction passing"),
                          Panel("quixbugs", ("pass@10", "pass@1"), "QuixBugs Alignment Tax", "fraction passing"))),
)
HEADLINE_SKIP = ("acc_mi_", "acc_harmless", "acc_helpful", "acc_honest", "acc_other", "toxic_", "nontoxic_")


def _params(data: dict) -> dict[str, int]:
    """Model slot -> non-embedding parameters of the slot's (plain) model."""
    out: dict[str, int] = {}
    for spec, m in data["models"].items():
        slot = m.get("slot", spec)
        if spec == slot or slot not in out:
            out[slot] = int(m["non_embedding_params"])
    return out


def _series(data: dict, ev: str, metric: str, cond: str, tax: bool) -> list[tuple[int, float, float, float]]:
    params = _params(data)
    pts = []
    if tax:
        for d in data.get("differences", []):
            if d["eval"] == ev and d["metric"] == metric and d["comparison"] == f"{cond} - plain":
                # the tax is plain - aligned: flip the sign of (aligned - plain)
                pts.append((params[d["model"]], -d["value"], -d["hi"], -d["lo"]))
    else:
        for r in data["results"]:
            if r["eval"] == ev and r["condition"] == cond and r["variant"] is None and metric in r["metrics"]:
                e = r["metrics"][metric]
                pts.append((params[r["model"]], e["value"], e["lo"], e["hi"]))
    return sorted(pts)


def _draw(ax, data: dict, panel: Panel) -> int:
    conds = panel.conditions or tuple(dict.fromkeys(r["condition"] for r in data["results"]))
    n_lines = 0
    for cond in conds:
        if panel.tax and cond == "plain":
            continue
        label, colour = CONDITION_STYLE.get(cond, (cond, None))
        for k, metric in enumerate(panel.metrics):
            pts = _series(data, panel.eval, metric, cond, panel.tax)
            if not pts:
                continue
            x, y, lo, hi = zip(*pts)
            lab = label if len(panel.metrics) == 1 else f"{label}: {metric}"
            colour_k = colour if len(panel.metrics) == 1 or panel.conditions is None else None
            ax.errorbar(x, y, yerr=[[yi - li for yi, li in zip(y, lo)], [hi_ - yi for yi, hi_ in zip(y, hi)]],
                        fmt="o" + METRIC_STYLE[k % len(METRIC_STYLE)], color=colour_k, label=lab, capsize=3,
                        markersize=4, linewidth=1.5)
            n_lines += 1
    ax.set_xscale("log")
    ax.set_xlabel("Number of Parameters (non-embedding)")
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if n_lines:
        ax.legend(fontsize=7)
    return n_lines


def _save(fig_name: str, panels: tuple[Panel, ...], data: dict, out_dir: Path) -> Path | None:
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    drawn = sum(_draw(ax, data, p) for ax, p in zip(axes[0], panels))
    path = None
    if drawn:
        models = ", ".join(sorted({r["model"] for r in data["results"]}))
        fig.suptitle(f"hhhlab — {models}", fontsize=7)
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{fig_name}.png"
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_suite(data: dict | str | Path, out_dir: str | Path) -> list[Path]:
    """Write every paper figure the report has data for, plus one figure per other eval.
    ``data``: an eval report, its results document, or the path of either (legacy files too)."""
    from hhhlab.results import payload_of

    data = payload_of(data, kind="eval")
    out_dir = Path(out_dir)
    written = []
    covered: set[str] = set()
    for fig in PAPER_FIGURES:
        panels = tuple(p for p in fig.panels if any(r["eval"] == p.eval for r in data["results"]))
        if panels and (path := _save(fig.name, panels, data, out_dir)):
            written.append(path)
            covered.update(p.eval for p in panels)
    for ev in dict.fromkeys(r["eval"] for r in data["results"]):
        if ev in covered:
            continue
        metrics = tuple(dict.fromkeys(m for r in data["results"] if r["eval"] == ev for m in r["metrics"]
                                      if not m.startswith(HEADLINE_SKIP)))
        panels = tuple(Panel(ev, (m,), f"{ev}: {m}", m) for m in metrics[:4])
        if panels and (path := _save(ev, panels, data, out_dir)):
            written.append(path)
    return written
