"""Preference modeling vs imitation learning across model sizes (paper Figs 3, 14, 15), from
``sweep_objectives`` documents: accuracy vs size per dataset, one line per objective, and the
PM − IL gain per dataset (ranked in blue, binary in orange, bold means), colours and names from
`report.scaling`.
"""

from __future__ import annotations

from collections import defaultdict

from hhhlab.report import svg
from hhhlab.report.collect import Source
from hhhlab.report.scaling import KIND_COLOURS, OBJECTIVE_STYLE
from hhhlab.report.sections.base import (
    Rendered,
    Section,
    as_estimate,
    ci_text,
    figure,
    point,
    table,
)

XLABEL = "Non-embedding parameters"
RANKED_FIG = {"hellaswag": "14", "summarize": "14", "ethics-utilitarianism": "15"}


def _cells(sources: list[Source]) -> tuple[dict[tuple, tuple[dict, dict, Source]], dict[str, str]]:
    """(dataset, objective, model) -> (cell, accuracy estimate, source); dataset -> kind."""
    cells: dict[tuple, tuple[dict, dict, Source]] = {}
    kinds: dict[str, str] = {}
    for s in sources:
        p = s.doc.payload
        for name, d in (p.get("datasets") or {}).items():
            kinds[name] = d.get("kind", "ranked")
        for c in p.get("cells") or []:
            est = as_estimate((c.get("estimates") or {}).get("accuracy")) or as_estimate(
                c.get("accuracy"), c.get("accuracy_ci"), c.get("n_eval"))
            if est is None or c.get("non_embedding_params") is None:
                continue
            cells[(c["dataset"], c["objective"], c["model"])] = (c, est, s)
            kinds.setdefault(c["dataset"], c.get("kind", "ranked"))
    return cells, kinds


def _gains(sources: list[Source]) -> list[tuple[dict, dict]]:
    out: dict[tuple, tuple[dict, dict]] = {}
    for s in sources:
        for g in s.doc.payload.get("gains") or []:
            est = as_estimate(g.get("estimate")) or as_estimate(g.get("gain"), g.get("gain_ci"))
            if est is not None:
                out[(g["dataset"], g["model"])] = (g, est)
    return list(out.values())


class PmVsIlSection(Section):
    id = "pm_vs_il"
    title = "Preference modeling vs imitation learning"
    kinds = ("sweep_objectives",)
    paper = ("On ranked evals (Learn to Summarize, HellaSwag, ETHICS Utilitarianism) a preference model beats "
             "imitation learning by a wide margin that grows with size (mean gain ≈ 0.2 at 52B); on binary evals "
             "(code, Lambada, ETHICS CM/Justice/Deontology/Virtue) PM ≈ IL.")
    stage_module = "hhhlab.experiments.sweep"
    how_to_run = ("hhhlab sweep objectives --models smollm2-135m@L2,@L4 --datasets ethics-commonsense "
                  "--data-dir DIR --output OUT")

    def render(self, sources: list[Source]) -> Rendered:
        out = Rendered()
        cells, kinds = _cells(sources)
        if not cells:
            out.blocks.append("<p class='warn'>No sweep cells with an accuracy in these documents.</p>")
            return out
        for ds in dict.fromkeys(k[0] for k in cells):
            chart = svg.Chart(f"{ds} ({kinds.get(ds, '?').capitalize()})", XLABEL, "Accuracy")
            by_obj: dict[str, list[svg.Point]] = defaultdict(list)
            srcs: dict[int, Source] = {}
            for (d, obj, model), (c, est, s) in cells.items():
                if d == ds and (p := point(c["non_embedding_params"], est, model)) is not None:
                    by_obj[obj].append(p)
                    srcs[id(s)] = s
            for obj, pts in by_obj.items():
                label, colour, _ = OBJECTIVE_STYLE.get(obj, (obj, None, "o"))
                chart.series.append(svg.Series(label, pts, colour, dashed=obj == "imitation"))
            fid = RANKED_FIG.get(ds, "15" if ds.startswith("ethics") else "")
            out.blocks.append(figure(chart, f"pm-il-{ds}", list(srcs.values()), fid))
            out.figures.append(fid)
        gains = _gains(sources)
        if gains:
            chart = svg.Chart("Acc Gain of Preference Modeling over Imitation Learning", XLABEL,
                              "Accuracy gain (PM − IL)", zero_line=True)
            by_ds: dict[str, list[svg.Point]] = defaultdict(list)
            for g, est in gains:
                if (p := point(g["non_embedding_params"], est, g["model"])) is not None:
                    by_ds[g["dataset"]].append(p)
            for ds, pts in by_ds.items():
                kind = kinds.get(ds, "ranked")
                chart.series.append(svg.Series(f"{ds} ({kind})", pts, KIND_COLOURS.get(kind, "gray"), width=1.0,
                                               opacity=0.45))
            for kind, colour in KIND_COLOURS.items():  # bold mean per kind (no CI: a mean of gains)
                per_size: dict[int, list[float]] = defaultdict(list)
                for g, est in gains:
                    if kinds.get(g["dataset"], g.get("kind")) == kind:
                        per_size[g["non_embedding_params"]].append(est["value"])
                if per_size:
                    pts = [svg.Point(x, sum(v) / len(v), note=f"mean of {len(v)} datasets")
                           for x, v in sorted(per_size.items())]
                    chart.series.append(svg.Series(f"mean over {kind}", pts, colour, width=3.2))
            chart.note = ("Light lines: one dataset each, with the paired-bootstrap 95% CI of the gain; bold: the "
                          "mean over datasets of a kind.")
            out.blocks.append(figure(chart, "pm-minus-il", sources, "3"))
            out.figures.append("3")
        rows = [[d, kinds.get(d), model, c["non_embedding_params"], obj, est, c.get("train_steps"),
                 c.get("train_seconds")] for (d, obj, model), (c, est, _) in cells.items()]
        out.blocks.append(table(["dataset", "kind", "model", "non-emb params", "objective", "accuracy [95% CI]",
                                 "train steps", "train s"], rows, caption="Every sweep cell",
                                table_id="pm-il-cells"))
        if gains:
            rows = [[g["dataset"], g.get("kind"), g["model"], g["non_embedding_params"], est,
                     g.get("gain_ci_method", "")] for g, est in gains]
            out.blocks.append(table(["dataset", "kind", "model", "non-emb params", "PM − IL [95% CI]", "CI method"],
                                    rows, caption="PM − IL accuracy gain", table_id="pm-il-gains"))
            best = max(gains, key=lambda ge: ge[0]["non_embedding_params"])
            out.measured = ("PM − IL at the largest rung: " + "; ".join(
                f"{g['dataset']} {ci_text(est)}" for g, est in gains
                if g["non_embedding_params"] == best[0]["non_embedding_params"]))
        else:
            out.measured = f"{len(cells)} cells; no PM/IL pair to compare"
        return out
