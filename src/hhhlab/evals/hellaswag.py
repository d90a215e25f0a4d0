"""HellaSwag (validation), zero-shot: pick the right ending of four (beyond the paper's §2 list).

Scored as lm-evaluation-harness does: ``acc`` — the ending with the largest summed log-prob;
``acc_norm`` — the largest log-prob divided by the ending's length in characters.

Plain: ``"<activity>: <context>"`` then ``" " + ending``. Prompted and distilled (our choice; the
paper has no HellaSwag zero-shot eval): the same story wrapper as LAMBADA, so the ending is the
continuation of a draft the assistant is writing.

Sources: ``hellaswag/hellaswag_val_full.txt.bz2`` (6 lines per item: context, gold index, four
endings; already preprocessed like lm-eval), else the hub (``Rowan/hellaswag``, validation,
with lm-eval's preprocessing).
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path

from hhhlab.errors import DataError
from hhhlab.evals.base import EvalContext, Item, MultipleChoiceEval, argmax, register
from hhhlab.evals.sources import find_local, load_hub, missing

REL = "hellaswag/hellaswag_val_full.txt.bz2"
REL_PLAIN = "hellaswag/hellaswag_val_full.txt"
HUB = ("Rowan/hellaswag", None, "validation")


def preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag cleaning of WikiHow markup."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def read_text_format(path: Path) -> list[dict]:
    opener = bz2.open if path.suffix == ".bz2" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    while lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise DataError(f"{path}: {len(lines)} lines is not a multiple of 6 (context, gold, 4 endings per item)")
    out = []
    for k in range(0, len(lines), 6):
        ctx, gold, *endings = lines[k : k + 6]
        if not gold.strip().isdigit() or not 0 <= int(gold) < 4:
            raise DataError(f"{path}, line {k + 2}: gold index {gold!r} is not 0-3")
        if not ctx.strip() or any(not e.strip() for e in endings):
            raise DataError(f"{path}, line {k + 1}: empty context or ending in item {k // 6}")
        out.append({"query": ctx, "endings": endings, "label": int(gold)})
    return out


@register("hellaswag")
class HellaSwag(MultipleChoiceEval):
    description = "HellaSwag validation: acc and length-normalised acc_norm (lm-eval's rules)"

    def load(self, ctx: EvalContext) -> list[Item]:
        path = find_local(ctx.data_dir, REL, REL_PLAIN)
        if path is not None:
            rows = read_text_format(path)
        else:
            ds, err = (None, "not tried: --data-dir given") if ctx.data_dir else load_hub(*HUB)
            if ds is None:
                raise missing("hellaswag", ctx.data_dir, [REL], HUB[0], err,
                              "copy hellaswag_val_full.txt.bz2 (llama.cpp's HellaSwag text format) into DIR/hellaswag/")
            rows = [{"query": preprocess(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize()),
                     "endings": [preprocess(e) for e in r["endings"]], "label": int(r["label"])} for r in ds]
        return [Item(f"h{i}", {"query": r["query"], "choices": r["endings"],
                               "labels": [int(j == r["label"]) for j in range(len(r["endings"]))]})
                for i, r in enumerate(rows)]

    def context(self, item: Item, ctx: EvalContext) -> str:
        from hhhlab.prompts import lambada_wrapper

        query = item.data["query"]
        return ctx.frame(*lambada_wrapper(query)) if ctx.framed else query

    def item_metrics(self, result: dict) -> dict[str, float]:
        best = argmax(result["labels"])
        lp = result["logprobs"]
        return {
            "acc": float(argmax(lp) == best),
            "acc_norm": float(argmax([a / n for a, n in zip(lp, result["n_chars"])]) == best),
        }
