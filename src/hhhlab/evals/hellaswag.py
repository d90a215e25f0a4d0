"""HellaSwag (validation), zero-shot: pick the right ending of four (beyond the paper's §2 list).

Scored as lm-evaluation-harness does: ``acc`` — the ending with the largest summed log-prob;
``acc_norm`` — the largest log-prob divided by the ending's length in characters.

Plain: ``"<activity>: <context>"`` then ``" " + ending``. Prompted and distilled (our choice; the
paper has no HellaSwag zero-shot eval): the same story wrapper as LAMBADA, so the ending is the
continuation of a draft the assistant is writing.

Sources: ``hellaswag/hellaswag_val_full.txt.bz2`` (llama.cpp's text format, 6 lines per item:
context, gold index, four endings), else the hub (``Rowan/hellaswag``, validation). Both are read
by `hhhlab.data.sources.hellaswag`, which the dataset builder shares, and both give lm-eval's
query ``preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())``: the hub rows from
the fields, the text file by restoring ``ctx_b``'s capital (the text format wrote ``ctx_b``
uncapitalised; see that module).
"""

from __future__ import annotations

from pathlib import Path

from hhhlab.data.sources.hellaswag import fields_record, iter_text
from hhhlab.errors import DataError
from hhhlab.evals.base import EvalContext, Item, MultipleChoiceEval, argmax, register
from hhhlab.evals.sources import find_local, load_hub, missing

REL = "hellaswag/hellaswag_val_full.txt.bz2"
REL_PLAIN = "hellaswag/hellaswag_val_full.txt"
HUB = ("Rowan/hellaswag", None, "validation")


def read_text_format(path: Path) -> list[dict]:
    """Every item of a text-format file as ``{query, endings, label}``; the first malformed item
    (or one without a gold label) is a DataError naming the file and line."""
    rows = []
    for where, _, rec in iter_text(path):
        if isinstance(rec, DataError):
            raise DataError(f"{where}: {rec}")
        if rec["label"] is None:
            raise DataError(f"{where}: no gold label")
        rows.append(rec)
    if not rows:
        raise DataError(f"{path}: no items")
    return rows


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
            rows = [fields_record(dict(r)) for r in ds]
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
