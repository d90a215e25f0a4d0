"""`TrainConfig`: the single source of `hhhlab pm train`'s flags, its YAML files and its defaults.

Every field is a CLI flag of the same name (``max_steps`` -> ``--max-steps``); a YAML file given
with ``--config`` supplies values, and flags given on the command line override it. Unknown
YAML keys and bad values are errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hhhlab.configflags import comma_floats
from hhhlab.errors import DataError, describe_validation_error
from hhhlab.train.objectives import ALIASES as OBJECTIVE_ALIASES
from hhhlab.train.objectives import canonical_name, get_objective, objective_names

__all__ = ["OBJECTIVE_ALIASES", "TrainConfig", "load_config"]


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run (any registered objective) and its evaluation."""

    # strict: `batch_size: true` is an error, not 1; no inf/NaN (`epochs: .inf` would never end)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    model: str = Field("smollm2-135m", description="model spec: smollm2-135m, hub id, path, tiny:llama, M@L<k>")
    objective: str = Field("preference", description="a registered objective: imitation | preference (alias: ranked) "
                           "| classifier | language_model (alias: lm) | ...")
    train: str = Field(..., description="training data: JSONL preference groups, or texts (JSONL {\"text\"} / .txt) "
                       "for text objectives; several files separated by commas")
    source: Literal["memory", "stream"] = Field(
        "memory", description="memory: read every file whole (epochs, length grouping); stream: a seeded weighted "
        "mixture of the files, never read whole (needs max_steps)")
    train_weights: list[float] | None = Field(
        None, description="mixture weights of the training files, comma-separated (source stream; default equal)")
    shuffle_buffer: int = Field(1024, ge=1, description="source stream: lines shuffled together within each file")
    init: str | None = Field(None, description="warm start from a saved model directory (OUTPUT/model of a run): "
                             "its weights, and its head and EOC token when the objective has a head")
    eval: str | None = Field(None, description="held-out preference groups (JSONL)")
    output: str = Field(..., description="output directory (checkpoints, model, metrics.json)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps (default: epochs over the data)")
    epochs: float = Field(1.0, gt=0, description="passes over the training data when max_steps is not set")
    batch_size: int = Field(8, ge=1, description="groups (pairs, for pair data) per optimizer step, all processes")
    grad_accum: int = Field(1, ge=1, description="micro-batches per step and process")
    lr: float = Field(1e-5, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="after warm-up")
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: float | None = Field(1.0, description="clip gradients to this norm (None: no clipping)")
    pm_weight: float = Field(1.0, ge=0, description="λ: weight of the preference (or classifier) loss (eq. C.1)")
    lm_weight: float = Field(0.0, ge=0, description="μ: LM loss on the good sequence added to the PM loss (eq. C.1)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="auto = bf16 where native, else float32 (models.device.DEFAULT_DTYPE); float32; or "
                            "bfloat16 autocast (fp32 master weights)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 (ignored under accelerate launch)")
    max_length: int = Field(1024, ge=8, description="window per sequence; contexts are cut from the left")
    length_grouped: bool = Field(True, description="batch groups of similar length together (less padding)")
    pack: bool = Field(True, description="pack a batch's short tree rows into shared rows (each its own attention "
                       "block: the same result per token, less padding)")
    gradient_checkpointing: bool = Field(False, description="recompute activations: less memory, ~30% slower")
    lora: bool = Field(False, description="train LoRA adapters (peft) and the head instead of all weights")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    checkpoint_every: int = Field(100, ge=1, description="save a resumable checkpoint every N steps")
    keep_checkpoints: int = Field(2, ge=1)
    final_checkpoint: bool = Field(True, description="also checkpoint the last step (a kill during evaluation "
                                   "then resumes without retraining)")
    eval_batch_size: int = Field(32, ge=1, description="responses per forward pass at evaluation")
    max_train: int | None = Field(None, ge=1, description="use only the first N training groups")
    max_eval: int | None = Field(None, ge=1, description="use only the first N evaluation groups")
    seed: int = 0
    log_every: int = Field(10, ge=1)
    progress: bool = True
    record_run: bool = Field(True, description="record the run in the results store")

    @field_validator("objective", mode="before")
    @classmethod
    def _alias(cls, v: str) -> str:
        name = canonical_name(str(v))
        if name not in objective_names():
            raise ValueError(f"unknown objective {v!r}: choose one of {', '.join(objective_names())}")
        return name

    @field_validator("train", mode="before")
    @classmethod
    def _files(cls, v):
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v

    _weights = field_validator("train_weights", mode="before")(lambda cls, v: comma_floats(v))

    @model_validator(mode="after")
    def _sources_agree(self) -> TrainConfig:
        files = self.train_files
        if not files:
            raise ValueError("train: no training file given")
        if self.train_weights is not None:
            if self.source != "stream":
                raise ValueError("train_weights mix files only with source: stream")
            if len(self.train_weights) != len(files):
                raise ValueError(f"train_weights has {len(self.train_weights)} weights for {len(files)} "
                                 f"training files ({', '.join(files)})")
            if any(w < 0 for w in self.train_weights) or sum(self.train_weights) <= 0:
                raise ValueError(f"train_weights must be >= 0 with a positive sum, not {self.train_weights}")
        if self.source == "stream" and self.max_steps is None:
            raise ValueError("source stream has no epochs: set max_steps")
        return self

    @property
    def train_files(self) -> list[str]:
        return [f.strip() for f in self.train.split(",") if f.strip()]

    @property
    def scoring(self) -> str:
        return "head" if get_objective(self.objective).needs_head else "mean_logprob"

    #: fields added after checkpoints were first written: a checkpoint without them was
    #: written with their defaults
    LATER_KEYS: ClassVar[tuple[str, ...]] = ("pm_weight", "source", "train_weights", "shuffle_buffer", "init", "pack")

    def training_key(self) -> dict:
        """The fields a checkpoint must agree with to be resumed (not the run length or logging)."""
        return self.model_dump(include={"model", "objective", "train", "batch_size", "lr", "weight_decay",
                                        "schedule", "warmup_steps", "lm_weight", "max_length", "lora", "lora_r",
                                        "lora_alpha", "seed", "max_train", "length_grouped", "epochs",
                                        *self.LATER_KEYS})

    def key_differences(self, saved: dict) -> dict:
        """``{field: (saved, now)}`` for the training-key fields a checkpoint's ``saved`` key
        disagrees with (a field it predates counts as its default)."""
        fields = type(self).model_fields
        out = {}
        for k, v in self.training_key().items():
            old = saved.get(k, fields[k].default) if k in self.LATER_KEYS else saved.get(k)
            if old != v:
                out[k] = (old, v)
        return out


def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice (plain YAML silently keeps the last one)."""

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def load_config(yaml_path: str | Path | None = None, **overrides) -> TrainConfig:
    """YAML values, then ``overrides`` (None = not given), validated; errors name the key and file."""
    import yaml

    _UniqueKeyLoader = _unique_key_loader()
    values: dict = {}
    where = "command line"
    if yaml_path:
        where = str(yaml_path)
        try:
            loaded = yaml.load(Path(yaml_path).read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        except OSError as exc:
            raise DataError(f"cannot read config {yaml_path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{yaml_path}: not UTF-8 text (byte {exc.start})") from None
        except yaml.YAMLError as exc:
            raise DataError(f"{yaml_path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise DataError(f"{yaml_path}: expected a mapping of option: value, got {type(loaded).__name__}")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
        where = f"{yaml_path} or the command line"
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        raise DataError(f"invalid training config ({where}): {describe_validation_error(exc, 'config')}") from None
