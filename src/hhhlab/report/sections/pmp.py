"""Preference-model pre-training (paper §4, Figs 4, 17, 18, 33), from ``pmp``, ``pm_finetune``,
``sweep_pmp`` and ``sweep_pmp_synthetic`` documents: fine-tuning accuracy vs the number of
fine-tuning pairs (log x), one line per pre-training condition (none, binary, ranked, the
synthetic scrambles), one panel per target.

The stage's payload lays its points out as records; this section reads any list of records that
carry a pair count (``n``, ``pairs``, ``finetune_pairs``, ``train_size``), an accuracy estimate and
a condition name, so the figure follows the data rather than one writer's field order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

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


def records(obj: Any) -> Iterator[dict]:
    """Every dict inside ``obj`` that has an x (pair count) and an accuracy."""
    if isinstance(obj, dict):
        if any(isinstance(obj.get(k), int | float) for k in X_KEYS) and any(k in obj for k in Y_KEYS):
            yield obj
            return
        for v in obj.values():
            yield from records(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from records(v)


def _first(rec: dict, keys: tuple[str, ...]) -> Any:
    return next((rec[k] for k in keys if rec.get(k) is not None), None)


class PmpSection(Section):
    id = "pmp"
    title = "Preference-model pre-training and sample efficiency"
    kinds = ("sweep_pmp", "sweep_pmp_synthetic", "pm_finetune", "pmp")
    paper = ("Pre-training a preference model on StackExchange, Reddit and Wikipedia makes fine-tuning more "
             "sample-efficient for models above about 1B parameters; binarized PMP transfers better than ranked "
             "(+5% at 500 fine-tuning pairs, +2% at 5k); the synthetic experiment (Fig 33) shows ranked "
             "pre-training on a scrambled order must be unlearned.")
    stage_module = "hhhlab.experiments.pmp"
    how_to_run = "hhhlab sweep pmp-synthetic --model smollm2-135m@L2 --output OUT"

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
                x_plot = max(float(x), 1.0)  # n = 0 (zero-shot transfer) drawn at 1 on the log axis
                if (p := point(x_plot, est, f"n={x}")) is not None:
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
        if rows:
            out.blocks.append(table(["kind", "target", "condition", "fine-tuning pairs", "accuracy [95% CI]"], rows,
                                    caption="Every fine-tuning point", table_id="pmp-points"))
            last = max(rows, key=lambda r: r[3])
            out.measured = f"{len(rows)} fine-tuning points; e.g. {last[2]} at n={last[3]}: {ci_text(last[4])}"
        out.blocks.append(estimates_table(sources, "pmp-estimates"))
        if not out.measured:
            out.measured = f"{sum(len(s.doc.estimates) for s in sources)} estimates from {len(sources)} run(s)"
        return out
