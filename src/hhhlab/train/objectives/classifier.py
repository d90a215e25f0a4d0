"""A pointwise good/bad classifier (beyond the paper), with the PM's model and optional LM term.

``L = λ·mean_pairs [BCE(σ(r_good), 1) + BCE(σ(r_bad), 0)] / 2 + μ·L_LM``
(`hhhlab.train.losses.classifier_loss`): the same head at the EOC token as a preference model,
trained to say whether each response is the better one rather than which one is.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from hhhlab.train import losses
from hhhlab.train.batching import TreeBatch
from hhhlab.train.objectives.preference import Preference


class Classifier(Preference):
    name: ClassVar[str] = "classifier"

    def pair_loss(self, scores: torch.Tensor, batch: TreeBatch) -> torch.Tensor:
        return losses.classifier_loss(scores, batch.pair_good, batch.pair_bad)
