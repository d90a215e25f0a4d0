"""`hhhlab distill` end to end: check everything, cache the teacher, train the student, measure.

1. **Checks before any work** (`prepare`): the prompt parses; teacher and student share a
   tokenizer; prompt + "Human:" + a window fits the teacher's window; the corpus holds the
   tokens asked for; an existing teacher cache was built for exactly this run.
2. **Teacher** (`build_teacher_cache`): the prompted teacher's top-k for every window, the prompt
   encoded once (`Engine.topk_logprobs`), written shard by shard (resumable).
3. **Student** (`train_student`): the training loop (`hhhlab.train.trainer.train`) with the
   ``distillation`` objective over the cache (or ``prompt_finetune`` on the prompt's text),
   checkpointed and resumable; the result is saved at OUTPUT as an ordinary Hugging Face causal
   LM (``hhhlab eval --condition distilled:OUTPUT``).
4. **Held-out KL** (`heldout_kl`): KL(teacher ‖ plain model) and KL(teacher ‖ student) on
   held-out windows, per window, with bootstrap CIs.

A run killed at any point resumes with the same command: finished cache shards and training
checkpoints are kept, and a finished run returns its results without loading a model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hhhlab.distill.cache import CacheKey, TeacherCache, bytes_per_token, token_checksum
from hhhlab.distill.config import DistillConfig
from hhhlab.distill.corpus import PackedCorpus, build_corpus
from hhhlab.distill.teacher import (
    TURN,
    DistillError,
    Teacher,
    check_same_tokenizer,
    check_window,
    encode_text,
    teacher_prefix_text,
)
from hhhlab.prompts import Prompt, load_prompt


@dataclass
class Plan:
    """Everything a run needs, checked."""

    cfg: DistillConfig
    prompt: Prompt
    teacher_spec: str
    teacher_prefix: list[int]  # prompt + separator + "Human:"
    student_prefix: list[int]  # "Human:" (or BOS)
    tokenizer_checksum: str
    vocab_size: int
    corpus: PackedCorpus | None  # None for prompt-finetune
    key: CacheKey | None
    cache_dir: Path
    teacher_lm: object  # LoadedModel, kept for the teacher pass (dropped before the student trains)
    tokenizer: object  # the shared tokenizer


def _encoder(tokenizer):
    return lambda texts: tokenizer(list(texts), add_special_tokens=False)["input_ids"]


def _vocab_size(lm) -> int:
    return int(lm.model.get_output_embeddings().weight.shape[0])


def prepare(cfg: DistillConfig, *, load_teacher: bool = True) -> Plan:
    """All checks of the "Bad input" list, before any model runs on data."""
    from hhhlab.models.load import load_model

    prompt = load_prompt(None if cfg.prompt == "hhh" else cfg.prompt)
    teacher_spec = cfg.teacher or cfg.model
    teacher = load_model(teacher_spec, dtype="float32", device=cfg.device)
    student_tok = teacher.tokenizer if teacher_spec == cfg.model else load_model(cfg.model, dtype="float32").tokenizer
    checksum = check_same_tokenizer(teacher.tokenizer, student_tok, teacher_spec, cfg.model)
    teacher_prefix = encode_text(teacher.tokenizer, teacher_prefix_text(prompt))
    from hhhlab.models.tokenize import prefix_token_id

    student_prefix = encode_text(student_tok, TURN) if cfg.student_sees_human else [prefix_token_id(student_tok)]
    vocab = _vocab_size(teacher)
    if cfg.top_k > vocab:
        raise DistillError(f"--top-k {cfg.top_k} exceeds the vocabulary of {vocab}")
    cache_dir = Path(cfg.cache) if cfg.cache else Path(cfg.output) / "teacher-cache"
    corpus = key = None
    if cfg.objective == "distill":
        check_window(len(teacher_prefix), cfg.context_length, teacher.max_length, teacher_spec)
        n_windows = math.ceil(cfg.tokens / cfg.context_length)
        corpus = build_corpus(cfg.corpus, _encoder(teacher.tokenizer), context_length=cfg.context_length,
                              n_windows=n_windows, data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
                              seed=cfg.seed)
        key = CacheKey(teacher=teacher_spec, prompt_version=prompt.version,
                       prefix_checksum=token_checksum(teacher_prefix), corpus_checksum=corpus.checksum,
                       n_windows=n_windows, context_length=cfg.context_length, k=cfg.top_k,
                       dtype=cfg.cache_dtype, tokenizer_checksum=checksum, vocab_size=vocab)
        TeacherCache.open(cache_dir, key, shard_size=cfg.shard_windows, corpus=corpus.description)  # checks
    return Plan(cfg=cfg, prompt=prompt, teacher_spec=teacher_spec, teacher_prefix=teacher_prefix,
                student_prefix=student_prefix, tokenizer_checksum=checksum, vocab_size=vocab, corpus=corpus,
                key=key, cache_dir=cache_dir, teacher_lm=teacher if load_teacher else None,
                tokenizer=teacher.tokenizer)


def build_teacher_cache(plan: Plan, root: Path, corpus: PackedCorpus, key: CacheKey, *, desc: str) -> dict:
    """The teacher pass over ``corpus`` into the cache at ``root`` (only missing shards run)."""
    from tqdm.auto import tqdm

    from hhhlab.models.engine import Engine

    cache = TeacherCache.open(root, key, shard_size=plan.cfg.shard_windows, corpus=corpus.description)
    todo = len(cache.missing_shards())
    t0 = time.perf_counter()
    if todo:
        engine = Engine(plan.teacher_lm, batch_size=plan.cfg.teacher_batch_size)  # type: ignore[arg-type]
        teacher = Teacher(engine, plan.teacher_prefix, key.k)
        with tqdm(total=cache.manifest.n_shards, initial=cache.manifest.n_shards - todo, desc=desc,
                  disable=not plan.cfg.progress) as bar:
            cache.build(corpus.windows, teacher, on_shard=lambda d, t: bar.update(1))
    seconds = time.perf_counter() - t0
    tokens_run = todo * plan.cfg.shard_windows * key.context_length
    return {"dir": str(root), "windows": key.n_windows, "tokens": key.n_windows * key.context_length,
            "shards_computed": todo, "seconds": seconds,
            "tokens_per_s": tokens_run / seconds if todo and seconds > 0 else None,
            "bytes_per_token": bytes_per_token(key.k, key.dtype), "disk_bytes": cache.disk_bytes(),
            "prefix_tokens": len(plan.teacher_prefix)}


def _train_config(plan: Plan, steps: int, train_ref: str):
    from hhhlab.train.config import TrainConfig

    c = plan.cfg
    return TrainConfig(
        model=c.model, objective="distillation" if c.objective == "distill" else "prompt_finetune",
        train=train_ref, output=c.output, max_steps=steps, batch_size=c.batch_size, grad_accum=c.grad_accum,
        lr=c.lr, schedule=c.schedule, warmup_steps=c.warmup_steps, dtype=c.dtype, device=c.device,
        max_length=c.context_length + len(plan.student_prefix) + 1, length_grouped=False, lora=c.lora,
        lora_r=c.lora_r, lora_alpha=c.lora_alpha, checkpoint_every=c.checkpoint_every, seed=c.seed,
        progress=c.progress, record_run=False, log_every=1)


def train_student(plan: Plan):
    """The loop over the cache (distill) or over the prompt's text (prompt-finetune)."""
    import hhhlab.train.objectives.distill as objectives
    from hhhlab.train.trainer import train

    c = plan.cfg
    if c.objective == "distill":
        assert plan.key is not None
        cache = TeacherCache.open(plan.cache_dir, plan.key)
        source: objectives._WindowSource = objectives.CacheSource(cache, plan.student_prefix, c.batch_size, c.seed)
        train_ref = str(plan.cache_dir / "manifest.json")
    else:
        from hhhlab.models.tokenize import prefix_token_id

        tok = plan.tokenizer
        ids = encode_text(tok, plan.prompt.text)
        source = objectives.TokenWindowSource(ids, c.context_length, [prefix_token_id(tok)], c.batch_size, c.seed)
        cache = None
        train_ref = f"prompt:{plan.prompt.version}"
    steps = max(1, math.ceil(c.epochs * source.steps_per_epoch))
    if c.objective == "prompt-finetune":  # as many optimizer steps as distillation on --tokens would take
        steps = max(1, math.ceil(c.epochs * math.ceil(c.tokens / c.context_length) / c.batch_size))
    tcfg = _train_config(plan, steps, train_ref)
    cls = objectives.Distillation if c.objective == "distill" else objectives.PromptFinetune
    objective = cls(tcfg, cache=cache) if cls is objectives.Distillation else cls(tcfg)
    objective.validate()
    return train(tcfg, objective=objective, source=source)


@torch.inference_mode()
def heldout_kl(model, cache: TeacherCache, context: list[int], tcfg, *, batch_size: int = 8) -> np.ndarray:
    """Mean KL_{k+1}(teacher ‖ model) per held-out window, ``[n_windows]``; ``model`` is a
    `PreferenceModel` without a head (the plain model or the student); ``tcfg`` the training
    run's `TrainConfig` (its batching settings collate the windows as training did)."""
    from hhhlab.train.losses import topk_kl
    from hhhlab.train.objectives.distill import CacheSource, Distillation

    source = CacheSource(cache, context, batch_size=len(cache))
    items = source.global_batch(0)
    items.sort(key=lambda g: g.metadata["window"])
    obj = Distillation(tcfg, cache=cache)
    out = []
    was_training = model.training
    model.eval()
    for start in range(0, len(items), batch_size):
        micro = items[start : start + batch_size]
        batch = obj.collate(micro, model).to(model.device)
        _, logits = model(batch, head=False, lm=True, logits=True)
        assert batch.teacher_logprobs is not None and batch.teacher_ids is not None
        kl = topk_kl(logits, batch.teacher_logprobs, batch.teacher_ids)  # [N]
        owner = batch.lm_owner
        for r in range(len(micro)):
            out.append(float(kl[owner == r].mean()))
    model.train(was_training)
    return np.asarray(out)


def run_distill(cfg: DistillConfig) -> dict:
    """The whole run (see the module docstring); returns the results document's dict."""
    from accelerate import PartialState

    from hhhlab.results import read_results, write_results
    from hhhlab.stats import bootstrap, paired_difference
    from hhhlab.store import read_json

    out = Path(cfg.output)
    results_path = out / "results.json"
    if results_path.exists():
        done = read_results(results_path, kind="distill")
        if done.config == cfg.model_dump():
            return read_json(results_path)
    t_start = time.perf_counter()
    state = PartialState()
    plan = prepare(cfg, load_teacher=True)
    heldout = heldout_key = None
    if cfg.objective == "distill" and cfg.heldout_tokens:
        heldout = build_corpus(cfg.corpus, _encoder(plan.tokenizer), context_length=cfg.context_length,
                               n_windows=math.ceil(cfg.heldout_tokens / cfg.context_length),
                               data_dir=Path(cfg.data_dir) if cfg.data_dir else None, split="heldout", seed=cfg.seed)
        assert plan.key is not None
        heldout_key = CacheKey(**{**plan.key.__dict__, "corpus_checksum": heldout.checksum,
                                  "n_windows": len(heldout.windows)})
        TeacherCache.open(str(plan.cache_dir) + "-heldout", heldout_key, shard_size=cfg.shard_windows)
    payload: dict = {"prompt_version": plan.prompt.version, "teacher": plan.teacher_spec, "student": cfg.model,
                     "teacher_prefix_tokens": len(plan.teacher_prefix), "student_prefix_tokens": len(plan.student_prefix)}
    if cfg.objective == "distill":
        assert plan.corpus is not None and plan.key is not None
        payload["corpus"] = {"description": plan.corpus.description, "checksum": plan.corpus.checksum,
                             "tokens_by_source": plan.corpus.tokens_by_source, "windows": len(plan.corpus.windows)}
        if state.is_main_process:
            payload["teacher_cache"] = build_teacher_cache(plan, plan.cache_dir, plan.corpus, plan.key,
                                                           desc="teacher")
            if heldout is not None and heldout_key is not None:
                payload["heldout_cache"] = build_teacher_cache(plan, Path(str(plan.cache_dir) + "-heldout"),
                                                               heldout, heldout_key, desc="teacher (held-out)")
        state.wait_for_everyone()
    plan.teacher_lm = None  # free the teacher before the student trains
    pm, summary = train_student(plan)
    estimates = {}
    if state.is_main_process:
        pm.save_pretrained(out)  # an ordinary HF causal-LM directory (plus pm_config.json)
        payload["training"] = {k: summary[k] for k in ("step", "tokens_seen", "units_seen", "train_seconds",
                                                       "units_per_s", "history", "world_size") if k in summary}
        if heldout_key is not None:
            from hhhlab.train.preference_model import PreferenceModel

            hcache = TeacherCache.open(str(plan.cache_dir) + "-heldout", heldout_key)
            tcfg = _train_config(plan, summary["step"], str(plan.cache_dir / "manifest.json"))
            student_kl = heldout_kl(pm, hcache, plan.student_prefix, tcfg)
            plain = PreferenceModel.from_lm(cfg.model, scoring="mean_logprob", device=str(pm.device),
                                            dtype="float32", max_length=pm.max_length)
            plain_kl = heldout_kl(plain, hcache, plan.student_prefix, tcfg)
            estimates["heldout_kl_plain"] = bootstrap(plain_kl, seed=cfg.seed)
            estimates["heldout_kl_student"] = bootstrap(student_kl, seed=cfg.seed)
            estimates["heldout_kl_reduction"] = paired_difference(plain_kl.tolist(), student_kl.tolist(), seed=cfg.seed)
            estimates["heldout_kl_closed"] = bootstrap(
                np.stack([plain_kl, student_kl], 1), lambda x: 1 - x[:, 1].mean() / x[:, 0].mean(), seed=cfg.seed)
            payload["heldout_kl_per_window"] = {"plain": plain_kl.tolist(), "student": student_kl.tolist()}
        payload["wall_seconds"] = time.perf_counter() - t_start
        write_results(results_path, "distill", config=cfg.model_dump(), estimates=estimates, payload=payload,
                      models=[plan.teacher_spec, cfg.model])
    state.wait_for_everyone()
    return read_json(results_path)
