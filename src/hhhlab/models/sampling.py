"""Token sampling with one random generator per sample, stop sequences and banned strings.

Why a generator per sample: a sample's tokens then depend only on (seed, prompt, sample index),
not on which other prompts shared its batch or on the batch size, so evals are reproducible
however they are batched or resumed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def sample_seed(seed: int, prompt: str, sample: int) -> int:
    digest = hashlib.sha256(f"{seed}\x00{sample}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_generators(seed: int, prompt: str, n: int, device: torch.device) -> list[torch.Generator]:
    return [
        torch.Generator(device=device).manual_seed(sample_seed(seed, prompt, j)) for j in range(n)
    ]


def next_tokens(
    logits: torch.Tensor, *, temperature: float, top_p: float, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One token per row of ``logits`` (rows, vocab): greedy if temperature <= 0, else
    temperature + nucleus (top-p: the smallest set of tokens whose probability reaches top_p)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        drop = (sorted_p.cumsum(-1) - sorted_p) > top_p  # mass before this token already enough
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    return torch.cat(
        [torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(generators)]
    )


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Text up to (not including) the earliest stop sequence."""
    cut = len(text)
    for s in stop:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut]


def hits_stop(text: str, stop: Sequence[str]) -> bool:
    return any(s and s in text for s in stop)


def completes_ban(before: str, after: str, ban: Sequence[str]) -> bool:
    """Whether ``after`` (a sample's text with one more token) holds a banned string that
    ``before`` (its text without that token) did not: the token completes it, even when the
    string spans several tokens ("Hu" + "man:")."""
    return any(b in after and b not in before for b in ban)
