"""One tokenisation of (context, continuation) for scoring and training.

The engine's log-probs and a training batch must agree token for token: a distillation student
learns the teacher's log-probs position by position, and a preference model trained on one
split and evaluated on another would not be the model we think. So both `hhhlab.models.engine`
and `hhhlab.train.batching` call these functions, which follow lm-evaluation-harness:

1. trailing whitespace of the context moves to the front of the continuation
   (``"Q: hi\\nA: "`` + ``"yes"`` -> ``"Q: hi\\nA:"`` + ``" yes"``);
2. the context is encoded alone, the pair is encoded whole, and the continuation's tokens are
   the whole encoding's tokens past the context's own (so a BPE merge across the boundary is
   the same merge the model saw in pre-training);
3. an empty context is the BOS token (EOS when the tokenizer has no BOS), so the first
   continuation token still has a position to be predicted from.

No special tokens are added (``add_special_tokens=False``), as in lm-eval for causal LMs.
"""

from __future__ import annotations

from collections.abc import Sequence


class TokenizationError(ValueError):
    """A continuation that is empty or has no tokens of its own."""


def prefix_token_id(tokenizer) -> int:
    """The token an empty context becomes (BOS, else EOS)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def normalize_pair(context: str, continuation: str) -> tuple[str, str]:
    """Rule 1: move the context's trailing whitespace to the continuation; an empty
    continuation is a TokenizationError."""
    if continuation == "":
        raise TokenizationError("the continuation is empty")
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def texts_to_encode(context: str, continuation: str) -> tuple[str, ...]:
    """The strings `split_encoded` needs encoded for a normalised pair (for batched encoding)."""
    return (context, context + continuation) if context else (continuation,)


def split_encoded(context: str, continuation: str, enc: dict[str, list[int]], prefix_id: int
                  ) -> tuple[list[int], list[int]]:
    """Rules 2-3 for a normalised pair, given ``enc[text]`` = token ids of each text of
    `texts_to_encode`. Identical contexts may share one token list: do not mutate it."""
    if context == "":
        ctx, cont = [prefix_id], enc[continuation]
    else:
        ctx = enc[context]
        cont = enc[context + continuation][len(ctx):]
    if not cont:
        raise TokenizationError(f"continuation {continuation!r} has no tokens of its own")
    return ctx, cont


def encode_texts(tokenizer, texts: Sequence[str]) -> dict[str, list[int]]:
    """Token ids of each distinct text, in one batched tokenizer call."""
    unique = list(dict.fromkeys(texts))
    ids = tokenizer(unique, add_special_tokens=False)["input_ids"] if unique else []
    return dict(zip(unique, ids))


def encode_continuations(tokenizer, context: str, continuations: Sequence[str]
                         ) -> tuple[list[int], list[list[int]]]:
    """Token ids ``(context, [continuation_i])`` of the pairs ``(context, continuation_i)``.

    The normalised context (rule 1 strips the same whitespace whatever the continuation) and so
    its ids are the same for every pair: a group's responses share one encoded context."""
    if not continuations:
        raise TokenizationError("no continuations to encode")
    pairs = [normalize_pair(context, c) for c in continuations]
    enc = encode_texts(tokenizer, [t for c, k in pairs for t in texts_to_encode(c, k)])
    prefix = prefix_token_id(tokenizer)
    out = [split_encoded(c, k, enc, prefix) for c, k in pairs]
    return list(out[0][0]), [k for _, k in out]


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids ``(context, continuation)`` of one pair (see the module docstring)."""
    ctx, conts = encode_continuations(tokenizer, context, [continuation])
    return ctx, conts[0]
