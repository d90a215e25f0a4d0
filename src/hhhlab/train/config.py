"""`TrainConfig`: the single source of `hhhlab pm train`'s flags, its YAML files and its defaults.

Every field is a CLI flag of the same name (``max_steps`` -> ``--max-steps``); a YAML file given
with ``--config`` supplies values, and flags given on the command line override it. Unknown
YAML keys and bad values are errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hhhlab.errors import DataError

OBJECTIVES = ("imitation", "preference", "classifier")
OBJECTIVE_ALIASES = {"ranked": "preference", "pm": "preference", "il": "imitation"}


class TrainConfig(BaseModel):
    """Hyper-parameters of one training run (IL, PM or classifier) and its evaluation."""

    # strict: `batch_size: true` is an error, not 1; no inf/NaN (`epochs: .inf` would never end)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    model: str = Field("smollm2-135m", description="model spec: smollm2-135m, hub id, path, tiny:llama, M@L<k>")
    objective: Literal["imitation", "preference", "classifier"] = Field(
        "preference", description="imitation | preference (alias: ranked) | classifier")
    train: str = Field(..., description="training preference groups (JSONL)")
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
    lm_weight: float = Field(0.0, ge=0, description="μ: LM loss on the good sequence added to the PM loss")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "float32", description="float32, or bfloat16 autocast (fp32 master weights); auto = bf16 where native")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 (ignored under accelerate launch)")
    max_length: int = Field(1024, ge=8, description="window per sequence; contexts are cut from the left")
    length_grouped: bool = Field(True, description="batch groups of similar length together (less padding)")
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
        return OBJECTIVE_ALIASES.get(str(v).lower(), str(v).lower())

    @property
    def scoring(self) -> str:
        return "mean_logprob" if self.objective == "imitation" else "head"

    def training_key(self) -> dict:
        """The fields a checkpoint must agree with to be resumed (not the run length or logging)."""
        return self.model_dump(include={"model", "objective", "train", "batch_size", "lr", "weight_decay",
                                        "schedule", "warmup_steps", "lm_weight", "max_length", "lora", "lora_r",
                                        "lora_alpha", "seed", "max_train", "length_grouped", "epochs"})


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
        reasons = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise DataError(f"invalid training config ({where}): {reasons}") from None
