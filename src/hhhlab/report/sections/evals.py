"""HHH evals, TruthfulQA, the alignment tax and toxicity vs model size (paper Figs 2, 6–8, 10,
21, 23), from ``eval`` documents.

The figures are the panels of `report.figures.PAPER_FIGURES` (the one list of the paper's eval
figures), drawn as interactive SVG; the results and the paired prompt − plain / distilled − plain
differences go to sortable tables with their CIs. Several eval documents merge (a ladder run in
pieces): the later document wins for the same (model, condition, eval, metric).
"""

from __future__ import annotations

import re

from hhhlab.report import svg
from hhhlab.report.collect import Source
from hhhlab.report.figures import CONDITION_STYLE, HEADLINE_SKIP, PAPER_FIGURES, Panel
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


def paper_fig_id(name: str) -> str:
    """``fig2_left_hhh`` -> ``2L``; ``fig21_truthfulqa_metrics`` -> ``21``."""
    m = re.match(r"fig(\d+)(?:_(left|right))?", name)
    if not m:
        return ""
    return m.group(1) + {"left": "L", "right": "R"}.get(m.group(2) or "", "")


class Merged:
    """The eval documents' results, model sizes and paired differences, merged."""

    def __init__(self, sources: list[Source]):
        self.results: dict[tuple, tuple[dict, Source]] = {}  # (model, cond, eval, metric) -> estimate
        self.params: dict[str, int] = {}
        self.diffs: dict[tuple, dict] = {}  # (model, eval, metric, comparison) -> estimate
        self.sources = sources
        for s in sources:
            p = s.doc.payload
            for spec, m in (p.get("models") or {}).items():
                slot = m.get("slot", spec)
                if m.get("non_embedding_params") and (spec == slot or slot not in self.params):
                    self.params[slot] = int(m["non_embedding_params"])
            for r in p.get("results") or []:
                if r.get("variant"):
                    continue
                for metric, e in (r.get("metrics") or {}).items():
                    est = as_estimate(e)
                    if est is not None:
                        self.results[(r["model"], r["condition"], r["eval"], metric)] = (est, s)
            for d in p.get("differences") or []:
                self.diffs[(d["model"], d["eval"], d["metric"], d["comparison"])] = as_estimate(d) or {}

    def evals(self) -> list[str]:
        return list(dict.fromkeys(k[2] for k in self.results))

    def conditions(self) -> list[str]:
        return list(dict.fromkeys(k[1] for k in self.results))

    def series(self, panel: Panel, cond: str, metric: str) -> list[svg.Point]:
        pts = []
        if panel.tax:  # the tax is plain - aligned: flip the sign of (aligned - plain)
            for (model, ev, m, comp), e in self.diffs.items():
                if (ev == panel.eval and m == metric and comp == f"{cond} - plain" and model in self.params
                        and (p := point(self.params[model], e, model, sign=-1.0)) is not None):
                    pts.append(p)
        else:
            for (model, c, ev, m), (e, _) in self.results.items():
                if (ev == panel.eval and c == cond and m == metric and model in self.params
                        and (p := point(self.params[model], e, model)) is not None):
                    pts.append(p)
        return pts

    def sources_of(self, ev: str) -> list[Source]:
        seen: dict[int, Source] = {}
        for (_, _, e, _), (_, s) in self.results.items():
            if e == ev:
                seen[id(s)] = s
        return list(seen.values())


def panel_chart(data: Merged, panel: Panel) -> svg.Chart:
    conds = panel.conditions or tuple(data.conditions())
    chart = svg.Chart(panel.title, XLABEL, panel.ylabel, zero_line=panel.tax)
    for cond in conds:
        if panel.tax and cond == "plain":
            continue
        label, colour = CONDITION_STYLE.get(cond, (cond, None))
        for k, metric in enumerate(panel.metrics):
            pts = data.series(panel, cond, metric)
            if pts:
                name = label if len(panel.metrics) == 1 else f"{label}: {metric}"
                one_colour = len(panel.metrics) == 1 or panel.conditions is None
                chart.series.append(svg.Series(name, pts, colour if one_colour else None, dashed=k % 2 == 1))
    return chart


class EvalsSection(Section):
    id = "evals"
    title = "Alignment evals: prompting, context distillation and the alignment tax"
    kinds = ("eval",)
    paper = ("The HHH prompt raises HHH-eval accuracy, more so with size (52B: about .67 plain vs .77 prompted); "
             "context distillation does about as well as the prompt and better at the smallest sizes; honesty is "
             "the best category; capability evals (Lambada, code) show a small alignment tax for small models and "
             "none or a bonus for large ones; prompting and distillation cut toxicity of large models on "
             "non-toxic prompts.")
    how_to_run = "hhhlab eval --model smollm2-135m@L4,@L8,smollm2-135m --evals hhh_alignment --condition plain,prompt"

    def render(self, sources: list[Source]) -> Rendered:
        data = Merged(sources)
        out = Rendered()
        if not data.results:
            out.blocks.append("<p class='warn'>The eval documents hold no per-condition results this report "
                              "can read (payload.results); their estimates are listed below.</p>")
            return out
        covered: set[str] = set()
        for fig in PAPER_FIGURES:
            for k, panel in enumerate(fig.panels):
                if panel.eval not in data.evals():
                    continue
                chart = panel_chart(data, panel)
                if chart.n_points():
                    fid = paper_fig_id(fig.name)
                    out.blocks.append(figure(chart, f"{fig.name}-{k}", data.sources_of(panel.eval), fid))
                    out.figures.append(fid)
                    covered.add(panel.eval)
        for ev in data.evals():  # evals without a paper figure: their headline metrics
            if ev in covered:
                continue
            metrics = list(dict.fromkeys(m for (_, _, e, m) in data.results if e == ev
                                         and not m.startswith(HEADLINE_SKIP)))[:4]
            for metric in metrics:
                chart = panel_chart(data, Panel(ev, (metric,), f"{ev}: {metric}", metric))
                if chart.n_points():
                    out.blocks.append(figure(chart, f"{ev}-{metric}", data.sources_of(ev)))
        rows = [[model, data.params.get(model), cond, ev, metric, e, e.get("n")]
                for (model, cond, ev, metric), (e, _) in data.results.items()]
        out.blocks.append(table(["model", "non-emb params", "condition", "eval", "metric", "value [95% CI]", "n"],
                                rows, caption="Every eval result (bootstrap 95% CIs)", table_id="eval-results"))
        if data.diffs:
            rows = [[model, data.params.get(model), ev, metric, comp, e, e.get("n")]
                    for (model, ev, metric, comp), e in data.diffs.items()]
            out.blocks.append(table(["model", "non-emb params", "eval", "metric", "comparison",
                                     "difference [95% CI]", "n"], rows,
                                    caption="Differences between conditions on the same items (paired bootstrap): "
                                            "a negative prompt − plain on a capability eval is an alignment tax",
                                    table_id="eval-differences"))
        out.measured = self.measured(data)
        return out

    @staticmethod
    def measured(data: Merged) -> str:
        parts: list[str] = []
        for ev, metric in (("hhh_alignment", "acc_mi"), ("truthfulqa_mc1", "acc"), ("lambada", "acc"),
                           ("toxicity", "nontoxic_mean_toxicity")):
            models = sorted({k[0] for k in data.results if k[2] == ev}, key=lambda m: data.params.get(m, 0))
            if not models:
                continue
            big = models[-1]
            vals = {c: e for (m, c, e_, met), (e, _) in data.results.items() if m == big and e_ == ev and met == metric}
            diff = data.diffs.get((big, ev, metric, "prompt - plain"))
            txt = f"{ev} {metric} at {big}: " + ", ".join(f"{c} {ci_text(e)}" for c, e in vals.items())
            if diff:
                txt += f" (prompt − plain {ci_text(diff)})"
            parts.append(txt)
        return "; ".join(parts) or "eval results for " + ", ".join(data.evals())
