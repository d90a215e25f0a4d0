"""From preference groups to model inputs: one *tree row* per group, shared context encoded once.

A group's responses share their context, so a row holds the context once followed by every
response, each ending with the end-of-context (EOC) token::

    [ context | response_1 EOC | response_2 EOC | ... ]

An attention mask shaped like a tree lets each response see the context and itself but not its
siblings, and position ids restart after the context, so every response is computed exactly as
if it were the only continuation (``context + response_i + EOC``), at the cost of
``len(context) + Σ len(response_i)`` tokens instead of ``n·len(context) + Σ len(response_i)``.
For chosen/rejected dialogue pairs (hh-rlhf), whose shared context is most of the text, that
is most of the saving over encoding the two sequences separately.

Responses that start with the same tokens (``" The capital of Kenya is Nairobi."`` vs ``"... is
Kyiv."``) share those tokens too: the common first tokens of a row's responses are laid out
once, after the context, and each response continues from them at the positions it has alone —
exactly the computation of each response alone (each token sees what it would see), with
fewer tokens. Their LM targets are still every token of each response.

Scores are read at the EOC positions, which are computed here, never searched for — so they are
right whatever the pad token is (pad == EOS in SmolLM2 and Llama) and whichever side pads.

Models without a head (imitation, language modelling) get no EOC token: ``eoc_id=None`` lays
out ``[ context | response_1 | response_2 | ... ]``.

Tokenisation is `hhhlab.models.tokenize`'s, the one the scoring engine uses (lm-evaluation-
harness's boundary rule), so a response has the same ids here as in ``Engine.score``. Too long a
sequence loses context tokens from the left, never response tokens; a response that cannot fit
even with one context token is reported to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hhhlab.data.schema import is_empty_reply
from hhhlab.models.attention import tree_attention_mask
from hhhlab.models.tokenize import encode_continuations, prefix_token_id

EOC_TOKEN = "<|end_of_context|>"


@dataclass
class EncodedGroup:
    """A tokenised group. ``responses`` exclude the EOC token; ``truncated`` = context tokens dropped."""

    index: int
    context: list[int]
    responses: list[list[int]]
    scores: list[float]
    truncated: int = 0
    group_id: str = ""
    metadata: dict = field(default_factory=dict)

    def pairs(self) -> list[tuple[int, int]]:
        """Every (better, worse) response-index pair with different scores."""
        s = self.scores
        return [(i, j) for i in range(len(s)) for j in range(len(s)) if s[i] > s[j]]

    def best(self) -> list[int]:
        top = max(self.scores)
        return [i for i, x in enumerate(self.scores) if x == top]

    @property
    def n_tokens(self) -> int:
        """Tokens of the tree row (context once, each response plus its EOC)."""
        return len(self.context) + sum(len(r) + 1 for r in self.responses)


class ResponseTooLong(ValueError):
    """A response that does not fit the window even with a single context token."""


def encode_group(
    tokenizer, context: str, responses: Sequence[str], scores: Sequence[float], *, max_length: int,
    index: int = 0, group_id: str = "", metadata: dict | None = None,
) -> EncodedGroup:
    """Tokenise one group and fit every ``context + response + EOC`` into ``max_length`` tokens
    by dropping context tokens from the left. Raises ResponseTooLong when a response alone
    (plus one context token and the EOC) exceeds the window, ValueError for an empty response."""
    for i, r in enumerate(responses):  # the schema's rule; scoring-API callers bypass the schema
        if is_empty_reply(r):
            raise ValueError(f"response {i} of group {group_id or index} is empty")
    ctx, resp = encode_continuations(tokenizer, context, responses)
    longest = max(len(r) for r in resp)
    if longest + 2 > max_length:
        raise ResponseTooLong(
            f"group {group_id or index}: a response of {longest} tokens does not fit the window of "
            f"{max_length} with its EOC token and any context")
    drop = max(0, len(ctx) + longest + 1 - max_length)
    return EncodedGroup(index=index, context=ctx[drop:], responses=resp, scores=list(scores), truncated=drop,
                        group_id=group_id, metadata=dict(metadata or {}))


def encode_text(tokenizer, text: str, *, max_length: int, index: int = 0, text_id: str = "") -> EncodedGroup:
    """A plain text for language modelling as a one-response group: the BOS token as context and
    the text's tokens (cut to the window from the right, counted in ``truncated``) as the
    response, so every token of the text is a target."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    keep = max_length - 1
    return EncodedGroup(index=index, context=[prefix_token_id(tokenizer)], responses=[ids[:keep]], scores=[0.0],
                        truncated=max(0, len(ids) - keep), group_id=text_id)


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Tokens all ``seqs`` start with, leaving each at least one token of its own."""
    limit = min(len(x) for x in seqs) - 1
    n = 0
    while n < limit and all(x[n] == seqs[0][n] for x in seqs):
        n += 1
    return n


@dataclass
class TreeBatch:
    """Model inputs for a batch of tree rows. ``R`` responses, ``P`` pairs, ``N`` LM target tokens."""

    input_ids: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [B, T]
    tree_mask: torch.Tensor  # [B, 1, T, T] bool, True = may attend
    eoc_row: torch.Tensor  # [R]
    eoc_col: torch.Tensor  # [R]
    pair_good: torch.Tensor  # [P] indices into the R responses
    pair_bad: torch.Tensor  # [P]
    lm_row: torch.Tensor  # [N] row of the position that predicts each target token
    lm_col: torch.Tensor  # [N]
    lm_target: torch.Tensor  # [N]
    lm_owner: torch.Tensor  # [N] response (0..R-1) each target token belongs to
    response_keys: list[tuple[int, int]]  # (group index, response index) for each of the R responses
    n_real_tokens: int

    def to(self, device: torch.device | str) -> TreeBatch:
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.to(device) if isinstance(v, torch.Tensor) else v
        return TreeBatch(**out)


def build_batch(
    groups: Sequence[EncodedGroup], *, eoc_id: int | None, pad_id: int, responses: str = "all", lm: str = "none",
    padding_side: str = "right", max_responses_per_row: int | None = None, pack: bool = False,
) -> TreeBatch:
    """Lay out ``groups`` as tree rows and collate them.

    ``responses``: ``all`` (PM, classifier, evaluation) or ``best`` (IL training: only the
    top-scored responses are needed). ``lm``: which responses get LM targets — ``none``, ``best``
    (IL training, PM with μ > 0) or ``all`` (IL evaluation). ``max_responses_per_row`` splits a
    group's responses over several rows (each with the context), e.g. to cap a batch's size.
    Pairs are only formed between responses in the same row. ``eoc_id=None``: no EOC token
    (models without a head); the batch then has no score positions.

    ``pack``: place short tree rows one after another in a shared row (first-fit decreasing, never
    wider than the longest row), each a separate attention block with its own positions, so a
    batch of mixed lengths runs with less padding and gives the same result per token."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be left or right, not {padding_side!r}")
    rows: list[tuple[list[int], list[int], list[int]]] = []  # tokens, positions, segments
    eoc_row, eoc_col, good, bad = [], [], [], []
    lm_row, lm_col, lm_target, lm_owner = [], [], [], []
    keys: list[tuple[int, int]] = []
    eoc = [eoc_id] if eoc_id is not None else []
    for g in groups:
        chosen = g.best() if responses == "best" else list(range(len(g.responses)))
        lm_set = set(g.best()) if lm == "best" else set(chosen) if lm == "all" else set()
        cap = max_responses_per_row or len(chosen)
        for start in range(0, len(chosen), cap):
            part = chosen[start : start + cap]
            r = len(rows)
            n_ctx = len(g.context)
            p = common_prefix([g.responses[i] for i in part]) if len(part) > 1 else 0
            shared = g.responses[part[0]][:p]  # the responses' common first tokens: run once, as context
            tokens = list(g.context) + shared
            positions, segments = list(range(n_ctx + p)), [0] * (n_ctx + p)
            local: dict[int, int] = {}
            for seg, i in enumerate(part, 1):
                resp = g.responses[i]
                own = resp[p:]
                first = len(tokens)
                tokens += own + eoc
                positions += list(range(n_ctx + p, n_ctx + len(resp) + len(eoc)))
                segments += [seg] * (len(own) + len(eoc))
                local[i] = len(keys)
                keys.append((g.index, i))
                if eoc:
                    eoc_row.append(r)
                    eoc_col.append(len(tokens) - 1)
                if i in lm_set:  # resp[k] is predicted from the position before it (shared or own)
                    preds = list(range(n_ctx - 1, n_ctx + p)) + list(range(first, first + len(own) - 1))
                    lm_row += [r] * len(resp)
                    lm_col += preds
                    lm_target += resp
                    lm_owner += [local[i]] * len(resp)
            for i, j in g.pairs():
                if i in local and j in local:
                    good.append(local[i])
                    bad.append(local[j])
            rows.append((tokens, positions, segments))
    width = max(len(t) for t, _, _ in rows)
    place = pack_rows([len(t) for t, _, _ in rows], width) if pack else [(r, 0) for r in range(len(rows))]
    B = max(b for b, _ in place) + 1
    ids = torch.full((B, width), pad_id, dtype=torch.long)
    pos = torch.zeros((B, width), dtype=torch.long)
    seg_t = torch.full((B, width), -1, dtype=torch.long)  # [B, W] segment of each token, -1 = pad
    blk_t = torch.full((B, width), -1, dtype=torch.long)  # [B, W] tree row each token belongs to
    used = [0] * B
    for (b, start), (t, _, _) in zip(place, rows):
        used[b] = max(used[b], start + len(t))
    shift = [width - u if padding_side == "left" else 0 for u in used]  # per packed row
    row_b, row_off = [], []
    for r, ((b, start), (t, posns, segs)) in enumerate(zip(place, rows)):
        off = shift[b] + start
        row_b.append(b)
        row_off.append(off)
        ids[b, off : off + len(t)] = torch.tensor(t)
        pos[b, off : off + len(t)] = torch.tensor(posns)
        seg_t[b, off : off + len(t)] = torch.tensor(segs)
        blk_t[b, off : off + len(t)] = r
    row_b_t = torch.tensor(row_b, dtype=torch.long)
    off_t = torch.tensor(row_off, dtype=torch.long)
    eoc_row_t = torch.tensor(eoc_row, dtype=torch.long)
    lm_row_t = torch.tensor(lm_row, dtype=torch.long)
    packed = B < len(rows)
    return TreeBatch(
        input_ids=ids, position_ids=pos, tree_mask=tree_attention_mask(seg_t, blk_t if packed else None),
        eoc_row=row_b_t[eoc_row_t], eoc_col=torch.tensor(eoc_col, dtype=torch.long) + off_t[eoc_row_t],
        pair_good=torch.tensor(good, dtype=torch.long), pair_bad=torch.tensor(bad, dtype=torch.long),
        lm_row=row_b_t[lm_row_t], lm_col=torch.tensor(lm_col, dtype=torch.long) + off_t[lm_row_t],
        lm_target=torch.tensor(lm_target, dtype=torch.long), lm_owner=torch.tensor(lm_owner, dtype=torch.long),
        response_keys=keys, n_real_tokens=sum(len(t) for t, _, _ in rows),
    )


def pack_rows(lengths: Sequence[int], capacity: int) -> list[tuple[int, int]]:
    """First-fit decreasing: ``(packed row, start column)`` for each row of ``lengths``.

    Deterministic (ties keep input order), and never more packed rows than rows; a row longer
    than ``capacity`` gets a packed row of its own."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    fill: list[int] = []
    place: list[tuple[int, int]] = [(0, 0)] * len(lengths)
    for i in order:
        for b, used in enumerate(fill):
            if used + lengths[i] <= capacity:
                place[i] = (b, used)
                fill[b] += lengths[i]
                break
        else:
            place[i] = (len(fill), 0)
            fill.append(lengths[i])
    return place
