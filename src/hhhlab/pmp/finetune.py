"""``hhhlab pm finetune``: fine-tuning curves from a PMP checkpoint or from the plain LM.

Protocol (digest §5.5-5.6):
* the training groups are shuffled once (seed ``seed``) and each group gives one pair
  (`pairs(group, "sample", seed)`: for HellaSwag the gold ending vs one random distractor);
  size n trains on the *first n* pairs of that one order, so a larger n contains every smaller
  one and curves differ only by the extra data;
* n = 0 is zero-shot transfer: the ``--init`` model evaluated as it is (a PMP head; for the
  plain LM a fresh, untrained head, i.e. chance);
* epochs: 4 for ETHICS targets (groups whose ``source`` is ``ethics``), else 1 (summaries,
  HellaSwag); learning rate 0.01x ``base_lr``; batch 32 pairs (n if smaller); (λ, μ) = (1, 1);
* every n is evaluated on the whole held-out file: pairwise accuracy and PM loss
  ``log(1 + exp(-margin))``, each with a bootstrap CI over pairs, plus group accuracy where the
  data has groups (ETHICS). Per-pair outcomes are kept so that conditions can be compared paired.

Each n is its own resumable training run under ``OUTPUT/n{n}`` (`train_and_evaluate`); its
evaluation is cached in ``OUTPUT/n{n}/eval.json``. Bad input fails before any training: a size
larger than the data, an ``--init`` of another tokenizer or architecture than the target's model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np

from hhhlab.data.schema import PreferenceGroup, pairs, read_jsonl, stable_hash, write_jsonl
from hhhlab.errors import DataError
from hhhlab.pmp.config import DEFAULT_EPOCHS, ETHICS_EPOCHS, FinetuneConfig
from hhhlab.stats import bootstrap
from hhhlab.store import atomic_write_json, read_json


def finetune_order(groups: list[PreferenceGroup], seed: int) -> list[PreferenceGroup]:
    """The one fixed shuffle, one sampled pair per group (as a two-response group)."""
    order = sorted(groups, key=lambda g: stable_hash("pmp-finetune-order", seed, g.id))
    out = []
    for g in order:
        (p,) = pairs(g, "sample", seed)
        out.append(PreferenceGroup(id=f"{g.id}:ft", context=p.context, responses=[p.chosen, p.rejected],
                                   scores=[1.0, 0.0], kind=g.kind, source=g.source, metadata=g.metadata))
    return out


def default_epochs(groups: list[PreferenceGroup]) -> float:
    return float(ETHICS_EPOCHS if groups and all(g.source == "ethics" for g in groups[:50]) else DEFAULT_EPOCHS)


def resolve_base(cfg: FinetuneConfig) -> tuple[str | None, str]:
    """``(init directory or None, base model spec)``: a directory is a PMP run, else a model spec."""
    p = Path(cfg.init)
    if not p.exists():
        return None, cfg.init
    from hhhlab.train.warm_start import resolve_init

    d = resolve_init(p)
    base = cfg.model
    if base is None:
        saved = {}
        for cand in (d / "pm_config.json", d.parent / "results.json", d.parent / "metrics.json"):
            if cand.exists():
                saved = read_json(cand)
                break
        base = saved.get("base_model") or saved.get("model") or (saved.get("config") or {}).get("model")
        if not base:
            raise DataError(f"--init {cfg.init}: cannot tell its base model; pass --model")
    return str(d), str(base)


def evaluate_pairs(pm, path: str, *, batch_size: int, limit: int | None, progress: bool = False) -> dict:
    """Accuracy and PM loss (bootstrap CIs) and per-pair outcomes of ``pm`` on ``path``."""
    from hhhlab.train.data import DataStats, encode_groups, read_groups

    stats = DataStats()
    groups = encode_groups(read_groups(path, limit=limit, stats=stats), pm.tokenizer, max_length=pm.max_length,
                           stats=stats)
    return evaluate_encoded(pm, groups, batch_size=batch_size, progress=progress)


def evaluate_encoded(pm, groups: list, *, batch_size: int, progress: bool = False) -> dict:
    """`evaluate_pairs` on already tokenised groups (a sweep that evaluates many models on one
    held-out set tokenises it once)."""
    from hhhlab.train.evaluate import evaluation_metrics, pair_outcomes
    from hhhlab.train.trainer import score_sharded

    scores = score_sharded(pm, groups, batch_size=batch_size, progress=progress)
    metrics = evaluation_metrics(groups, scores, with_calibration=True)
    margins = np.array([m for _, _, m in pair_outcomes(groups, scores)])
    loss = bootstrap(np.logaddexp(0.0, -margins))
    acc = bootstrap(metrics["pair_correct"])
    out = {"accuracy": acc.to_dict() | {"method": "bootstrap"}, "pm_loss": loss.to_dict() | {"method": "bootstrap"},
           "pair_correct": metrics["pair_correct"], "ece": metrics.get("ece"), "n_eval": acc.n}
    if "group_accuracy" in metrics:
        out["group_accuracy"] = {"value": metrics["group_accuracy"], "lo": metrics["group_accuracy_ci"][0],
                                 "hi": metrics["group_accuracy_ci"][1], "n": metrics["n_eval_item_groups"],
                                 "method": "bootstrap"}
    return out


def check_init(init_dir: str | None, base: str) -> None:
    """An ``--init`` of another architecture or tokenizer than ``base``: an error before training."""
    if init_dir is None:
        return
    from transformers import AutoConfig, AutoTokenizer

    from hhhlab.models.load import load_model
    from hhhlab.train.warm_start import SHAPE_FIELDS, InitError

    ref = load_model(base, device="cpu", dtype="float32")
    tok = AutoTokenizer.from_pretrained(init_dir, local_files_only=True)
    conf = AutoConfig.from_pretrained(init_dir, local_files_only=True).to_dict()
    a = cast(Any, ref.model).config.to_dict()  # a transformers model, typed nn.Module
    diff = [k for k in SHAPE_FIELDS if a.get(k) != conf.get(k)]
    if diff:
        raise InitError(f"--init {init_dir} is another architecture than {base} ({', '.join(diff)} differ)")
    vocab = tok.get_vocab()
    wrong = [t for t, i in ref.tokenizer.get_vocab().items() if vocab.get(t) != i]
    if wrong:
        raise InitError(f"--init {init_dir} has another tokenizer than the target data's model {base}: "
                        f"{len(wrong)} tokens differ (e.g. {wrong[:3]})")


def run_finetune(cfg: FinetuneConfig, *, label: str | None = None, accelerator=None) -> dict:
    """Every size of ``cfg.sizes``; returns and writes ``OUTPUT/results.json`` (kind ``pm_finetune``)."""
    from hhhlab import distributed
    from hhhlab.results import write_results
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.preference_model import PreferenceModel
    from hhhlab.train.trainer import train_and_evaluate
    from hhhlab.train.warm_start import load_init

    out = Path(cfg.output)
    for f in (cfg.train, cfg.eval):
        if not Path(f).is_file():
            raise DataError(f"fine-tuning data {f}: no such file")
    order = finetune_order(list(read_jsonl(cfg.train)), cfg.seed)
    too_big = [n for n in cfg.sizes if n > len(order)]
    if too_big:
        raise DataError(f"fine-tuning sizes {too_big} exceed the {len(order)} pairs in {cfg.train}")
    init_dir, base = resolve_base(cfg)
    check_init(init_dir, base)
    epochs = cfg.epochs or default_epochs(order)
    points = []
    for n in sorted(set(cfg.sizes)):
        run_dir = out / f"n{n}"
        cached = run_dir / "eval.json"
        key = {"init": cfg.init, "base": base, "train": cfg.train, "eval": cfg.eval, "n": n, "epochs": epochs,
               "lr": cfg.learning_rate, "batch": cfg.batch_size, "weights": [cfg.pm_weight, cfg.lm_weight],
               "seed": cfg.seed, "max_eval": cfg.max_eval, "max_length": cfg.max_length}
        result = read_json(cached) if cached.exists() else None
        if result is None or result.get("key") != key:
            if n == 0:
                if init_dir is not None:
                    pm = load_init(init_dir, base, scoring="head", device=cfg.device, max_length=cfg.max_length)
                else:  # the baseline's zero-shot point: a fresh head, seeded (chance accuracy)
                    import torch

                    torch.manual_seed(cfg.seed)
                    pm = PreferenceModel.from_lm(base, scoring="head", device=cfg.device, dtype="float32",
                                                 max_length=cfg.max_length)
                seconds = 0.0
            else:
                data = run_dir / "train.jsonl"
                if distributed.is_main():
                    write_jsonl(order[:n], data)
                distributed.barrier()
                batch = min(cfg.batch_size, n)
                tcfg = TrainConfig(model=base, objective="preference", init=init_dir, train=str(data),
                                   output=str(run_dir), epochs=epochs, batch_size=batch, lr=cfg.learning_rate,
                                   pm_weight=cfg.pm_weight, lm_weight=cfg.lm_weight, dtype=cfg.dtype,
                                   device=cfg.device, max_length=cfg.max_length, seed=cfg.seed,
                                   checkpoint_every=max(1, math.ceil(n * epochs / batch)), keep_checkpoints=1,
                                   progress=cfg.progress, record_run=False)
                metrics = train_and_evaluate(tcfg, accelerator=accelerator)
                seconds = metrics.get("train_seconds", 0.0)
                pm = PreferenceModel.from_pretrained(run_dir / "model", device=cfg.device, dtype=cfg.dtype)
            result = {"key": key, "n": n, "train_seconds": seconds,
                      **evaluate_pairs(pm, cfg.eval, batch_size=cfg.eval_batch_size, limit=cfg.max_eval)}
            if distributed.is_main():
                atomic_write_json(cached, result)
            del pm
        points.append({"n": n, "condition": label or ("pmp" if init_dir else "no_pmp"), "target": Path(cfg.eval).stem,
                       "model": base, **{k: v for k, v in result.items() if k != "key"}})
    if distributed.is_main():
        last = points[-1]
        write_results(out / "results.json", "pm_finetune", config=cfg.model_dump(),
                      estimates={f"accuracy@{p['n']}": p["accuracy"] for p in points} | {
                          f"pm_loss@{last['n']}": last["pm_loss"]},
                      payload={"points": points, "epochs": epochs, "base_model": base, "init": cfg.init},
                      models=[base])
    return {"points": points, "epochs": epochs, "base_model": base}

