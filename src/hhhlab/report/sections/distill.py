"""Context distillation (paper §3, Figs 20 and 26), from ``distill``, ``distill_compare`` and
``counting_toy`` documents: how much of the prompt's behaviour the student keeps.

* ``distill`` (the run): the held-out KL to the prompted teacher, plain model vs student — the
  measure that is sensitive at every scale;
* ``distill_compare`` (``hhhlab distill compare``): plain / prompted / distilled on the evals per
  model of a ladder, every metric with its CI, the prompt's and the student's gain (paired), the
  fraction of the prompt's gain kept (paired bootstrap), and the context cost (tokens and
  seconds per item with the prompt vs distilled).
"""

from __future__ import annotations

from hhhlab.report import svg
from hhhlab.report.collect import Source
from hhhlab.report.sections.base import (
    Rendered,
    Section,
    ci_text,
    estimates_table,
    figure,
    point,
    provenance,
    table,
)
from hhhlab.results import find_estimates

CONDITIONS = ("plain", "prompt", "distilled")
#: the metrics charted (every metric is in the tables): the two hhh_alignment scoring rules,
#: TruthfulQA MC1 and Lambada accuracy
HEADLINE = ("acc", "acc_mi")


def _kl_estimates(sources: list[Source]) -> list[tuple[str, dict, Source]]:
    out = []
    for s in sources:
        seen = set()
        for key, e in [*((k, v.model_dump()) for k, v in s.doc.estimates.items()),
                       *find_estimates(s.doc.payload)]:
            if "kl" in key.lower() and key not in seen:
                seen.add(key)
                out.append((key, e, s))
    return out


class DistillSection(Section):
    id = "distill"
    title = "Context distillation"
    kinds = ("distill", "distill_compare", "counting_toy")
    paper = ("A model fine-tuned to match the prompted model's next-token distribution without the prompt keeps "
             "about all of the prompt's gain on HHH evals (better than the prompt at the smallest sizes), matches "
             "it on toxicity, pays a similar small Lambada tax, and is preferred slightly less by raters (≈46–47% "
             "against the prompted model). Fine-tuning on the prompt text itself is worse (Fig 20, Fig 26).")
    stage_module = "hhhlab.distill"
    how_to_run = ("hhhlab distill --model smollm2-135m@L4 --prompt hhh --corpus mix --tokens 20000 "
                  "--output ckpts/smollm2-135m@L4-student; hhhlab distill compare --model smollm2-135m@L4 "
                  "--distilled ckpts/{model}-student --limit 200 --output compare.json")

    def render(self, sources: list[Source]) -> Rendered:
        compares = [s for s in sources if s.kind == "distill_compare"]
        runs = [s for s in sources if s.kind != "distill_compare"]
        out = self._render_runs(runs) if runs else Rendered()
        if compares:
            blocks, measured = _render_compare(compares)
            out.blocks = blocks + out.blocks
            out.measured = "; ".join(x for x in (measured, out.measured) if x)
        return out

    def _render_runs(self, sources: list[Source]) -> Rendered:
        out = Rendered()
        every = _kl_estimates(sources)
        # the chart compares KLs (nats/token); the reduction and the fraction closed go to the text
        kls = [(k, e, s) for k, e, s in every if not any(w in k.lower() for w in ("closed", "reduction", "fraction"))]
        if kls:
            labels = [f"{k} ({s.run_id or s.path.parent.name})" if len(sources) > 1 else k for k, _, s in kls]
            pts = [p for i, (_, e, _) in enumerate(kls) if (p := point(i, e, labels[i])) is not None]
            chart = svg.Chart("Held-out KL to the prompted teacher", "", "KL (nats/token)",
                              [svg.Series("KL", pts, "tab:orange", line=False)], xcategories=labels,
                              note="KL(teacher ‖ plain model) vs KL(teacher ‖ distilled student) on held-out text: "
                                   "the part of the gap the student closed.")
            out.blocks.append(figure(chart, "distill-kl", [s for _, _, s in kls]))
        if every:
            out.measured = "; ".join(f"{k} {ci_text(e)}" for k, e, _ in every)
        out.blocks.append(estimates_table(sources, "distill-estimates"))
        if not out.measured:
            out.measured = f"{sum(len(s.doc.estimates) for s in sources)} estimates from {len(sources)} run(s)"
        return out


def _ladder(sources: list[Source]) -> list[tuple[dict, Source]]:
    return [(entry, s) for s in sources for entry in s.doc.payload.get("ladder") or []]


def _render_compare(sources: list[Source]) -> tuple[list[str], str]:
    """The plain / prompted / distilled table, the fraction kept (chart and table), the context cost."""
    entries = _ladder(sources)
    rows: list[list] = []
    pts: list[svg.Point] = []
    labels: list[str] = []
    measured: list[str] = []
    for entry, _ in entries:
        model = entry.get("model", "?")
        for ev, by_metric in (entry.get("metrics") or {}).items():
            for metric, by in by_metric.items():
                frac = (entry.get("fraction_of_gain_kept") or {}).get(ev, {}).get(metric)
                gains = [(entry.get(g) or {}).get(ev, {}).get(metric) for g in ("prompt_gain", "distilled_gain")]
                rows.append([model, ev, metric, *(by.get(c) for c in CONDITIONS), *gains, frac])
                if metric in HEADLINE and frac is not None:
                    label = f"{model} {ev}/{metric}"
                    if (p := point(len(labels), frac, label)) is not None:
                        pts.append(p)
                        labels.append(label)
                    if ev == "hhh_alignment":
                        measured.append(f"{model} keeps {ci_text(frac)} of the prompt's {ev}/{metric} gain")
    blocks = []
    if pts:
        chart = svg.Chart("Fraction of the prompt's gain the distilled model keeps", "", "(distilled − plain) / "
                          "(prompt − plain)", [svg.Series("fraction kept", pts, "tab:green", line=False)],
                          xcategories=labels, zero_line=True,
                          note="Paired bootstrap over the items all three conditions share; 1 = the student "
                               "keeps all of the prompt's gain. Undefined where the prompt brings no gain.")
        blocks.append(figure(chart, "distill-fraction-kept", sources, paper_fig="20"))
    blocks.append(table(["model", "eval", "metric", "plain", "prompted", "distilled", "prompt − plain",
                         "distilled − plain", "fraction of gain kept"], rows,
                        caption="Plain, prompted and distilled on the same seeded items (95% CIs; gains paired)",
                        table_id="distill-compare") + provenance(sources))
    cost_rows = []
    for entry, _ in entries:
        for ev, cost in (entry.get("context_cost") or {}).items():
            tok = cost.get("context_tokens_per_item") or {}
            sec = cost.get("seconds_per_item") or {}
            ips = cost.get("items_per_s") or {}
            cost_rows.append([entry.get("model", "?"), ev, *(tok.get(c) for c in CONDITIONS),
                              cost.get("prompt_tokens_saved_per_item"), *(sec.get(c) for c in CONDITIONS),
                              ips.get("prompt"), ips.get("distilled")])
    if cost_rows:
        blocks.append(table(["model", "eval", "context tokens/item plain", "prompted", "distilled",
                             "tokens saved/item (prompted − distilled)", "s/item plain", "prompted", "distilled",
                             "items/s prompted", "items/s distilled"], cost_rows,
                            caption="Context cost: what the prompt costs per eval item and what the student saves",
                            table_id="distill-context-cost"))
    return blocks, "; ".join(measured)
