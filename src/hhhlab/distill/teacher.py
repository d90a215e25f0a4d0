"""The prompted teacher: what it is conditioned on, and the checks made before it runs.

Teacher context (App. B.5, "prepend the HHH prompt plus Human: to each text sample"):
``prompt.text + prompt.separator + "Human:"`` — the prompt followed by the start of one more
dialogue, joined exactly as `prompts.format_query` joins an eval item — then the window's tokens.
The student sees ``"Human:"`` and the same window tokens (our choice; see docs/distillation.md):
the prompt is what distillation removes, the turn marker is what a distilled model is evaluated
with (`prompts.format_query(None, ...)`).

The prefix and the window are concatenated as token ids, not as text, so teacher and student
predict exactly the same target tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hhhlab.distill.cache import tokenizer_checksum
from hhhlab.errors import HHHLabError
from hhhlab.models.engine import Engine
from hhhlab.prompts import HUMAN, Prompt

TURN = f"{HUMAN}:"


class DistillError(HHHLabError):
    """A distillation run that cannot work as asked (tokenizers, window, corpus size, ...)."""


def teacher_prefix_text(prompt: Prompt) -> str:
    return prompt.text + prompt.separator + TURN


def encode_text(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def check_same_tokenizer(teacher_tok, student_tok, teacher: str, student: str) -> str:
    """The shared tokenizer's checksum; a DistillError when teacher and student tokenise differently
    (a teacher cache of token ids means nothing to a student with another vocabulary)."""
    a, b = tokenizer_checksum(teacher_tok), tokenizer_checksum(student_tok)
    if a != b:
        raise DistillError(
            f"teacher {teacher} and student {student} have different tokenizers (vocabulary sizes "
            f"{len(teacher_tok)} and {len(student_tok)}); context distillation matches per-token "
            "distributions, so both must share one tokenizer (e.g. two rungs of one ladder)")
    return a


def check_window(prefix_tokens: int, context_length: int, max_length: int, model: str) -> None:
    if prefix_tokens + context_length > max_length:
        raise DistillError(
            f"the prompt + '{TURN}' is {prefix_tokens} tokens; with {context_length} tokens of text per "
            f"window that is {prefix_tokens + context_length}, more than {model}'s window of {max_length}. "
            f"Use a shorter prompt or --context-length {max(max_length - prefix_tokens, 0)} or less")


class Teacher:
    """A prompted model that returns top-k next-token distributions for corpus windows, with
    the prompt encoded once for the whole corpus (`Engine.topk_logprobs`)."""

    def __init__(self, engine: Engine, prefix_ids: Sequence[int], k: int):
        self.engine, self.prefix_ids, self.k = engine, list(prefix_ids), k

    def __call__(self, windows: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return self.engine.topk_logprobs(self.prefix_ids, windows, self.k)
