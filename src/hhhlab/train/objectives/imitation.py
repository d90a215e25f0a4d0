"""Imitation learning (IL, §3 of the paper): language modelling on each group's best response.

``L_IL = -mean_t log p(y_t | context, y_<t)`` over the good responses' tokens
(`hhhlab.train.losses.imitation_loss`). The model is the causal LM alone — no head, no EOC
token — and it ranks responses at evaluation by their mean per-token log-prob.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from hhhlab.train import losses
from hhhlab.train.batching import TreeBatch
from hhhlab.train.objectives.base import LossTerm, Objective


class Imitation(Objective):
    name: ClassVar[str] = "imitation"
    needs_head: ClassVar[bool] = False
    primary_unit: ClassVar[str] = "tokens"
    batch_responses: ClassVar[str] = "best"  # the other responses are not needed at all

    @property
    def lm_targets(self) -> str:
        return "best"

    def loss_terms(self, model: torch.nn.Module, batch: TreeBatch) -> list[LossTerm]:
        _, token_lp = model(batch, head=False, lm=True)  # token_lp: [N]
        return [LossTerm(losses.imitation_loss(token_lp), "tokens", batch.lm_target.numel())]
