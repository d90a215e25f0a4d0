"""Typed configs of the PMP stage: the single source of ``hhhlab pmp`` / ``hhhlab pm finetune``
flags, YAML keys and defaults (flags are generated from the fields, as for ``pm train``).

Learning rates. The paper gives only relative rates: PMP at 0.1x and fine-tuning at 0.01x the
*pre-training* learning rate (digest §5.5). Our base rate is ``base_lr = 3e-3``, SmolLM2-135M's
published peak pre-training rate (the SmolLM2 report; the default model's family), so PMP runs at
3e-4 and fine-tuning at 3e-5 unless ``lr`` is given. For a tiny random-initialised model the same
ratios apply to whatever ``base_lr`` you give.

Batch sizes. The paper uses 512 pairs for PMP and 32 for fine-tuning at 13M-52B parameters. On a
2-core CPU a 512-pair step of a 135M model takes minutes, so the PMP default is 32 pairs (the
learning rate is not rescaled: the paper's runs are one epoch over millions of pairs, ours are a
few thousand steps at most); fine-tuning keeps the paper's 32 (or n, when n < 32).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hhhlab.configflags import comma_floats
from hhhlab.errors import DataError, describe_validation_error

BASE_LR = 3e-3
"""SmolLM2-135M's peak pre-training learning rate: the base of the paper's relative rates."""
PMP_LR_FACTOR = 0.1
FINETUNE_LR_FACTOR = 0.01
ETHICS_EPOCHS = 4
DEFAULT_EPOCHS = 1


def _split_list(v):
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    return v


class PMPConfig(BaseModel):
    """One preference-model pre-training run (paper §4): one epoch over a weighted mixture."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field("smollm2-135m", description="model spec: smollm2-135m, smollm2-135m@L4, tiny:llama, hub id")
    sources: list[str] = Field(..., description="PMP sources, comma-separated: preference-group JSONL files "
                               "(hhhlab data build) or [BUILDER=]hf:NAME[:CONFIG][@SPLIT] hub datasets, streamed")
    weights: list[float] | None = Field(None, description="mixture weights, one per source (default: each "
                                        "source's pair count, i.e. one epoch of each, as the paper's Mix)")
    mode: Literal["binarized", "ranked"] = Field("binarized", description="binarized: GOOD:/BAD: recast (§5.2, "
                                                 "the paper's default); ranked: one sampled pair per group")
    pm_weight: float = Field(1.0, ge=0, description="λ of λ·L_PM + μ·L_LM (eq. C.1)")
    lm_weight: float = Field(1.0, ge=0, description="μ: LM loss on the good sequence")
    base_lr: float = Field(BASE_LR, gt=0, description="the pre-training learning rate the paper's ratios refer to")
    lr: float | None = Field(None, gt=0, description="learning rate (default: 0.1 x base_lr)")
    batch_size: int = Field(32, ge=1, description="pairs per step (the paper: 512; scaled for small models)")
    max_steps: int | None = Field(None, ge=1, description="steps (default: one epoch over the prepared pairs)")
    max_pairs: int | None = Field(None, ge=1, description="use only the first N groups of each source")
    eval: list[str] | None = Field(None, description="held-out PMP groups (JSONL), prepared like the sources")
    max_eval: int | None = Field(None, ge=1, description="use only the first N held-out groups of each file")
    output: str = Field(..., description="output directory (prepared data, checkpoints, model, results.json)")
    max_length: int = Field(512, ge=8, description="tokens per sequence (the paper: 1024)")
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    device: str = "auto"
    seed: int = Field(0, description="pair sampling and mixture order")
    shuffle_buffer: int = Field(1024, ge=1)
    checkpoint_every: int = Field(100, ge=1)
    progress: bool = True

    _split = field_validator("sources", "eval", mode="before")(lambda cls, v: _split_list(v))

    _weights = field_validator("weights", mode="before")(lambda cls, v: comma_floats(v))

    @model_validator(mode="after")
    def _check(self) -> PMPConfig:
        if not self.sources:
            raise ValueError("sources: no PMP source given")
        if self.weights is not None and len(self.weights) != len(self.sources):
            raise ValueError(f"weights has {len(self.weights)} values for {len(self.sources)} sources")
        if self.weights is not None and (any(w < 0 for w in self.weights) or sum(self.weights) <= 0):
            raise ValueError(f"weights must be >= 0 with a positive sum, not {self.weights}")
        if not (self.pm_weight or self.lm_weight):
            raise ValueError("pm_weight and lm_weight are both 0: no loss to train")
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else PMP_LR_FACTOR * self.base_lr


class FinetuneConfig(BaseModel):
    """Fine-tuning curves (§4.2): for each n, the first n pairs of one fixed shuffle of ``train``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    init: str = Field(..., description="a PMP output directory (its model and head are kept), or a model spec "
                      "(the no-PMP baseline: a fresh head)")
    model: str | None = Field(None, description="the base model spec of a PMP --init directory (default: the "
                              "one recorded in it)")
    train: str = Field(..., description="fine-tuning preference groups (JSONL); one sampled pair per group")
    eval: str = Field(..., description="held-out preference groups (JSONL)")
    sizes: list[int] = Field([0, 100, 300, 1000, 3000], description="fine-tuning pair counts; 0 = zero-shot")
    epochs: float | None = Field(None, gt=0, description="passes over the n pairs (default: 4 for ETHICS, else 1: "
                                 "the paper's)")
    base_lr: float = Field(BASE_LR, gt=0, description="the pre-training learning rate the paper's ratios refer to")
    lr: float | None = Field(None, gt=0, description="learning rate (default: 0.01 x base_lr)")
    batch_size: int = Field(32, ge=1, description="pairs per step (the paper's 32; n when n is smaller)")
    pm_weight: float = Field(1.0, ge=0, description="λ (the paper fine-tunes with (1, 1))")
    lm_weight: float = Field(1.0, ge=0, description="μ")
    max_eval: int | None = Field(None, ge=1, description="use only the first N held-out groups")
    output: str = Field(..., description="output directory: one sub-directory per n, results.json")
    max_length: int = Field(512, ge=8)
    dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    device: str = "auto"
    seed: int = Field(0, description="the one shuffle every n takes its first pairs from; pair sampling")
    eval_batch_size: int = Field(32, ge=1)
    progress: bool = True

    @field_validator("sizes", mode="before")
    @classmethod
    def _sizes(cls, v):
        if isinstance(v, str):
            try:
                return [int(x) for x in v.split(",") if x.strip()]
            except ValueError:
                raise ValueError(f"sizes: expected comma-separated integers, not {v!r}") from None
        return v

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        if not self.sizes:
            raise ValueError("sizes: give at least one fine-tuning size")
        if any(n < 0 for n in self.sizes):
            raise ValueError(f"sizes must be >= 0, not {self.sizes}")
        if not (self.pm_weight or self.lm_weight):
            raise ValueError("pm_weight and lm_weight are both 0: no loss to train")
        return self

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else FINETUNE_LR_FACTOR * self.base_lr


def load(cls, yaml_path=None, **overrides):
    """``cls`` from a YAML file, then the given overrides (None = not given); errors name the key."""
    from pathlib import Path

    import yaml
    from pydantic import ValidationError

    values: dict = {}
    if yaml_path:
        try:
            loaded = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise DataError(f"cannot read config {yaml_path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise DataError(f"{yaml_path}: expected a mapping of option: value")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except ValidationError as exc:
        raise DataError(f"invalid {cls.__name__} ({yaml_path or 'command line'}): "
                        f"{describe_validation_error(exc, 'config')}") from None
