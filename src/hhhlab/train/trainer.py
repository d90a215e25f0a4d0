"""The training loop for every objective: one readable function, no callbacks.

    batch source (step -> global batch of tokenised items) -> per-process micro-batches
    -> objective.collate -> objective.loss_terms -> AdamW step -> checkpoint / TensorBoard
    -> objective.evaluate -> metrics.json

The loop knows no objective by name: what model to build (a causal LM, or one with a scalar
head at an end-of-context token), how items become a batch, the loss and the evaluation all come
from the `hhhlab.train.objectives.Objective` that ``cfg.objective`` names; the data from a
`hhhlab.train.sources` batch source.

Design choices that make runs reproducible and resumable:

* **Global batches are fixed by the seed, not by the number of processes.** Step ``s`` always
  trains on the same items (the source's ``global_batch(s)``); each process takes a share, and
  every loss term of a micro-batch is weighted by its share of the *global* batch's units
  (pairs, tokens, ...), so the summed gradient is the same with 1, 2 or 8 processes and any
  gradient accumulation. A checkpoint written with two processes resumes with one (the data
  position is simply the step).
* **Checkpoints** (`hhhlab.train.checkpoint`) hold weights, optimizer state and RNG as
  safetensors, and everything else as JSON; the loop resumes from ``OUTPUT/checkpoints``.
* **Non-finite loss** stops the run with the step and the items of the batch named; the last
  checkpoint on disk is the last good one (nothing is saved after a bad step).

Runs unchanged under ``accelerate launch`` (DDP, FSDP, DeepSpeed configs in configs/accelerate/);
without it, it runs in one process on ``config.device``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hhhlab.errors import HHHLabError
from hhhlab.results import read_metrics, write_metrics
from hhhlab.store import read_json
from hhhlab.train.batching import EncodedGroup
from hhhlab.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from hhhlab.train.config import TrainConfig
from hhhlab.train.data import DataStats, encode_groups, read_groups
from hhhlab.train.objectives import LossTerm, Objective, get_objective
from hhhlab.train.preference_model import PreferenceModel
from hhhlab.train.sources import BatchSource, MemorySource, StreamMixture
from hhhlab.train.warm_start import load_init


class TrainingError(HHHLabError):
    """Training cannot go on (non-finite loss, a checkpoint from another configuration, ...)."""


@dataclass
class TrainState:
    step: int = 0
    units_seen: int = 0  # the objective's primary unit: pairs (PM, classifier) or target tokens (IL, LM)
    pairs_seen: int = 0
    tokens_seen: int = 0  # real (unpadded) tokens through the trunk
    train_seconds: float = 0.0
    history: list = field(default_factory=list)  # [step, loss] every log_every steps


def shard(batch: list[EncodedGroup], n_shards: int, shard_id: int) -> list[EncodedGroup]:
    """Deal a batch, longest first, round-robin to ``n_shards`` shares (balanced lengths)."""
    ordered = sorted(batch, key=lambda g: (-g.n_tokens, g.index))
    return ordered[shard_id::n_shards]


# -- set-up ------------------------------------------------------------------------------------

def make_objective(cfg: TrainConfig) -> Objective:
    """The objective ``cfg.objective`` names, its settings checked (before any model is loaded)."""
    try:
        cls = get_objective(cfg.objective)
    except KeyError as exc:
        raise TrainingError(str(exc.args[0])) from None
    objective = cls(cfg)
    objective.validate()
    return objective


def build_model(cfg: TrainConfig, objective: Objective, device: torch.device) -> PreferenceModel:
    """The model the objective needs (a causal LM alone, or LM + scalar head at the EOC token),
    fresh from ``cfg.model`` or warm-started from ``cfg.init``."""
    scoring = "head" if objective.needs_head else "mean_logprob"
    if cfg.init:
        pm = load_init(cfg.init, cfg.model, scoring=scoring, device=str(device), max_length=cfg.max_length)
    else:
        pm = PreferenceModel.from_lm(cfg.model, scoring=scoring, device=str(device), dtype="float32",
                                     max_length=cfg.max_length)
    pm.extra.update(objective=objective.name)
    if cfg.gradient_checkpointing:
        pm.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        # The LoRA adapters live inside the trunk's linear layers; the head stays fully trained.
        # The EOC embedding is not trained under LoRA (it starts as the mean embedding).
        pm.lm = get_peft_model(pm.lm, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                 target_modules="all-linear"))
    objective.trainable(pm)
    pm.train()
    return pm


def build_source(cfg: TrainConfig, objective: Objective, pm: PreferenceModel) -> BatchSource:
    """The batch source ``cfg.source`` names over ``cfg.train``'s files, tokenised by the objective."""
    stats = DataStats()

    def encode(record, index: int):
        return objective.encode(record, index, pm.tokenizer, pm.max_length, stats)

    if cfg.source == "stream":
        return StreamMixture(cfg.train_files, objective.records, encode, batch_size=cfg.batch_size, seed=cfg.seed,
                             weights=cfg.train_weights, shuffle_buffer=cfg.shuffle_buffer, stats=stats)
    return MemorySource.from_files(cfg.train_files, objective.records, encode, batch_size=cfg.batch_size,
                                   seed=cfg.seed, length_grouped=cfg.length_grouped, limit=cfg.max_train,
                                   stats=stats)


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters (frozen ones cost nothing), weight decay on matrices
    only, with the fused kernel where torch has one for the device (one pass over all tensors
    instead of a dozen per tensor: on CPU it is most of the step for short pairs)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, **optimizer_kernel(params))


def optimizer_kernel(params: Sequence[torch.Tensor]) -> dict:
    """``fused=True`` where torch's fused AdamW supports the parameters' device, else foreach."""
    devices = {p.device.type for p in params}
    if devices <= {"cpu", "cuda"} and all(p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params):
        return {"fused": True}
    return {"foreach": True}


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant, linear decay to 0 or cosine to 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    frac = min(max((step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps), 0.0), 1.0)
    return cfg.lr * ((1.0 - frac) if cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac)))


def weighted_loss(terms: list[LossTerm], totals: dict[str, int], world: int) -> tuple[torch.Tensor, float]:
    """``Σ weight·value·(n / global units)·world`` — each term weighted by its share of the
    global batch, so that gradients summed over micro-batches and averaged over processes are
    those of the global mean — and the unweighted ``Σ weight·value`` for the finiteness check."""
    loss: torch.Tensor | None = None
    raw = 0.0
    for t in terms:
        part = (t.weight * t.value) * (t.n / totals[t.unit] * world)
        loss = part if loss is None else loss + part
        raw += t.weight * float(t.value.detach())
    if loss is None:
        raise TrainingError("the objective returned no loss terms")
    return loss, raw


# -- the loop --------------------------------------------------------------------------------

def train(cfg: TrainConfig, *, accelerator=None, stop_after: int | None = None, objective: Objective | None = None,
          source: BatchSource | None = None, model: PreferenceModel | None = None) -> tuple[PreferenceModel, dict]:
    """Train (resuming from ``cfg.output/checkpoints`` when present); returns the model (on every
    process) and a summary dict. ``objective`` / ``source``: use these instead of the ones
    ``cfg`` names (Python API for objectives and sources with settings beyond `TrainConfig`).
    ``model``: train this already-built model in place instead of loading ``cfg.model`` /
    ``cfg.init`` (sweeps of many short cells copy one loaded model rather than reload it per
    cell; `cfg`'s LoRA and gradient-checkpointing settings are then not applied).
    ``stop_after``: return after this many steps of this call without finishing (tests of
    resumption)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from hhhlab.models.device import resolve_device, resolve_dtype

    objective = objective or make_objective(cfg)  # an unknown objective fails before any loading
    out_dir = Path(cfg.output)
    ckpt_dir = out_dir / "checkpoints"
    device_cpu = resolve_device(cfg.device).type == "cpu"
    dt = resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    acc = accelerator or Accelerator(cpu=device_cpu)
    world, rank = acc.num_processes, acc.process_index
    set_seed(cfg.seed)
    if model is None:
        pm = build_model(cfg, objective, acc.device)
    else:
        pm = model.to(acc.device)
        pm.extra.update(objective=objective.name)
        objective.trainable(pm)
        pm.train()

    source = source or build_source(cfg, objective, pm)
    stats = source.stats
    steps_per_epoch = source.steps_per_epoch
    if steps_per_epoch is None and not cfg.max_steps:
        raise TrainingError("the training source is a stream without epochs: set max_steps")
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * (steps_per_epoch or 1)))
    n_items = len(source.items) if isinstance(source, MemorySource) else cfg.batch_size
    if min(cfg.batch_size, n_items) < world * cfg.grad_accum:
        raise TrainingError(f"batch size {cfg.batch_size} (or the {n_items} training items) is smaller than "
                            f"processes x grad_accum = {world * cfg.grad_accum}: every micro-batch needs an item")

    optimizer = make_optimizer(cfg, pm)
    state = TrainState(history=[])
    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is not None:
        saved = read_json(ckpt / "state.json")
        diff = cfg.key_differences(saved.get("config", {}))
        if diff:
            raise TrainingError(f"{ckpt} was written by a run with different settings {diff}; "
                                "use another --output or delete its checkpoints")
        saved = load_checkpoint(ckpt, pm, optimizer)
        state = TrainState(**{k: saved[k] for k in TrainState.__dataclass_fields__ if k in saved})
        if acc.is_main_process:
            acc.print(f"resuming from {ckpt} at step {state.step}/{total}")

    model, optimizer = acc.prepare(pm, optimizer)
    writer = None
    if acc.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tensorboard"))
    autocast = (torch.autocast(acc.device.type, dtype=torch.bfloat16) if dt == torch.bfloat16 else nullcontext())

    bar = tqdm(total=total, initial=state.step, desc=f"train {objective.name}", disable=not (cfg.progress and
               acc.is_main_process), dynamic_ncols=True)
    steps_this_call = 0
    model.train()
    while state.step < total:
        t0 = time.perf_counter()
        global_batch = source.global_batch(state.step)
        if len(global_batch) < world * cfg.grad_accum:
            raise TrainingError(f"step {state.step + 1}: only {len(global_batch)} usable items in the global batch "
                                f"for {world} processes x grad_accum {cfg.grad_accum} ({stats.to_dict()})")
        totals: dict[str, int] = {}
        for g in global_batch:
            for unit, n in objective.units(g).items():
                totals[unit] = totals.get(unit, 0) + n
        mine = shard(global_batch, world, rank)
        micros = [shard(mine, cfg.grad_accum, k) for k in range(cfg.grad_accum)]
        lr = learning_rate(cfg, state.step, total)
        for grp in optimizer.param_groups:
            grp["lr"] = lr
        step_loss = torch.zeros(2, device=acc.device)  # [weighted loss sum, weight]
        for k, micro in enumerate(micros):
            batch = objective.collate(micro, pm).to(acc.device)
            sync = acc.no_sync(model) if (k < len(micros) - 1 and world > 1) else nullcontext()
            with sync:
                with autocast:
                    loss, raw = weighted_loss(objective.loss_terms(model, batch), totals, world)
                bad = torch.tensor([0.0 if math.isfinite(raw) else 1.0], device=acc.device)
                if world > 1:
                    bad = acc.reduce(bad, reduction="sum")
                if bad.item() > 0:
                    ids = [g.group_id or str(g.index) for g in global_batch]
                    last = latest_checkpoint(ckpt_dir)
                    raise TrainingError(
                        f"non-finite loss at step {state.step + 1} (micro-batch {k}) "
                        f"on items {ids[:10]}{' ...' if len(ids) > 10 else ''}; nothing was saved after it — "
                        f"the last good checkpoint is {last or 'none (no checkpoint yet)'}")
                acc.backward(loss)
            step_loss += torch.tensor([loss.item(), 1.0], device=acc.device)
            state.tokens_seen += batch.n_real_tokens
        if cfg.max_grad_norm:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if world > 1:
            step_loss = acc.reduce(step_loss, reduction="sum")
        # the weighted losses of all micro-batches of all processes sum to world x the global mean
        loss_value = float(step_loss[0]) / world
        state.step += 1
        state.units_seen += totals.get(objective.primary_unit, 0)
        state.pairs_seen += totals.get("pairs", 0)
        state.train_seconds += time.perf_counter() - t0
        steps_this_call += 1
        if state.step % cfg.log_every == 0 or state.step == total:
            state.history.append([state.step, loss_value])
            if writer is not None:
                writer.add_scalar("train/loss", loss_value, state.step)
                writer.add_scalar("train/lr", lr, state.step)
                writer.add_scalar(f"train/{objective.primary_unit}_per_s",
                                  state.units_seen / max(state.train_seconds, 1e-9), state.step)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        bar.update(1)
        if state.step % cfg.checkpoint_every == 0 or (state.step == total and cfg.final_checkpoint):
            acc.wait_for_everyone()
            if acc.is_main_process:
                save_checkpoint(ckpt_dir, state.step, acc.unwrap_model(model), optimizer,
                                {**state.__dict__, "config": cfg.training_key(), "data": stats.to_dict(),
                                 "world_size": world}, keep=cfg.keep_checkpoints)
            acc.wait_for_everyone()
        if stop_after is not None and steps_this_call >= stop_after and state.step < total:
            break
    bar.close()
    if writer is not None:
        writer.close()
    summary = {**state.__dict__, "total_steps": total, "finished": state.step >= total, "data": stats.to_dict(),
               "world_size": world, "train_items": n_items if isinstance(source, MemorySource) else None,
               "source": source.describe(), "objective": objective.name, "primary_unit": objective.primary_unit,
               "pairs_per_s": state.pairs_seen / max(state.train_seconds, 1e-9),
               "units_per_s": state.units_seen / max(state.train_seconds, 1e-9)}
    summary["train_groups"] = summary["train_items"]
    pm = acc.unwrap_model(model)
    pm.eval()
    return pm, summary


def score_sharded(pm: PreferenceModel, groups: list, *, batch_size: int, progress: bool) -> list[list[float]]:
    """``pm.score_encoded`` with the groups split between the processes of a launcher (each
    scores every world_size-th group) and merged back in order: scores do not depend on the
    batch size (batching contract) nor, therefore, on the number of processes."""
    from hhhlab import distributed

    if not distributed.launched():
        return pm.score_encoded(groups, batch_size=batch_size, progress=progress)
    idx = distributed.shard(range(len(groups)))
    mine = pm.score_encoded([groups[i] for i in idx], batch_size=batch_size,
                            progress=progress and distributed.is_main())
    out: list[list[float]] = [[] for _ in groups]
    for part in distributed.gather(dict(zip(idx, mine))):
        for i, s in part.items():
            out[i] = s
    return out


def evaluate_model(pm: PreferenceModel, path: str, *, batch_size: int = 32, limit: int | None = None,
                   progress: bool = False) -> tuple[dict, DataStats]:
    """Score a JSONL file of groups with ``pm`` and compute the metrics of `hhhlab.train.evaluate`."""
    from hhhlab.train.evaluate import evaluation_metrics

    stats = DataStats()
    groups = encode_groups(read_groups(path, limit=limit, stats=stats), pm.tokenizer, max_length=pm.max_length,
                           stats=stats)
    scores = score_sharded(pm, groups, batch_size=batch_size, progress=progress)
    metrics = evaluation_metrics(groups, scores, with_calibration=pm.scoring == "head")
    metrics["eval_data"] = stats.to_dict()
    return metrics, stats


def _run_id(cfg: TrainConfig) -> str:
    import hashlib

    return "pm-train-" + hashlib.sha1(str(Path(cfg.output).resolve()).encode()).hexdigest()[:12]


def train_and_evaluate(cfg: TrainConfig, *, accelerator=None) -> dict:
    """Train, save ``OUTPUT/model``, evaluate on ``cfg.eval`` and write ``OUTPUT/metrics.json``.

    Cheap to call again: a finished run with the same settings returns its metrics without
    loading a model, and an interrupted one resumes from its last checkpoint. Returns the
    metrics dict (the same on every process)."""
    out_dir = Path(cfg.output)
    metrics_path = out_dir / "metrics.json"
    key = {**cfg.training_key(), "eval": cfg.eval, "max_eval": cfg.max_eval, "max_steps": cfg.max_steps}
    if metrics_path.exists():
        done = read_metrics(metrics_path)  # a results document (or a legacy metrics file)
        if done.get("config_key") == key:
            return done
    t0 = time.perf_counter()
    objective = make_objective(cfg)
    pm, summary = train(cfg, accelerator=accelerator, objective=objective)
    from accelerate import PartialState

    main = PartialState().is_main_process
    metrics: dict = {}
    if main:
        pm.save_pretrained(out_dir / "model")
    if cfg.eval:  # the objective's evaluation hook; every process scores a share (score_sharded)
        metrics = objective.evaluate(pm, cfg.eval)
    if main:
        metrics.update(
            objective=cfg.objective, model=cfg.model, non_embedding_params=pm.non_embedding_params,
            train_steps=summary["step"], train_pairs_seen=summary["pairs_seen"],
            train_tokens_seen=summary["tokens_seen"], train_seconds=summary["train_seconds"],
            pairs_per_s=summary["pairs_per_s"], world_size=summary["world_size"],
            primary_unit=summary["primary_unit"], units_per_s=summary["units_per_s"], train_source=summary["source"],
            final_train_loss=summary["history"][-1][1] if summary["history"] else None,
            loss_history=summary["history"], train_data=summary["data"], wall_seconds=time.perf_counter() - t0,
            config=cfg.model_dump(), config_key=key, model_dir=str(out_dir / "model"),
        )
        write_metrics(metrics_path, "pm_train", metrics, config=cfg.model_dump(), models=[cfg.model])
        if cfg.record_run:
            from hhhlab.store import ResultsStore

            run = ResultsStore().create_run("pm_train", cfg.model_dump(), name=f"{cfg.objective}:{cfg.model}",
                                            run_id=_run_id(cfg))
            run.finish({k: v for k, v in metrics.items() if k not in ("calibration_bins", "loss_history", "pair_correct")})
    PartialState().wait_for_everyone()
    if not main:
        metrics = read_metrics(metrics_path)
    return metrics
