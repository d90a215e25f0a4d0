"""Re-ranking samples by PM score vs IL mean log-prob (paper Figs 11-13), from ``sweep_rerank``
documents (`hhhlab.experiments.rerank`).

One block per task in the documents (``payload.task``: ``code`` first, then ``lambada``):

* Fig 11: top-1 accuracy of the re-ranked sample vs the number of samples k (log x), one colour
  per model size, solid = PM, dashed = IL. The paper's Fig 11 is code correctness (``--task
  code``); a Lambada document gets the same layout, said in its caption.
* Fig 12 (code) / Fig 13 (Lambada): accuracy vs model size for chosen k (the paper's 2, 8, 32,
  96 where measured, else the measured k up to N), series Oracle, Average (No Ranking), IL Mean
  Log-Probs, PM Scores, and on Lambada IL Sampled at T=0.
* A table of every (model, k) with its four estimates, and the greedy (Lambada) and held-out pair
  accuracies.
"""

from __future__ import annotations

from html import escape
from typing import Any

from hhhlab.report import svg
from hhhlab.report.collect import Source
from hhhlab.report.sections.base import Rendered, Section, ci_text, figure, point, table
from hhhlab.train.evaluate import RERANK_KS as PAPER_KS

#: series -> (label, colour, dashed); the labels are the paper's legend
STYLE = {"oracle": ("Oracle", "black", True), "average": ("Average (No Ranking)", "tab:gray", False),
         "il": ("IL Mean Log-Probs", "tab:orange", False), "pm": ("PM Scores", "tab:blue", False),
         "il_greedy": ("IL Sampled at T=0", "tab:green", True)}
FIG_OF_TASK = {"lambada": "13", "code": "12"}
#: what a prompt is called, and what a training pair is, per task
UNIT = {"lambada": "passages", "code": "problems"}
PAIRS = {"lambada": "(target, wrong answer) pairs", "code": "(passing, failing) program pairs"}
TITLE = {"lambada": "Lambada", "code": "Code"}
INSTRUCT_NOTE = ("The default model, smollm2-135m, is SmolLM2-135M-Instruct: instruction-tuned, unlike the "
                 "paper's pretrained base LMs, so its samples (and the IL/PM starting point) differ in kind.")


def _records(sources: list[Source]) -> dict[tuple[str, str], tuple[dict, Source]]:
    """(task, model) -> (its record, its document); a later document replaces an earlier one."""
    out: dict[tuple[str, str], tuple[dict, Source]] = {}
    for s in sources:
        task = str(s.doc.payload.get("task", "lambada"))
        for r in s.doc.payload.get("models") or []:
            if r.get("acc_at_k") and r.get("non_embedding_params"):
                out[(task, r["model"])] = (r, s)
    return out


def chosen_ks(measured: list[int]) -> list[int]:
    """The paper's panels (k = 2, 8, 32, 96) that were measured, plus the largest k measured when
    there are fewer than four (N = 32 gives 2, 8, 32; N = 4 gives 2, 4)."""
    ks = [k for k in PAPER_KS if k in measured]
    top = max((k for k in measured if k > 1), default=None)
    if top is not None and top not in ks and len(ks) < 4:
        ks.append(top)
    return ks


def _vs_k(task: str, recs: list[tuple[dict, Source]]) -> svg.Chart:
    chart = svg.Chart(f"{TITLE.get(task, task)}: re-ranking top-1 accuracy vs k", "Number of samples k",
                      "Top-1 accuracy")
    for i, (r, _) in enumerate(recs):
        colour = svg.PALETTE[i % len(svg.PALETTE)]
        for series, dashed in (("pm", False), ("il", True)):
            pts = [p for k in r["ks"] if (p := point(k, r["acc_at_k"][str(k)][series], r["model"])) is not None]
            chart.series.append(svg.Series(f"{series.upper()} · {r['model']}", pts, colour, dashed=dashed))
    chart.note = ("Solid: ranked by PM score; dashed: by IL mean log-prob; one colour per model (smallest first). "
                  + ("The paper's Fig 11 is code correctness; this is its layout on Lambada." if task != "code"
                     else ""))
    return chart


def _vs_size(task: str, k: int, recs: list[tuple[dict, Source]]) -> svg.Chart:
    chart = svg.Chart(f"{TITLE.get(task, task)} Correctness with {k} Samples", "Non-embedding parameters",
                      "Top-1 accuracy")
    for series, (label, colour, dashed) in STYLE.items():
        pts = []
        for r, _ in recs:
            est: Any = r["greedy"].get(series) if series == "il_greedy" else (r["acc_at_k"].get(str(k)) or {}).get(series)
            if est and (p := point(r["non_embedding_params"], est, f"{r['model']}, k={k}")) is not None:
                pts.append(p)
        if pts:
            chart.series.append(svg.Series(label, pts, colour, dashed=dashed))
    chart.note = (f"Each point: mean over {UNIT.get(task, 'prompts')} of the top-1 accuracy of {k} samples, "
                  "bootstrap 95% CI.")
    return chart


class RerankSection(Section):
    id = "rerank"
    title = "Re-ranking samples: PM scores vs IL log-probs"
    kinds = ("sweep_rerank",)
    paper = ("Ranking 100 samples by PM score or by IL mean log-prob gives about the same top-1 accuracy on "
             "code correctness and on Lambada (both between no ranking and the oracle, rising with k); some PM "
             "curves on code fall at large k. On Lambada the IL baseline is strong because it matches the "
             "pretraining objective.")
    stage_module = "hhhlab.experiments.rerank"
    how_to_run = ("hhhlab sweep rerank --task code --models smollm2-135m@L2,@L4 --data-dir DIR --output OUT "
                  "(or --task lambada)")

    def render(self, sources: list[Source]) -> Rendered:
        out = Rendered()
        records = _records(sources)
        if not records:
            out.blocks.append("<p class='warn'>No re-ranked models in these documents.</p>")
            return out
        tasks = sorted(dict.fromkeys(t for t, _ in records), key=lambda t: (t != "code", t))  # Fig 11 is code
        measured = []
        for task in tasks:
            recs = sorted((v for (t, _), v in records.items() if t == task), key=lambda v: v[0]["non_embedding_params"])
            srcs = list({id(s): s for _, s in recs}.values())
            out.blocks.append(figure(_vs_k(task, recs), "rerank-vs-k" if task == "lambada" else f"rerank-{task}-vs-k",
                                     srcs, "11"))
            out.figures.append("11")
            fig = FIG_OF_TASK.get(task, "")
            for k in chosen_ks(sorted({k for r, _ in recs for k in r["ks"]})):
                cid = f"rerank-k{k}" if task == "lambada" else f"rerank-{task}-k{k}"
                out.blocks.append(figure(_vs_size(task, k, recs), cid, srcs, fig))
                if fig:
                    out.figures.append(fig)
            rows = []
            for r, _ in recs:
                for k in r["ks"]:
                    per = r["acc_at_k"][str(k)]
                    rows.append([r["model"], r["non_embedding_params"], k, per["pm"], per["il"], per["oracle"],
                                 per["average"]])
            out.blocks.append(table(["model", "non-emb params", "k", "PM Scores", "IL Mean Log-Probs", "Oracle",
                                     "Average (No Ranking)"], rows,
                                    caption=f"{TITLE.get(task, task)}: top-1 accuracy of k samples [95% CI]",
                                    table_id=f"rerank-{task}-acc"))
            rows = [[r["model"], r["n_eval_prompts"], r["n_samples"], r["greedy"].get("il_greedy"),
                     r["greedy"].get("lm_greedy"), (r.get("pair_accuracy") or {}).get("preference"),
                     (r.get("pair_accuracy") or {}).get("imitation"), r.get("train_groups"),
                     r.get("eval_prompts_with_a_correct_sample")] for r, _ in recs]
            unit = UNIT.get(task, "prompts")
            out.blocks.append(table(["model", unit, "N", "IL at T=0", "LM at T=0", "PM pair acc", "IL pair acc",
                                     "training groups", f"{unit} with a right sample"], rows,
                                    caption=(f"{TITLE.get(task, task)}: greedy accuracy (Lambada only), and held-out "
                                             "pairwise accuracy of the PM and IL cells on the sampled "
                                             f"{PAIRS.get(task, 'pairs')}"),
                                    table_id=f"rerank-{task}-models"))
            big = recs[-1][0]
            n = big["ks"][-1]
            per = big["acc_at_k"][str(n)]
            measured.append(f"{task}, {big['model']}, k={n}: PM {ci_text(per['pm'])}, IL {ci_text(per['il'])}, "
                            f"oracle {ci_text(per['oracle'])}, no ranking {ci_text(per['average'])}")
        models = [m for _, m in records]
        notes = [f"Models: {', '.join(models)}."]
        if any(m.split("@")[0] == "smollm2-135m" for m in models):
            notes.append(INSTRUCT_NOTE)
        chat = [m for (t, m), (r, _) in records.items() if t == "code" and r.get("code_format") == "chat"]
        if chat:
            notes.append(f"Code problems were put to {', '.join(chat)} in its chat template (--code-format chat: "
                         "the request as the user's turn, the answer opened as a Python block); the paper's base "
                         "code models continue the bare signature and docstring.")
        if "code" not in tasks:
            notes.append("Code correctness re-ranking (the paper's Figs 11-12, HumanEval-style functions run "
                         "against their tests) is not in these documents: only Lambada is measured here "
                         "(hhhlab sweep rerank --task code runs it).")
        for s in sources:  # older Lambada documents say code is not run: the line above says it when true
            notes += [n for n in s.doc.payload.get("notes") or [] if n not in notes and "not run" not in n]
        out.blocks.append("<ul class='muted'>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
        out.measured = "; ".join(measured)
        return out
