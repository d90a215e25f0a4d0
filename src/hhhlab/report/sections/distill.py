"""Context distillation (paper §3, Figs 20 and 26), from ``distill`` and ``counting_toy``
documents: how much of the prompt's behaviour the student keeps, measured where it is most
sensitive, the held-out KL to the prompted teacher (plain model vs distilled student).

The HHH-eval comparison of plain, prompted and distilled models is drawn by the evals section
(the distilled condition of ``hhhlab eval --condition distilled:DIR``); this section shows what
the distillation run itself measured.
"""

from __future__ import annotations

from hhhlab.report import svg
from hhhlab.report.collect import Source
from hhhlab.report.sections.base import Rendered, Section, ci_text, estimates_table, figure, point
from hhhlab.results import find_estimates


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
    kinds = ("distill", "counting_toy")
    paper = ("A model fine-tuned to match the prompted model's next-token distribution without the prompt keeps "
             "about all of the prompt's gain on HHH evals (better than the prompt at the smallest sizes), matches "
             "it on toxicity, pays a similar small Lambada tax, and is preferred slightly less by raters (≈46–47% "
             "against the prompted model). Fine-tuning on the prompt text itself is worse (Fig 20, Fig 26).")
    stage_module = "hhhlab.distill"
    how_to_run = "hhhlab distill --model smollm2-135m@L4 --prompt hhh --corpus mix --tokens 20000 --output DIR"

    def render(self, sources: list[Source]) -> Rendered:
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
