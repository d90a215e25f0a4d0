"""Preference-model pre-training (paper §4, Figs 4, 5, 17, 18, 29, 33), from ``pmp``,
``pm_finetune``, ``sweep_pmp`` and ``sweep_pmp_synthetic`` documents.

* Fig 17 / 33 — fine-tuning accuracy vs the number of fine-tuning pairs (log x), one line per
  pre-training condition (none, binary, ranked, the synthetic scrambles), one panel per target;
  drawn from any list of records that carry a pair count (``n``, ``pairs``, ``finetune_pairs``,
  ``train_size``), an accuracy estimate and a condition name, so the figure follows the data
  rather than one writer's field order.
* From a ``sweep_pmp`` document's ``points`` (per model): Fig 4 (mean gain of each PMP condition
  over no PMP, mean over targets), Fig 18 (binarized over ranked: each target light, the mean
  bold), Fig 29 (the PM+LM / PM-only / LM-only ablation, when the sweep ran it) and Fig 5 (mean
  accuracy at the two reference sizes vs model). The numbers come from `hhhlab.pmp.analysis`,
  the functions the sweep's PNG figures (`hhhlab.report.pmp_figures`) draw too.
* The fine-tuning pairs saved at equal accuracy (`hhhlab.pmp.analysis.pairs_saved`), as the
  sweep documents tabulate them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from hhhlab.pmp.analysis import mean_gain_curve, reference_sizes, sweep_figure_plan, transfer_at
from hhhlab.report import svg
from hhhlab.report.collect import Source
from hhhlab.report.sections.base import (
    Rendered,
    Section,
    as_estimate,
    ci_text,
    estimates_table,
    figure,
    point,
    table,
)

X_KEYS = ("n", "pairs", "finetune_pairs", "n_pairs", "train_size", "size")
Y_KEYS = ("accuracy", "acc")
SERIES_KEYS = ("condition", "init", "pretrain", "pmp", "mode", "variant", "scramble", "label")
PANEL_KEYS = ("target", "dataset", "model")
SUMMARY_KEYS = ("pairs_saved", "pairs_saved_vs_no_pmp", "mean_gain")
"""Payload entries derived from the points (their rows carry n and accuracy too): not curve points."""
ABLATION_LABELS = {"none": "no PMP", "lm_only": "LM only (λ, μ = 0, 1)", "pm_only": "PM only (1, 0)",
                   "binarized": "PM+LM (1, 1)"}


def records(obj: Any) -> Iterator[dict]:
    """Every dict inside ``obj`` that has an x (pair count) and an accuracy."""
    if isinstance(obj, dict):
        if any(isinstance(obj.get(k), int | float) for k in X_KEYS) and any(k in obj for k in Y_KEYS):
            yield obj
            return
        for k, v in obj.items():
            if k not in SUMMARY_KEYS:
                yield from records(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from records(v)


def _first(rec: dict, keys: tuple[str, ...]) -> Any:
    return next((rec[k] for k in keys if rec.get(k) is not None), None)


def sweep_points(payload: Any) -> list[dict]:
    """A ``sweep_pmp`` payload's points that `hhhlab.pmp.analysis` can use: an integer ``n``, a
    condition, a target and an accuracy estimate with a value (others are skipped, not fatal)."""
    pts = payload.get("points") if isinstance(payload, dict) else None
    out = []
    for p in pts if isinstance(pts, list) else []:
        acc = p.get("accuracy") if isinstance(p, dict) else None
        if (isinstance(acc, dict) and isinstance(acc.get("value"), int | float) and isinstance(p.get("n"), int)
                and isinstance(p.get("condition"), str) and p.get("target") is not None):
            out.append({**p, "model": str(p.get("model", ""))})
    return out


def _x(n: int) -> float:
    return max(float(n), 1.0)  # n = 0 (zero-shot transfer) drawn at 1 on the log axis


def _gain_points(rows: list[dict]) -> list[svg.Point]:
    return [svg.Point(_x(r["n"]), r["value"], r["lo"], r["hi"], r["n_targets"], f"n={r['n']}, mean of "
                      f"{r['n_targets']} target(s)") for r in rows]


def _accuracy_points(pts: list[dict]) -> list[svg.Point]:
    return [q for p in pts if (q := point(_x(p["n"]), p["accuracy"], f"n={p['n']}")) is not None]


def sweep_charts(points: list[dict]) -> Iterator[tuple[str, svg.Chart]]:
    """``(paper figure id, chart)`` for Figs 4, 18, 29 (per model) and 5 (across models), as far
    as the sweep's conditions allow (`sweep_figure_plan`)."""
    plan = sweep_figure_plan(points)
    zero = "n = 0 (zero-shot transfer) is drawn at 1."
    for model in dict.fromkeys(p["model"] for p in points):
        pts = [p for p in points if p["model"] == model]
        if "4" in plan:
            yield "4", svg.Chart(f"Mean PMP gain over no PMP — {model}", "Fine-tuning pairs",
                                 "Accuracy gain (mean over targets)",
                                 [svg.Series(c, _gain_points(mean_gain_curve(pts, c)), dashed=c == "ranked")
                                  for c in plan["4"]],
                                 zero_line=True, note=f"{zero} Bars: 95% CI of the mean paired difference.")
        if "18" in plan:
            targets = sorted({p["target"] for p in pts})
            series = [svg.Series(str(t), _gain_points(mean_gain_curve(pts, "binarized", "ranked", target=t)),
                                 opacity=0.4, width=1.0) for t in targets]
            series.append(svg.Series("mean over targets", _gain_points(mean_gain_curve(pts, "binarized", "ranked")),
                                     colour="black", width=3.0))
            yield "18", svg.Chart(f"Binarized over ranked PMP — {model}", "Fine-tuning pairs", "Accuracy difference",
                                  series, zero_line=True, note=zero)
        if "29" in plan:
            for t in sorted({p["target"] for p in pts}):
                yield "29", svg.Chart(f"PMP loss ablation — {model}: {t}", "Fine-tuning pairs", "Accuracy",
                                      [svg.Series(ABLATION_LABELS[c], _accuracy_points(
                                          [p for p in pts if p["condition"] == c and p["target"] == t]),
                                          colour="black" if c == "none" else None)
                                       for c in plan["29"]], note=zero)
    if "5" in plan:
        models = list(dict.fromkeys(p["model"] for p in points))
        for n in reference_sizes(points):
            series = []
            for c in plan["5"]:
                acc = transfer_at(points, n, c)
                series.append(svg.Series(c, [svg.Point(float(i), acc[m], note=f"{m}, mean over targets")
                                             for i, m in enumerate(models) if m in acc],
                                         colour="black" if c == "none" else None))
            yield "5", svg.Chart(f"Transfer at {n} fine-tuning pairs vs model", "Model (ladder rung)",
                                 "Accuracy (mean over targets)", series, xlog=False, xcategories=models,
                                 note="x = ladder rungs in order, not parameter counts (the paper: 13M-52B).")


def saved_rows(payload: Any) -> list[list[Any]]:
    """The pairs-saved table of a sweep document (``pairs_saved`` rows, or the synthetic sweep's
    ``pairs_saved_vs_no_pmp`` per condition)."""
    if not isinstance(payload, dict):
        return []
    raw = payload.get("pairs_saved")
    if not isinstance(raw, list):
        by = payload.get("pairs_saved_vs_no_pmp")
        raw = [{"condition": c, **r} for c, rs in by.items() for r in rs] if isinstance(by, dict) else []
    rows = []
    for r in raw:
        if not isinstance(r, dict) or not isinstance(r.get("pairs_saved"), dict):
            continue
        censored = {"above": "more than (above every no-PMP point)", "below": "below the no-PMP curve"}.get(
            r.get("censored") or "", "")
        rows.append([r.get("model", ""), r.get("target", "T0"), r.get("condition"), r.get("n"), r.get("accuracy"),
                     r.get("equivalent_baseline_n"), as_estimate(r["pairs_saved"]), r.get("ratio"), censored])
    return rows


class PmpSection(Section):
    id = "pmp"
    title = "Preference-model pre-training and sample efficiency"
    kinds = ("sweep_pmp", "sweep_pmp_synthetic", "pm_finetune", "pmp")
    paper = ("Pre-training a preference model on StackExchange, Reddit and Wikipedia makes fine-tuning more "
             "sample-efficient for models above about 1B parameters; binarized PMP transfers better than ranked "
             "(+5% at 500 fine-tuning pairs, +2% at 5k); the synthetic experiment (Fig 33) shows ranked "
             "pre-training on a scrambled order must be unlearned.")
    stage_module = "hhhlab.experiments.pmp"
    how_to_run = "hhhlab sweep pmp-synthetic --output OUT"

    def available(self) -> bool:
        import importlib.util

        return any(importlib.util.find_spec(m) is not None
                   for m in ("hhhlab.experiments.pmp", "hhhlab.experiments.pmp_synthetic", "hhhlab.train.pmp",
                             "hhhlab.pmp"))

    def render(self, sources: list[Source]) -> Rendered:
        out = Rendered()
        panels: dict[str, dict[str, list[svg.Point]]] = defaultdict(lambda: defaultdict(list))
        panel_src: dict[str, dict[int, Source]] = defaultdict(dict)
        rows = []
        for s in sources:
            for rec in records(s.doc.payload):
                x = _first(rec, X_KEYS)
                y = next((rec[k] for k in Y_KEYS if k in rec), None)
                est = as_estimate(y, rec.get("accuracy_ci"), rec.get("n_eval"))
                if est is None or x is None or _first(rec, SERIES_KEYS) is None:
                    continue  # a curve point names its condition (summaries such as pairs saved do not)
                name = str(_first(rec, SERIES_KEYS) or s.kind)
                panel = f"{s.kind}: {_first(rec, PANEL_KEYS) or 'all'}"
                if (p := point(_x(x), est, f"n={x}")) is not None:
                    panels[panel][name].append(p)
                    panel_src[panel][id(s)] = s
                rows.append([s.kind, _first(rec, PANEL_KEYS), name, x, est])
        for panel, series in panels.items():
            synthetic = panel.startswith("sweep_pmp_synthetic")
            chart = svg.Chart(panel, "Fine-tuning pairs", "Accuracy",
                              [svg.Series(n, pts, dashed="rank" in n.lower()) for n, pts in series.items()],
                              note="n = 0 (zero-shot transfer) is drawn at 1.")
            fid = "33" if synthetic else "17"
            out.blocks.append(figure(chart, f"pmp-{len(out.figures)}", list(panel_src[panel].values()), fid))
            out.figures.append(fid)
        saved: list[list[Any]] = []
        for s in sources:
            if s.kind == "sweep_pmp":
                for fid, chart in sweep_charts(sweep_points(s.doc.payload)):
                    out.blocks.append(figure(chart, f"pmp-{len(out.figures)}", [s], fid))
                    out.figures.append(fid)
            saved += saved_rows(s.doc.payload)
        if saved:
            out.blocks.append(table(["model", "target", "condition", "fine-tuning pairs", "accuracy",
                                     "no-PMP pairs at equal accuracy", "pairs saved [95% CI]", "ratio", "censored"],
                                    saved, caption="Fine-tuning pairs saved at equal accuracy: the no-PMP curve "
                                    "interpolated on log n; paired bootstrap over the held-out pairs",
                                    table_id="pmp-pairs-saved"))
        if rows:
            out.blocks.append(table(["kind", "target", "condition", "fine-tuning pairs", "accuracy [95% CI]"], rows,
                                    caption="Every fine-tuning point", table_id="pmp-points"))
            last = max(rows, key=lambda r: r[3])
            out.measured = f"{len(rows)} fine-tuning points; e.g. {last[2]} at n={last[3]}: {ci_text(last[4])}"
        out.blocks.append(estimates_table(sources, "pmp-estimates"))
        if not out.measured:
            out.measured = f"{sum(len(s.doc.estimates) for s in sources)} estimates from {len(sources)} run(s)"
        return out
