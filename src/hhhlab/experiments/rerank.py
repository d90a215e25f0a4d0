"""``hhhlab sweep rerank``: re-ranking samples with a preference model or an imitation model
(paper §3, App. B.6; Figs 11-13), on Lambada.

Per model of a ladder, the paper's protocol:

1. **Passages.** Lambada passages (`evals.lambada.load_passages`, the eval's own loader: context
   without its last word, target word stripped) are split by context hash, 80% for training and
   20% held out; ``train_prompts`` and ``eval_prompts`` are drawn from each.
2. **Training data** (digest §4.2: "sample answers at T=1 ... make up to 2 (correct, incorrect)
   pairs per prompt; IL trains on the correct answers"). The model samples ``train_samples``
   completions per training passage at ``temperature``; a completion's answer is its first word,
   punctuation stripped (`train.evaluate.lambada_answer`, the rule `lambada_is_correct` applies).
   A passage gives one binary group: the target word, correct, against up to 2 distinct wrong
   answers (scores 1, 0, 0: two pairs). The correct response is the target word itself, which
   is exactly the text a correct sample's answer has; a passage with no correct sample still
   gives its pairs (a small model rarely samples the right word). Passages where every sample
   is right give no pair and are counted. Samples come from each model itself (the paper pools
   samples of several sizes).
3. **PM and IL** are the §3 sweep's two cells for that model on those groups
   (`experiments.sweep.run_sweep`: the same trainer, settings and resume; its held-out pairwise
   accuracy is kept too).
4. **Re-ranking.** The base model samples ``samples`` (N) completions per held-out passage at
   ``temperature``; each answer (``" " + word``, the training responses' form) is scored by the PM
   head and by the IL model's mean token log-prob. For each k in 1, 2, 4, ..., N (and the paper's 96 when N > 96):
   acc@k of the PM ranking and of the IL ranking (``rerank_accuracy``: the unbiased estimator
   ``Σ_i acc(s_i)·C(N−i, k−1)/C(N, k)``), the oracle (pass@k) and no ranking (mean
   correctness); a passage with no correct sample scores 0. Plus greedy (T=0) accuracy of the IL
   model (Fig 13's "IL Sampled at T=0") and of the base model. Every number is an estimate with
   a bootstrap 95% CI over passages.

Each model's result is an item of one store run (per output directory and settings), so a
rerun skips finished models; the samples and training groups of an unfinished model are cached
in its folder and its PM/IL cells resume as sweep cells do. The document is
``OUTPUT/results.json`` of kind ``sweep_rerank``.

Not done: the paper's other re-ranking task, code correctness (Figs 11-12 are on code: functions
from GitHub with their tests, sampled and run). Lambada alone is measured here; the report draws
Fig 11's layout and Fig 13 from it.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hhhlab.errors import DataError, HHHLabError
from hhhlab.models.device import DEFAULT_DTYPE
from hhhlab.models.load import expand_model_list
from hhhlab.results import estimate_dict, make_results
from hhhlab.store import ResultsStore, atomic_write_json, read_json

TASK = "lambada"
SERIES = {"pm": "PM Scores", "il": "IL Mean Log-Probs", "oracle": "Oracle", "average": "Average (No Ranking)",
          "il_greedy": "IL Sampled at T=0", "lm_greedy": "LM Sampled at T=0"}
STOP = ("\n",)


class RerankConfig(BaseModel):
    """Everything that defines a re-ranking sweep (flags, YAML keys and defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    models: str = Field("smollm2-135m@L2,@L4", description="ladder, comma-separated")
    output: str = Field(..., description="sweep directory: samples, PM/IL cells, results.json")
    data_dir: str | None = Field(None, description="folder with lambada/lambada_openai.jsonl (laid out like "
                                                   "shared/data); default: the hub (EleutherAI/lambada_openai)")
    train_prompts: int = Field(400, ge=2, description="training passages (the sweep holds 1/5 of their groups out)")
    train_samples: int = Field(8, ge=1, description="samples per training passage (up to 2 wrong answers kept)")
    eval_prompts: int = Field(100, ge=1, description="held-out passages re-ranked")
    samples: int = Field(32, ge=1, description="N, samples per re-ranked passage (the paper: 100)")
    max_new_tokens: int = Field(5, ge=1, description="tokens per sample (only its first word is the answer)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (the paper: 1)")
    epochs: float = Field(1.0, gt=0, description="passes over the training groups (without max_steps)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps per PM/IL cell (default: epochs)")
    checkpoint_every: int = Field(100, ge=1, description="training checkpoint every N steps")
    batch_size: int = Field(8, ge=1, description="groups per optimizer step")
    lr: float = Field(1e-5, gt=0, description="peak learning rate (AdamW)")
    max_length: int = Field(512, ge=8, description="window per training sequence")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        DEFAULT_DTYPE, description="auto (bf16 where the hardware has native bf16, else float32), float32, bfloat16")
    score_batch_size: int = Field(32, ge=1, description="responses per scoring forward pass")
    seed: int = Field(0, description="passage draw, sampling and training seed")
    progress: bool = Field(True, description="show progress bars")

    def model_list(self) -> list[str]:
        return list(dict.fromkeys(expand_model_list(self.models)))

    def ks(self) -> list[int]:
        """1, 2, 4, ... below N, the paper's k (2, 8, 32, 96) below N, then N."""
        from hhhlab.train.evaluate import RERANK_KS

        powers = {2**i for i in range(self.samples.bit_length()) if 2**i < self.samples}
        return sorted(powers | {k for k in RERANK_KS if k < self.samples} | {self.samples})


NOT_RESULT_FIELDS = {"progress", "checkpoint_every", "score_batch_size"}


def settings_digest(cfg: RerankConfig) -> str:
    """Names the store run and the per-model folders: other settings never reuse old samples."""
    settings = json.dumps(cfg.model_dump(exclude=NOT_RESULT_FIELDS), sort_keys=True)
    return hashlib.sha1(settings.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Passage:
    id: str
    context: str
    word: str


def split_passages(items: list, cfg: RerankConfig) -> tuple[list[Passage], list[Passage]]:
    """Training and held-out passages, disjoint by context hash; the held-out draw does not
    depend on the seed (every setting re-ranks the same passages)."""
    from hhhlab.data.schema import normalize_text
    from hhhlab.data.splits import assign_split

    train: list[Passage] = []
    test: list[Passage] = []
    for it in items:
        p = Passage(it.id, it.data["context"], it.data["word"])
        (train if assign_split(normalize_text(p.context), (0.8, 0.0, 0.2), seed=0) == "train" else test).append(p)
    random.Random(cfg.seed).shuffle(train)
    random.Random(1234).shuffle(test)
    train, test = train[: cfg.train_prompts], test[: cfg.eval_prompts]
    if len(train) < 2 or not test:
        raise DataError(f"Lambada: {len(items)} passages give {len(train)} training and {len(test)} held-out "
                        "passages; need at least 2 and 1")
    return train, test


def training_groups(passages: list[Passage], samples: list[list[str]]) -> tuple[list, dict[str, int]]:
    """One binary group per passage: the target word (1) against up to 2 distinct wrong sampled
    answers (0, 0), i.e. up to 2 (correct, incorrect) pairs; and counts of what was sampled."""
    from hhhlab.data.schema import PreferenceGroup
    from hhhlab.train.evaluate import lambada_answer

    groups, counts = [], {"passages": len(passages), "samples": 0, "correct_samples": 0, "no_wrong_answer": 0}
    for p, comps in zip(passages, samples):
        answers = [lambada_answer(c) for c in comps]
        counts["samples"] += len(answers)
        counts["correct_samples"] += sum(a == p.word for a in answers)
        wrong = list(dict.fromkeys(a for a in answers if a and a != p.word))[:2]
        if not wrong:
            counts["no_wrong_answer"] += 1
            continue
        groups.append(PreferenceGroup(
            id=f"lambada-samples:{p.id}", context=p.context, responses=[" " + p.word, *(" " + a for a in wrong)],
            scores=[1.0] + [0.0] * len(wrong), kind="binary", source="lambada-samples",
            metadata={"split_key": p.context, "passage": p.id, "sampled_correct": sum(a == p.word for a in answers)}))
    return groups, counts


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", model)


def _cached_samples(path: Path, engine, cfg: RerankConfig, passages: list[Passage], n: int) -> list[list[str]]:
    """``n`` samples per passage at ``cfg.temperature``, read back from ``path`` when it holds the
    same passages, else sampled and saved (a killed run does not sample again)."""
    ids = [p.id for p in passages]
    if path.exists():
        data = read_json(path)
        cached = data.get("samples") if isinstance(data, dict) and data.get("passages") == ids else None
        if isinstance(cached, list) and len(cached) == len(ids) and all(len(s) == n for s in cached):
            return cached
    samples = _sample(engine, cfg, passages, n, cfg.temperature)
    atomic_write_json(path, {"passages": ids, "samples": samples})
    return samples


def _sample(engine, cfg: RerankConfig, passages: list[Passage], n: int, temperature: float) -> list[list[str]]:
    """``n`` completions per passage (``temperature`` 0: greedy), cut at a newline."""
    from hhhlab.models.engine import GenerationConfig

    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=temperature, num_samples=n, stop=STOP,
                           seed=cfg.seed)
    return engine.generate([p.context for p in passages], gen)


def run_model(cfg: RerankConfig, model: str, train: list[Passage], test: list[Passage], *,
              store: ResultsStore) -> dict:
    """Sample, train PM and IL, score and re-rank for one model: its results record."""
    from hhhlab.data.schema import write_jsonl
    from hhhlab.experiments.sweep import Cell, SweepConfig, cell_dir, run_sweep
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model
    from hhhlab.stats import bootstrap
    from hhhlab.train.evaluate import lambada_answer, lambada_is_correct, rerank_accuracy
    from hhhlab.train.preference_model import PreferenceModel

    work = Path(cfg.output) / "models" / settings_digest(cfg) / _slug(model)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    lm = load_model(model, dtype=cfg.dtype)
    params = lm.non_embedding_params
    engine = Engine(lm, progress=cfg.progress)
    train_samples = _cached_samples(work / "train_samples.json", engine, cfg, train, cfg.train_samples)
    groups, counts = training_groups(train, train_samples)
    if len(groups) < 2:
        raise HHHLabError(f"{model}: only {len(groups)} Lambada training groups from {len(train)} passages "
                          "(every sample was right?); raise --train-prompts")
    groups_path = work / "groups.jsonl"
    if not groups_path.exists():  # written once: the sweep's data cache is keyed by the file's mtime
        write_jsonl(groups, groups_path)
    samples = _cached_samples(work / "eval_samples.json", engine, cfg, test, cfg.samples)
    lm_greedy = [s[0] for s in _sample(engine, cfg, test, 1, 0.0)]
    eos = lm.tokenizer.eos_token or "."
    del engine, lm
    gc.collect()
    seconds["sample"] = time.perf_counter() - t

    t = time.perf_counter()
    scfg = SweepConfig(models=model, objectives="imitation,preference", datasets=f"{TASK}={groups_path}",
                       train_size=None, eval_size=None, output=str(work / "pm-il"), epochs=cfg.epochs,
                       max_steps=cfg.max_steps, checkpoint_every=cfg.checkpoint_every, batch_size=cfg.batch_size,
                       lr=cfg.lr, max_length=cfg.max_length, dtype=cfg.dtype, seed=cfg.seed, progress=cfg.progress)
    sweep = run_sweep(scfg, store=store)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    answers = [[lambada_answer(c) for c in comps] for comps in samples]
    correct = [[a == p.word for a in ans] for p, ans in zip(test, answers)]
    # the training responses' form; an answer-less sample is scored as end-of-text (and is wrong)
    scored = [(p.context, [" " + a if a else " " + eos for a in ans]) for p, ans in zip(test, answers)]
    pm = PreferenceModel.from_pretrained(cell_dir(scfg, Cell(model, "preference", TASK)) / "model", dtype=cfg.dtype)
    pm_scores = pm.score_groups(scored, batch_size=cfg.score_batch_size, progress=cfg.progress)
    del pm
    gc.collect()
    il_lm = load_model(str(cell_dir(scfg, Cell(model, "imitation", TASK)) / "model"), dtype=cfg.dtype)
    il = PreferenceModel(il_lm.model, il_lm.tokenizer, scoring="mean_logprob", name=model)
    il_scores = il.score_groups(scored, batch_size=cfg.score_batch_size, progress=cfg.progress)
    il_greedy = [s[0] for s in _sample(Engine(il_lm, progress=cfg.progress), cfg, test, 1, 0.0)]
    del il, il_lm
    gc.collect()
    seconds["score"] = time.perf_counter() - t

    ks = cfg.ks()
    pm_rank, il_rank = rerank_accuracy(pm_scores, correct, ks), rerank_accuracy(il_scores, correct, ks)
    acc_at_k = {str(k): {"pm": pm_rank[str(k)]["ranked"], "il": il_rank[str(k)]["ranked"],
                         "oracle": pm_rank[str(k)]["oracle"], "average": pm_rank[str(k)]["average"]} for k in ks}
    greedy = {
        "il_greedy": bootstrap([float(lambada_is_correct(g, p.word)) for g, p in zip(il_greedy, test)]).to_dict(),
        "lm_greedy": bootstrap([float(lambada_is_correct(g, p.word)) for g, p in zip(lm_greedy, test)]).to_dict(),
    }
    pair_accuracy = {c["objective"]: (c.get("estimates") or {}).get("accuracy") for c in sweep["cells"]}
    return {
        "model": model, "non_embedding_params": params, "n_eval_prompts": len(test), "n_samples": cfg.samples,
        "ks": ks, "acc_at_k": {k: {s: estimate_dict(e) for s, e in v.items()} for k, v in acc_at_k.items()},
        "greedy": {s: estimate_dict(e) for s, e in greedy.items()},
        "pair_accuracy": pair_accuracy,
        "train_groups": len(groups), "train_counts": counts,
        "eval_prompts_with_a_correct_sample": sum(any(c) for c in correct) / len(correct),
        "answers_example": {"passage": test[0].id, "target": test[0].word, "answers": answers[0][:8]},
        "seconds": seconds,
    }


def rerank_estimates(records: list[dict]) -> dict[str, dict]:
    """Flat keys: ``lambada/MODEL/SERIES@k`` and ``lambada/MODEL/il_greedy`` (and ``lm_greedy``)."""
    out: dict[str, dict] = {}
    for r in records:
        for k, per in r["acc_at_k"].items():
            for series, est in per.items():
                out[f"{TASK}/{r['model']}/{series}@{k}"] = est
        for series, est in r["greedy"].items():
            out[f"{TASK}/{r['model']}/{series}"] = est
    return out


def run_rerank(cfg: RerankConfig, *, store: ResultsStore | None = None,
               on_model: Callable[[str, dict, bool], None] | None = None) -> dict:
    """Run (or resume) every model; returns the results document written to ``OUTPUT/results.json``."""
    from hhhlab.evals.lambada import load_passages

    models = cfg.model_list()
    if not models:
        raise HHHLabError(f"--models {cfg.models!r} names no model")
    if cfg.samples < 2:
        raise HHHLabError("--samples must be at least 2 (re-ranking one sample is no ranking)")
    out = Path(cfg.output)
    store = store or ResultsStore()
    run_id = "rerank-" + re.sub(r"[^A-Za-z0-9]+", "-", str(out.resolve()))[-48:].strip("-") + "-" + settings_digest(cfg)
    run = store.create_run("sweep_rerank", cfg.model_dump(), name=out.name, run_id=run_id)
    done = run.items()
    todo = [m for m in models if m not in done]
    if todo:
        train, test = split_passages(load_passages(Path(cfg.data_dir).expanduser() if cfg.data_dir else None), cfg)
    for model in models:
        if model in done:
            if on_model:
                on_model(model, done[model], True)
            continue
        record = run_model(cfg, model, train, test, store=store)
        run.put_item(model, record)
        run.log(f"model {model}: re-ranked {record['n_eval_prompts']} passages x {record['n_samples']} samples")
        done[model] = record
        if on_model:
            on_model(model, record, False)
    records = [done[m] for m in models]
    payload: dict[str, Any] = {
        "task": TASK, "series": SERIES, "ks": cfg.ks(), "models": records,
        "notes": ["Lambada only: the paper's code-correctness re-ranking (Figs 11-12) is not run.",
                  ("Samples, training pairs and rankers are per model (the paper pools training samples of "
                   "several sizes).")],
    }
    doc = make_results("sweep_rerank", config=cfg.model_dump(), estimates=rerank_estimates(records),
                       payload=payload, models=models, run_id=run.run_id)
    atomic_write_json(out / "results.json", doc)
    run.finish(doc)
    return doc
