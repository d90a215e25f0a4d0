"""Context distillation (§3, eq. 2.1) and its baseline, fine-tuning on the prompt text (Fig 20 left).

``distillation``: ``L = mean_t KL_{k+1}(p0(x_t | C, x_<t) ‖ pθ(x_t | x_<t))`` — the student (no
prompt C) matches the cached top-k of the prompted teacher at every window token
(`hhhlab.train.losses.distillation_loss`). Items are windows of a `TeacherCache`: context = the
student's prefix tokens (``"Human:"``), the one response = the window, so every window token is
an LM target and the model returns the logits ``[N, V]`` that predict them; `collate` attaches
the teacher's rows for exactly those N targets (``DistillBatch``).

``prompt_finetune``: plain language modelling on the prompt's own text (windows of its tokens),
the paper's "finetuned on the prompt" baseline, which shifts P(X) towards P(C) instead of
computing P(X | C).

Both come with their batch source (`CacheSource`, `TokenWindowSource`): windows in a seeded
permutation per epoch, a pure function of the step, as the loop requires.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from hhhlab.errors import HHHLabError
from hhhlab.train import losses
from hhhlab.train.batching import EncodedGroup, TreeBatch
from hhhlab.train.data import DataStats
from hhhlab.train.objectives import LossTerm, register
from hhhlab.train.objectives.language_model import LanguageModel

if TYPE_CHECKING:
    from hhhlab.distill.cache import TeacherCache
    from hhhlab.train.config import TrainConfig


@dataclass
class DistillBatch(TreeBatch):
    """A `TreeBatch` plus the teacher's top-k rows for each of its N LM targets."""

    teacher_logprobs: torch.Tensor | None = None  # [N, k]
    teacher_ids: torch.Tensor | None = None  # [N, k] int64

    def to(self, device: torch.device | str) -> DistillBatch:
        out: dict[str, Any] = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}
        return DistillBatch(**out)


def target_positions(batch: TreeBatch, items: Sequence[EncodedGroup]) -> list[tuple[int, int]]:
    """For each LM target n: (position of its item in ``items``, position of the token in its
    response). ``batch.response_keys`` name items by their ``index``."""
    where = {g.index: i for i, g in enumerate(items)}
    seen: dict[int, int] = {}
    out = []
    for r in batch.lm_owner.tolist():
        t = seen.get(r, 0)
        seen[r] = t + 1
        out.append((where[batch.response_keys[r][0]], t))
    return out


@register
class Distillation(LanguageModel):
    name: ClassVar[str] = "distillation"

    def __init__(self, cfg: TrainConfig, cache: TeacherCache | None = None):
        super().__init__(cfg)
        self.cache = cache

    def validate(self) -> None:
        if self.cache is None:
            raise HHHLabError(
                f"objective {self.name!r} trains on a cache of the prompted teacher's top-k log-probs, which "
                "`hhhlab pm train` does not build: run `hhhlab distill --model M --prompt hhh --tokens N --output "
                "DIR` (it caches the teacher, then trains through this same loop; see docs/distillation.md)")

    def collate(self, items: Sequence[EncodedGroup], model) -> DistillBatch:
        assert self.cache is not None
        batch = super().collate(items, model)
        rows = [self.cache.window(g.metadata["window"]) for g in items]  # (tokens, lp, ids) per item
        for g, (tokens, _, _) in zip(items, rows):
            if g.responses[0] != tokens.tolist():
                raise HHHLabError(f"window {g.metadata['window']}: the cache's tokens differ from the item's")
        where = target_positions(batch, items)
        lp = torch.stack([rows[i][1][t] for i, t in where]).float()  # [N, k]
        ids = torch.stack([rows[i][2][t] for i, t in where]).long()  # [N, k]
        return DistillBatch(**batch.__dict__, teacher_logprobs=lp, teacher_ids=ids)

    def loss_terms(self, model: torch.nn.Module, batch: TreeBatch) -> list[LossTerm]:
        assert isinstance(batch, DistillBatch) and batch.teacher_logprobs is not None
        assert batch.teacher_ids is not None  # set together with teacher_logprobs
        _, logits = model(batch, head=False, lm=True, logits=True)  # [N, V]
        kl = losses.distillation_loss(logits, batch.teacher_logprobs, batch.teacher_ids)
        return [LossTerm(kl, "tokens", batch.lm_target.numel())]


@register
class PromptFinetune(LanguageModel):
    """LM loss on windows of the prompt text (Fig 20's "Finetuned on Prompt")."""

    name: ClassVar[str] = "prompt_finetune"


class _WindowSource:
    """Windows as one-response items with a fixed context, ``batch_size`` per step, a seeded
    permutation of the windows per epoch (a pure function of the step)."""

    def __init__(self, windows: Sequence[Sequence[int]], context: list[int], batch_size: int, seed: int,
                 with_window_index: bool):
        if len(windows) < 1:
            raise HHHLabError("no training windows")
        self.windows, self.context, self.seed = windows, list(context), seed
        self.batch_size = min(batch_size, len(windows))
        self.with_index = with_window_index
        self.stats = DataStats()

    @property
    def steps_per_epoch(self) -> int:
        return len(self.windows) // self.batch_size

    def global_batch(self, step: int) -> list[EncodedGroup]:
        epoch, b = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))
        picked = perm[b * self.batch_size : (b + 1) * self.batch_size].tolist()
        return [EncodedGroup(index=i, context=list(self.context), responses=[list(map(int, self.windows[i]))],
                             scores=[0.0], group_id=f"window:{i}",
                             metadata={"window": i} if self.with_index else {}) for i in picked]

    def describe(self) -> dict:
        return {"kind": type(self).__name__, "windows": len(self.windows), "batch_size": self.batch_size,
                "window_tokens": len(self.windows[0]), "context_tokens": len(self.context)}


class CacheSource(_WindowSource):
    """The windows of a teacher cache (the student sees ``context`` + window)."""

    def __init__(self, cache: TeacherCache, context: list[int], batch_size: int, seed: int = 0):
        windows = [cache.window(i)[0].tolist() for i in range(len(cache))]
        super().__init__(windows, context, batch_size, seed, with_window_index=True)


class TokenWindowSource(_WindowSource):
    """Windows of one token stream (the prompt, for ``prompt_finetune``)."""

    def __init__(self, tokens: list[int], window: int, context: list[int], batch_size: int, seed: int = 0):
        n = max(1, len(tokens) // window)
        windows = [tokens[i * window : (i + 1) * window] for i in range(n)]
        super().__init__([w for w in windows if w], context, batch_size, seed, with_window_index=False)
