"""What an objective is: the contract between `hhhlab.train.trainer`'s loop and one loss.

The loop (set-up, gradient accumulation, schedule, clipping, checkpoints, `accelerate`, logging,
evaluation) never names an objective. It asks the objective's class and instance:

* ``records``      — what the batch source must yield: ``"groups"`` (preference groups) or
  ``"text"`` (plain texts, `hhhlab.train.sources`);
* ``needs_head``   — the model: True = the LM plus a scalar head read at an end-of-context
  (EOC) token (a preference model); False = the causal LM alone (no head, no added token);
* ``encode``       — one record -> one tokenised item (an `EncodedGroup`) or None (skipped,
  counted in the source's `DataStats`);
* ``units``        — what one item contributes to the global normalisers (``{"pairs": 1,
  "tokens": 12}``): every loss term is a mean over some unit, and the loop weights each
  micro-batch's term by its share of the *global* batch's units, so the gradient does not depend
  on the number of processes or micro-batches;
* ``collate``      — items -> model inputs (a `TreeBatch`, anything with ``.to(device)`` and
  ``.n_real_tokens``);
* ``loss_terms``   — the loss of one micro-batch as `LossTerm`s (formula in each docstring;
  the functions live in `hhhlab.train.losses`);
* ``primary_unit`` — what the run reports as ``units_seen`` and per second;
* ``evaluate``     — the post-training evaluation hook (metrics dict), on ``cfg.eval``;
* ``trainable``    — freeze what no loss reaches (DDP requires every trainable parameter to
  get a gradient; the optimizer then skips them).

Register a new objective with `hhhlab.train.objectives.register` (see docs/training.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from hhhlab.train.batching import EncodedGroup, TreeBatch, build_batch

if TYPE_CHECKING:
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.data import DataStats
    from hhhlab.train.preference_model import PreferenceModel


@dataclass
class LossTerm:
    """One term of a micro-batch's loss: ``weight · value``, where ``value`` is a mean over the
    micro-batch's ``n`` units of kind ``unit`` (a key of `Objective.units`)."""

    value: torch.Tensor  # scalar
    unit: str
    n: int
    weight: float = 1.0


class Objective:
    """Base class of training objectives; subclasses set the class attributes and `loss_terms`."""

    name: ClassVar[str]
    records: ClassVar[Literal["groups", "text"]] = "groups"
    needs_head: ClassVar[bool] = False
    primary_unit: ClassVar[str] = "pairs"
    #: which responses of a group enter a training row ("all" or "best") and which get LM
    #: targets ("none", "best", "all") — see `hhhlab.train.batching.build_batch`
    batch_responses: ClassVar[str] = "all"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg

    # -- checks before any work ------------------------------------------------------------
    def validate(self) -> None:
        """Refuse settings this objective cannot use (an `HHHLabError` naming them)."""

    # -- data --------------------------------------------------------------------------------
    def encode(self, record: Any, index: int, tokenizer, max_length: int, stats: DataStats) -> EncodedGroup | None:
        """Tokenise one record of the batch source; None skips it (count why in ``stats``)."""
        from hhhlab.train.data import encode_record

        return encode_record(record, index, tokenizer, max_length, stats)

    def units(self, item: EncodedGroup) -> dict[str, int]:
        """``{"pairs": preference pairs, "tokens": LM target tokens}`` of one item."""
        return {"pairs": len(item.pairs()), "tokens": sum(len(item.responses[i]) for i in item.best())}

    @property
    def lm_targets(self) -> str:
        """Which responses get LM targets in training rows: "none", "best" or "all"."""
        return "none"

    def collate(self, items: Sequence[EncodedGroup], model: PreferenceModel) -> TreeBatch:
        """Tree rows of ``items`` (shared context once; EOC tokens only for head models), short
        rows packed together (`build_batch`'s ``pack``: the same result per token, less padding)."""
        return build_batch(items, eoc_id=model.eoc_id, pad_id=model.tokenizer.pad_token_id,
                           responses=self.batch_responses, lm=self.lm_targets,
                           padding_side=model.tokenizer.padding_side,
                           pack=self.cfg.pack)

    # -- model -----------------------------------------------------------------------------
    def trainable(self, model: PreferenceModel) -> None:
        """Freeze the parameters no loss term reaches (called once, before the optimizer)."""

    def loss_terms(self, model: torch.nn.Module, batch: TreeBatch) -> list[LossTerm]:
        raise NotImplementedError

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, model: PreferenceModel, path: str) -> dict:
        """Metrics of the trained model on the held-out file ``path`` (default: the preference
        metrics of `hhhlab.train.evaluate` on groups: pairwise accuracy, calibration, ...)."""
        from hhhlab.train.trainer import evaluate_model

        metrics, _ = evaluate_model(model, path, batch_size=self.cfg.eval_batch_size, limit=self.cfg.max_eval,
                                    progress=self.cfg.progress)
        return metrics


def freeze_untied_output_embedding(model: PreferenceModel) -> None:
    """Freeze the LM head when it is not the input embedding: used when no LM loss reaches it."""
    out = model.lm.get_output_embeddings()
    if out is not None and out.weight is not model.lm.get_input_embeddings().weight:
        out.requires_grad_(False)
