"""Preference modelling (PM, §3 and eq. C.1): ``L = λ·L_PM + μ·L_LM``.

``L_PM = mean_pairs log(1 + exp(r_bad - r_good))`` (eq. 3.1) over every (better, worse) pair of
the batch's groups, with ``r`` the scalar head read at each response's EOC token;
``L_LM = -mean_t log p(y_t | ...)`` over the best responses' tokens, only computed when
``μ > 0``. ``λ = pm_weight`` (1 in the paper), ``μ = lm_weight`` (0 for fine-tuning, 1 for
preference-model pre-training). The two means are over different units (pairs, tokens), and
each is normalised over the global batch by the loop.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from hhhlab.errors import DataError
from hhhlab.train import losses
from hhhlab.train.batching import TreeBatch
from hhhlab.train.objectives.base import LossTerm, Objective, freeze_untied_output_embedding


class Preference(Objective):
    name: ClassVar[str] = "preference"
    needs_head: ClassVar[bool] = True
    primary_unit: ClassVar[str] = "pairs"

    def validate(self) -> None:
        if not (self.cfg.pm_weight or self.cfg.lm_weight):
            raise DataError("objective preference: pm_weight and lm_weight are both 0 (no loss to train)")

    @property
    def lm_targets(self) -> str:
        return "best" if self.cfg.lm_weight else "none"

    def trainable(self, model) -> None:
        if not self.cfg.lm_weight:  # no LM loss: an untied LM head gets no gradient
            freeze_untied_output_embedding(model)

    def pair_loss(self, scores: torch.Tensor, batch: TreeBatch) -> torch.Tensor:
        """The pairwise term ``L_PM`` (the classifier objective overrides this)."""
        return losses.preference_loss(scores, batch.pair_good, batch.pair_bad)

    def loss_terms(self, model: torch.nn.Module, batch: TreeBatch) -> list[LossTerm]:
        lm_weight = self.cfg.lm_weight
        scores, token_lp = model(batch, head=True, lm=bool(lm_weight))  # scores: [R], token_lp: [N]
        terms = [LossTerm(self.pair_loss(scores, batch), "pairs", batch.pair_good.numel(), self.cfg.pm_weight)]
        if lm_weight:
            terms.append(LossTerm(losses.imitation_loss(token_lp), "tokens", batch.lm_target.numel(), lm_weight))
        return terms
