"""Language modelling on plain texts: the objective the text batch source serves.

``L_LM = -mean_t log p(x_t | x_<t)`` over every token of every text of the batch
(`hhhlab.train.losses.imitation_loss` on the texts' token log-probs): a causal LM alone, no
head. A base for objectives on text sequences (a distillation objective overrides
`loss_terms` with its KL against the teacher; see docs/training.md).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from hhhlab.train import losses
from hhhlab.train.batching import TreeBatch
from hhhlab.train.objectives.base import LossTerm, Objective


class LanguageModel(Objective):
    name: ClassVar[str] = "language_model"
    records: ClassVar[str] = "text"  # type: ignore[assignment]
    needs_head: ClassVar[bool] = False
    primary_unit: ClassVar[str] = "tokens"

    @property
    def lm_targets(self) -> str:
        return "all"

    def loss_terms(self, model: torch.nn.Module, batch: TreeBatch) -> list[LossTerm]:
        _, token_lp = model(batch, head=False, lm=True)  # token_lp: [N]
        return [LossTerm(losses.imitation_loss(token_lp), "tokens", batch.lm_target.numel())]

    def evaluate(self, model, path: str) -> dict:
        """Mean token NLL and perplexity on held-out texts (`hhhlab.train.evaluate.lm_metrics`)."""
        from hhhlab.train.evaluate import text_lm_metrics

        return text_lm_metrics(model, path, batch_size=self.cfg.eval_batch_size, limit=self.cfg.max_eval,
                               max_length=model.max_length)
