"""Sweep cells trained in one process from one loaded model (``hhhlab sweep pmp-synthetic``).

Why: a sweep of many short cells — the synthetic experiment is 6 conditions x 4 fine-tuning
sizes, each a few dozen steps on sequences of about 12 tokens — spent most of its wall time,
when every cell was its own `train_and_evaluate` run, outside the training steps: loading the
base model for every cell (and again to check an ``--init``), saving every cell's model and a
model-plus-optimizer checkpoint, loading that model back to evaluate it, and tokenising the same
held-out file again for every cell.

Here the base model is loaded once. A cell trains a copy of the model it starts from (`clone`:
weights copied in memory, the tokenizer shared) through the shared training loop
(`hhhlab.train.trainer.train` with ``model=``), on items tokenised once, and is evaluated on
held-out groups tokenised once. What a cell computes is the file-based commands' computation:
the same objective, optimizer, learning rate, batches and evaluation.

Resumable per cell: a cell's result is a JSON file keyed by everything that determines it
(`cached`, `save_cell`); a pre-trained model that later cells start from is saved once, so a
restarted sweep loads it instead of pre-training again. A cell interrupted mid-way is re-run
from its start (cells are short; checkpointing each would cost more than it saves).
"""

from __future__ import annotations

import copy
from pathlib import Path

from hhhlab.store import atomic_write_json, read_json
from hhhlab.train.preference_model import PreferenceModel
from hhhlab.train.sources import BatchSource


def clone(pm: PreferenceModel) -> PreferenceModel:
    """A trainable copy of ``pm``'s weights (a fraction of a second; a reload is seconds). The
    tokenizer is shared: cells never change it."""
    return copy.deepcopy(pm, memo={id(pm.tokenizer): pm.tokenizer})


def train_copy(init: PreferenceModel, tcfg, source: BatchSource) -> tuple[PreferenceModel, dict]:
    """Train a `clone` of ``init`` with ``tcfg`` (a `TrainConfig`) on ``source``; ``init`` is untouched."""
    from hhhlab.train.trainer import make_objective, train

    return train(tcfg, objective=make_objective(tcfg), source=source, model=clone(init))


def cached(path: Path, key: dict) -> dict | None:
    """The result saved at ``path`` if it was computed with ``key``, else None."""
    if not path.exists():
        return None
    done = read_json(path)
    return done if done.get("key") == key else None


def save_cell(path: Path, key: dict, result: dict) -> dict:
    """Write a cell's result with its key (atomically: a kill leaves the old file or none)."""
    done = {"key": key, **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, done)
    return done
