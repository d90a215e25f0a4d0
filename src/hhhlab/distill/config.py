"""`DistillConfig`: the single source of `hhhlab distill`'s flags, YAML keys and defaults."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DistillConfig(BaseModel):
    """One context-distillation run: teacher cache, student training, held-out KL."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    model: str = Field("smollm2-135m", description="the student's model spec (its starting weights)")
    teacher: str | None = Field(None, description="teacher model spec (default: the student's model, prompted)")
    prompt: str = Field("hhh", description="hhh (the built-in HHH prompt) or a prompt file")
    corpus: str = Field("mix", description="mix (the paper's 50/50 general text + StackExchange, needs --data-dir), "
                        "or a .jsonl {\"text\"} / .txt file")
    data_dir: str | None = Field(None, description="folder with wikitext/ and stackexchange/ (laid out like shared/data)")
    tokens: int = Field(..., ge=1, description="distillation tokens: the corpus is cut into ceil(tokens / "
                        "context_length) windows, all cached by the teacher")
    output: str = Field(..., description="output directory: the distilled model (an ordinary HF checkpoint), "
                        "checkpoints/, results.json")
    objective: Literal["distill", "prompt-finetune"] = Field(
        "distill", description="distill (KL to the prompted teacher) or prompt-finetune (LM on the prompt text)")
    context_length: int = Field(256, ge=2, description="text tokens per window after the prompt (the paper: ~1,500)")
    top_k: int = Field(50, ge=1, description="teacher log-probs stored per token (the paper: 50; the vocabulary "
                       "size stores the full distribution)")
    cache: str | None = Field(None, description="teacher cache directory (default: OUTPUT/teacher-cache); reused "
                              "by any run with the same teacher, prompt, corpus, k and tokenizer")
    cache_dtype: Literal["float32", "float16"] = Field("float32", description="storage of the cached log-probs")
    shard_windows: int = Field(64, ge=1, description="windows per cache shard (the unit of resumption)")
    teacher_batch_size: int = Field(8, ge=1, description="windows per teacher forward pass")
    epochs: float = Field(1.0, gt=0, description="passes over the cached windows")
    batch_size: int = Field(8, ge=1, description="windows per optimizer step")
    grad_accum: int = Field(1, ge=1, description="micro-batches per step and process")
    lr: float = Field(2e-5, gt=0, description="peak learning rate (AdamW)")
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="after warm-up")
    student_sees_human: bool = Field(True, description="the student's windows start after 'Human:' as the teacher's "
                                     "do (False: after the BOS token)")
    heldout_tokens: int = Field(0, ge=0, description="held-out corpus tokens for KL(teacher ‖ plain) vs "
                                "KL(teacher ‖ student) after training (0: skip)")
    lora: bool = Field(False, description="train LoRA adapters (every linear layer) instead of all weights; "
                       "OUTPUT holds the merged, ordinary weights")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA scale numerator (the update is scaled by alpha / r)")
    checkpoint_every: int = Field(50, ge=1, description="save a resumable checkpoint every N steps")
    dtype: Literal["float32", "bfloat16", "auto"] = Field("float32", description="training precision")
    device: str = Field("auto", description="auto, cpu, cuda")
    seed: int = 0
    progress: bool = True


class CompareConfig(BaseModel):
    """``hhhlab distill compare``: plain vs prompted vs distilled on the same seeded eval items."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)

    model: str = Field("smollm2-135m", description="model spec(s), comma-separated; ladder rungs as "
                       "smollm2-135m,@L4,@L8 (each compared with its own distilled student)")
    distilled: str = Field(..., description="the distilled checkpoint: a directory, or a template with {model} "
                           "(e.g. ckpts/{model}-student; required when several models are compared)")
    evals: str = Field("hhh_alignment,truthfulqa_mc1,lambada", description="evals, comma-separated")
    limit: int | None = Field(None, ge=1, description="a seeded random subset of this many items per eval, "
                              "the same items under every condition (default: all)")
    data_dir: str | None = Field(None, description="eval data laid out like shared/data (default: hub / cache)")
    prompt: str = Field("hhh", description="hhh (the built-in HHH prompt, the one `hhhlab distill` uses) or a "
                        "prompt file")
    output: str = Field(..., description="the results document (JSON, kind distill_compare)")
    batch_size: int = Field(16, ge=1, description="eval requests per engine batch")
    n_boot: int = Field(2000, ge=10, description="paired bootstrap resamples for the fraction of gain kept")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="eval precision (auto: bfloat16 where the device computes it natively, else float32)")
    device: str = Field("auto", description="auto, cpu, cuda")
    resume: bool = Field(False, description="continue the latest compare run with the same settings, skipping "
                         "the items it finished")
    seed: int = 0
    progress: bool = True
