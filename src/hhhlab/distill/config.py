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
    lora: bool = Field(False, description="train LoRA adapters instead of all weights (merged on save)")
    checkpoint_every: int = Field(50, ge=1, description="save a resumable checkpoint every N steps")
    dtype: Literal["float32", "bfloat16", "auto"] = Field("float32", description="training precision")
    device: str = Field("auto", description="auto, cpu, cuda")
    seed: int = 0
    progress: bool = True
