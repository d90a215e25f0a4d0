"""``hhhlab data stats FILE``: what is in a preference file, in one streaming pass.

Counts (groups, responses, ordered pairs with different scores, by source and kind), a histogram
of scores and of responses per group, and token-length percentiles of contexts, responses and
whole sequences (context + response).

Tokenizers: ``whitespace`` (default: no download, counts words), ``tiny`` (the lab's offline
byte-level BPE), or any Hugging Face tokenizer path or hub id (needs it locally or the hub).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hhhlab.data.schema import read_jsonl
from hhhlab.errors import DataError

PERCENTILES = (50, 90, 99, 100)


def get_tokenizer(spec: str) -> Callable[[list[str]], list[int]]:
    """A function from texts to token counts."""
    if spec == "whitespace":
        return lambda texts: [len(t.split()) for t in texts]
    from transformers import PreTrainedTokenizerBase

    tok: PreTrainedTokenizerBase
    if spec == "tiny":
        from hhhlab.models.tiny import tiny_tokenizer

        tok = tiny_tokenizer()
    else:
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot load tokenizer {spec!r} (use 'whitespace', 'tiny', a local path or a "
                            f"hub id available offline): {exc}") from None
    return lambda texts: [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def compute_stats(path: Path, tokenizer: str = "whitespace", batch: int = 256) -> dict:
    """Stream ``path`` once and return the statistics as a JSON-able dict."""
    count_tokens = get_tokenizer(tokenizer)
    sources: Counter = Counter()
    kinds: Counter = Counter()
    scores: Counter = Counter()
    sizes: Counter = Counter()
    n_groups = n_responses = n_pairs = 0
    # compact int arrays: the one state that grows with the file (4 bytes per text)
    lengths = {"context": array("i"), "response": array("i"), "sequence": array("i")}
    pending_ctx: list[str] = []
    pending_resp: list[str] = []
    pending_owner: list[int] = []

    def flush():
        if not pending_ctx:
            return
        ctx = count_tokens(pending_ctx)
        resp = count_tokens(pending_resp)
        lengths["context"].extend(ctx)
        lengths["response"].extend(resp)
        lengths["sequence"].extend(ctx[o] + r for o, r in zip(pending_owner, resp))
        pending_ctx.clear()
        pending_resp.clear()
        pending_owner.clear()

    for g in read_jsonl(path):
        n_groups += 1
        n_responses += len(g.responses)
        n_pairs += sum(1 for a in g.scores for b in g.scores if a > b)
        sources[g.source] += 1
        kinds[g.kind] += 1
        sizes[len(g.responses)] += 1
        scores.update(_fmt(s) for s in g.scores)
        pending_owner.extend([len(pending_ctx)] * len(g.responses))
        pending_ctx.append(g.context)
        pending_resp.extend(g.responses)
        if len(pending_ctx) >= batch:
            flush()
    flush()
    return {
        "file": str(path), "tokenizer": tokenizer, "groups": n_groups, "responses": n_responses,
        "pairs": n_pairs, "sources": dict(sources), "kinds": dict(kinds),
        "responses_per_group": {str(k): v for k, v in sorted(sizes.items())},
        "scores": dict(sorted(scores.items(), key=lambda kv: float(kv[0]))),
        "token_lengths": {name: _percentiles(values) for name, values in lengths.items()},
    }


def _fmt(score: float) -> str:
    return str(int(score)) if float(score).is_integer() else f"{score:g}"


def _percentiles(values: array) -> dict[str, float]:
    if not len(values):
        return {}
    arr = np.frombuffer(values, dtype=np.int32)
    out = {f"p{p}": float(np.percentile(arr, p)) for p in PERCENTILES}
    out["mean"] = float(arr.mean())
    return out


def print_stats(stats: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{stats['file']}[/]: {stats['groups']} groups, {stats['responses']} responses, "
                  f"{stats['pairs']} ordered pairs with different scores")
    console.print("sources: " + ", ".join(f"{k} {v}" for k, v in stats["sources"].items())
                  + "; kinds: " + ", ".join(f"{k} {v}" for k, v in stats["kinds"].items()))
    total = sum(stats["scores"].values()) or 1
    table = Table(title="score histogram (responses)")
    for col in ("score", "responses", "share", ""):
        table.add_column(col)
    for score, n in stats["scores"].items():
        table.add_row(score, str(n), f"{n / total:.1%}", "#" * max(1, round(40 * n / total)))
    console.print(table)
    console.print("responses per group: " + ", ".join(f"{k}: {v}" for k, v in stats["responses_per_group"].items()))
    table = Table(title=f"token lengths ({stats['tokenizer']})")
    table.add_column("text")
    for col in (*(f"p{p}" for p in PERCENTILES), "mean"):
        table.add_column(col if col != "p100" else "max")
    for name, pct in stats["token_lengths"].items():
        if pct:
            table.add_row(name, *(f"{pct[f'p{p}']:.0f}" for p in PERCENTILES), f"{pct['mean']:.1f}")
    console.print(table)
