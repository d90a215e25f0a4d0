"""The demo's first stage: which answer the model prefers on four built-in questions, a
seconds-long check that the model loads and scores before the longer stages start."""

from __future__ import annotations

from hhhlab.report.collect import Source
from hhhlab.report.sections.base import Rendered, Section, provenance, table


class SanitySection(Section):
    id = "sanity"
    title = "Sanity check: four built-in questions"
    kinds = ("demo",)
    paper = "(not in the paper: a check that the model loads and prefers the right answer to easy questions)"
    how_to_run = "hhhlab demo"

    def render(self, sources: list[Source]) -> Rendered:
        out = Rendered()
        for i, s in enumerate(sources):
            qs = s.doc.payload.get("questions") or []
            if not qs:
                continue
            rows = [[q["question"], a["answer"], a["logprob"], a["logprob_per_token"], a.get("picked", False)]
                    for q in qs for a in q["answers"]]
            out.blocks.append(table(["question", "answer", "log P", "mean log P/token", "model's pick"], rows,
                                    caption="Log-likelihood of each answer (the first answer is the right one)",
                                    table_id=f"sanity-{i}"))
            out.blocks.append(provenance([s]))
            right = s.doc.estimates.get("sanity/right")
            if right is not None:
                out.measured = (f"right answer preferred on {sum(q['right'] for q in qs)}/{len(qs)} questions "
                                f"({right.value:.2f} [{right.lo:.2f}, {right.hi:.2f}])")
        return out
