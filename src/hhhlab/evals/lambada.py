"""LAMBADA (OpenAI version), zero-shot last-word prediction: an alignment-tax eval (paper Fig 7).

``acc``: the last word counts as predicted when every one of its tokens is the model's greedy
(argmax) choice given the passage and the word's earlier tokens — lm-evaluation-harness's
``lambada_openai`` rule (the paper does not say whether it used greedy or likelihood ranking;
digest §9). ``logprob``: the word's summed log-prob (mean over passages; lm-eval reports its
exponent as perplexity).

Plain: the passage, then ``" " + word``. Prompted and distilled: the paper's story wrapper
(App. B.1, ``prompts.lambada_wrapper``) — ``Human: Can you tell me a story?\\n\\nAssistant:
Sure, here's a draft: <passage>`` — then ``" " + word``.

Sources: ``lambada/lambada_openai.jsonl`` ({context, continuation}), else the hub
(``EleutherAI/lambada_openai``, ``text`` split at its last space, as lm-eval does).
"""

from __future__ import annotations

from pathlib import Path

from hhhlab.errors import DataError
from hhhlab.evals.base import Eval, EvalContext, Item, register
from hhhlab.evals.sources import find_local, load_hub, missing, read_jsonl
from hhhlab.models.engine import ScoreRequest, ScoreResult

REL = "lambada/lambada_openai.jsonl"
HUB = ("EleutherAI/lambada_openai", "default", "test")


def load_passages(data_dir: Path | None) -> list[Item]:
    """Every passage as ``Item(id, {"context", "word"})``: the context with no trailing space, the
    target word stripped. One loader for the eval and the re-ranking sweep
    (`hhhlab.experiments.rerank`), so both read the same passages the same way."""
    path = find_local(data_dir, REL)
    if path is not None:
        items = []
        for lineno, rec in read_jsonl(path):
            c, w = rec.get("context"), rec.get("continuation")
            if not isinstance(c, str) or not isinstance(w, str) or not c.strip() or not w.strip():
                raise DataError(f"{path}, line {lineno}: needs non-empty string 'context' and 'continuation'")
            items.append(Item(f"l{lineno - 1}", {"context": c.rstrip(" "), "word": w.strip()}))
        return items
    ds, err = (None, "not tried: --data-dir given") if data_dir else load_hub(*HUB)
    if ds is None:
        raise missing("lambada", data_dir, [REL], HUB[0], err,
                      "copy lambada_openai.jsonl ({context, continuation} per line) into DIR/lambada/")
    items = []
    for i, r in enumerate(ds):
        context, _, word = r["text"].rpartition(" ")
        items.append(Item(f"l{i}", {"context": context, "word": word}))
    return items


@register("lambada")
class Lambada(Eval):
    description = "LAMBADA (OpenAI) zero-shot last-word accuracy (greedy), the paper's story wrapper when prompted"

    def load(self, ctx: EvalContext) -> list[Item]:
        return load_passages(ctx.data_dir)

    def requests(self, item: Item, ctx: EvalContext) -> list[ScoreRequest]:
        from hhhlab.prompts import lambada_wrapper

        passage = item.data["context"]
        context = ctx.frame(*lambada_wrapper(passage)) if ctx.framed else passage
        return [ScoreRequest(context, " " + item.data["word"])]

    def score(self, item: Item, results: list[ScoreResult], ctx: EvalContext) -> dict:
        (r,) = results
        return {"greedy": r.is_greedy, "logprob": r.logprob, "n_tokens": r.n_tokens}

    def item_metrics(self, result: dict) -> dict[str, float]:
        return {"acc": float(result["greedy"]), "logprob": result["logprob"]}
