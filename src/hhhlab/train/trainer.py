"""The training loop for IL, PM and classifier objectives: one readable function, no callbacks.

    data (JSONL groups) -> tokenised groups -> fixed global batches -> per-process micro-batches
    -> tree rows -> loss -> AdamW step -> checkpoint / TensorBoard -> evaluation -> metrics.json

Design choices that make runs reproducible and resumable:

* **Global batches are fixed by the seed, not by the number of processes.** Step ``s`` always
  trains on the same ``batch_size`` groups; each process takes a share, and every micro-batch's
  loss is weighted by its share of the *global* pairs (or tokens), so the summed gradient is the
  same with 1, 2 or 8 processes and any gradient accumulation. A checkpoint written with two
  processes resumes with one (the data position is simply the step).
* **Checkpoints** (`hhhlab.train.checkpoint`) hold weights, optimizer state and RNG as
  safetensors, and everything else as JSON; the loop resumes from ``OUTPUT/checkpoints``.
* **Non-finite loss** stops the run with the step and the groups of the batch named; the last
  checkpoint on disk is the last good one (nothing is saved after a bad step).

Runs unchanged under ``accelerate launch`` (DDP, FSDP, DeepSpeed configs in configs/accelerate/);
without it, it runs in one process on ``config.device``.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from hhhlab.errors import HHHLabError
from hhhlab.store import atomic_write_json, read_json
from hhhlab.train.batching import EncodedGroup, build_batch
from hhhlab.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from hhhlab.train.config import TrainConfig
from hhhlab.train.data import DataStats, encode_groups, read_groups
from hhhlab.train.losses import classifier_loss, imitation_loss, preference_loss
from hhhlab.train.preference_model import PreferenceModel


class TrainingError(HHHLabError):
    """Training cannot go on (non-finite loss, a checkpoint from another configuration, ...)."""


@dataclass
class TrainState:
    step: int = 0
    units_seen: int = 0  # pairs (PM, classifier) or good-response tokens (IL)
    pairs_seen: int = 0
    tokens_seen: int = 0  # real (unpadded) tokens through the trunk
    train_seconds: float = 0.0
    history: list | None = None  # [step, loss] every log_every steps


# -- data order ------------------------------------------------------------------------------

def epoch_batches(groups: list[EncodedGroup], batch_size: int, epoch: int, seed: int,
                  length_grouped: bool) -> list[list[int]]:
    """The global batches of one epoch (indices into ``groups``), the same in every process.

    Length grouping: shuffle, cut into mega-batches of 32 batches, sort each by length, cut into
    batches and shuffle the batches — similar lengths share a batch (little padding) while the
    order stays random. The last incomplete batch is dropped (every step sees ``batch_size``)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(len(groups), generator=g).tolist()
    bs = min(batch_size, len(groups))
    if length_grouped:
        mega = bs * 32
        perm = [i for s in range(0, len(perm), mega)
                for i in sorted(perm[s : s + mega], key=lambda i: -groups[i].n_tokens)]
    batches = [perm[s : s + bs] for s in range(0, len(perm) - bs + 1, bs)]
    if length_grouped:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]
    return batches


def shard(batch: list[int], groups: list[EncodedGroup], n_shards: int, shard_id: int) -> list[int]:
    """Deal a batch, longest first, round-robin to ``n_shards`` shares (balanced lengths)."""
    ordered = sorted(batch, key=lambda i: (-groups[i].n_tokens, i))
    return ordered[shard_id::n_shards]


def units(g: EncodedGroup, objective: str) -> tuple[int, int]:
    """(pairs, LM target tokens) a group contributes to the loss normalisation."""
    pairs = len(g.pairs())
    tokens = sum(len(g.responses[i]) for i in g.best())
    return pairs, tokens


# -- model setup -----------------------------------------------------------------------------

def build_model(cfg: TrainConfig, device: torch.device) -> PreferenceModel:
    pm = PreferenceModel.from_lm(cfg.model, scoring=cfg.scoring, device=str(device), dtype="float32",
                                 max_length=cfg.max_length)
    pm.extra.update(objective=cfg.objective)
    if cfg.gradient_checkpointing:
        pm.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        # The LoRA adapters live inside the trunk's linear layers; the head stays fully trained.
        # The EOC embedding is not trained under LoRA (it starts as the mean embedding).
        pm.lm = get_peft_model(pm.lm, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                 target_modules="all-linear"))
    if cfg.objective == "imitation":
        pm.head.requires_grad_(False)  # IL scores by mean log-prob; the head is unused
    elif not cfg.lm_weight:  # no LM loss: an untied LM head gets no gradient (DDP needs every
        out = pm.lm.get_output_embeddings()  # trainable parameter used), so freeze it
        if out is not None and out.weight is not pm.lm.get_input_embeddings().weight:
            out.requires_grad_(False)
    pm.train()
    return pm


def learning_rate(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant, linear decay to 0 or cosine to 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    frac = min(max((step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps), 0.0), 1.0)
    return cfg.lr * ((1.0 - frac) if cfg.schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac)))


def micro_loss(model, batch, objective: str, lm_weight: float, g_pairs: int, g_tokens: int,
               world: int) -> tuple[torch.Tensor, float]:
    """The loss of one micro-batch, weighted by its share of the global batch so that the
    gradients summed over micro-batches and averaged over processes are those of the global
    mean; returns (weighted loss to backpropagate, unweighted loss for logging)."""
    n_pairs, n_tok = batch.pair_good.numel(), batch.lm_target.numel()
    if objective == "imitation":
        _, token_lp = model(batch, head=False, lm=True)
        raw = imitation_loss(token_lp)
        return raw * (n_tok / g_tokens * world), float(raw.detach())
    scores, token_lp = model(batch, head=True, lm=bool(lm_weight))
    if objective == "classifier":
        raw = classifier_loss(scores, batch.pair_good, batch.pair_bad)
    else:
        raw = preference_loss(scores, batch.pair_good, batch.pair_bad)
    loss = raw * (n_pairs / g_pairs * world)
    if lm_weight:
        lm = imitation_loss(token_lp)
        loss = loss + lm_weight * lm * (n_tok / g_tokens * world)
        raw = raw + lm_weight * lm
    return loss, float(raw.detach())


# -- the loop --------------------------------------------------------------------------------

def train(cfg: TrainConfig, *, accelerator=None, stop_after: int | None = None) -> tuple[PreferenceModel, dict]:
    """Train (resuming from ``cfg.output/checkpoints`` when present); returns the model (on every
    process) and a summary dict. ``stop_after``: return after this many steps of this call
    without finishing (tests of resumption)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from hhhlab.models.device import resolve_device, resolve_dtype

    out_dir = Path(cfg.output)
    ckpt_dir = out_dir / "checkpoints"
    device_cpu = resolve_device(cfg.device).type == "cpu"
    dt = resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    acc = accelerator or Accelerator(cpu=device_cpu)
    world, rank = acc.num_processes, acc.process_index
    set_seed(cfg.seed)
    pm = build_model(cfg, acc.device)

    stats = DataStats()
    groups = encode_groups(read_groups(cfg.train, limit=cfg.max_train, stats=stats), pm.tokenizer,
                           max_length=pm.max_length, stats=stats)
    steps_per_epoch = max(1, len(groups) // cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    if min(cfg.batch_size, len(groups)) < world * cfg.grad_accum:
        raise TrainingError(f"batch size {cfg.batch_size} (or the {len(groups)} training groups) is smaller than "
                            f"processes x grad_accum = {world * cfg.grad_accum}: every micro-batch needs a group")

    params = [p for p in pm.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    state = TrainState(history=[])
    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is not None:
        saved = read_json(ckpt / "state.json")
        diff = {k: (saved.get("config", {}).get(k), v) for k, v in cfg.training_key().items()
                if saved.get("config", {}).get(k) != v}
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
    side = pm.tokenizer.padding_side
    responses = "best" if cfg.objective == "imitation" else "all"
    lm_on = "best" if (cfg.objective == "imitation" or cfg.lm_weight) else "none"

    bar = tqdm(total=total, initial=state.step, desc=f"train {cfg.objective}", disable=not (cfg.progress and
               acc.is_main_process), dynamic_ncols=True)
    epoch_cache: dict[int, list[list[int]]] = {}
    steps_this_call = 0
    model.train()
    while state.step < total:
        t0 = time.perf_counter()
        epoch, pos = divmod(state.step, steps_per_epoch)
        if epoch not in epoch_cache:
            epoch_cache = {epoch: epoch_batches(groups, cfg.batch_size, epoch, cfg.seed, cfg.length_grouped)}
        global_batch = epoch_cache[epoch][pos]
        g_pairs = sum(units(groups[i], cfg.objective)[0] for i in global_batch)
        g_tokens = sum(units(groups[i], cfg.objective)[1] for i in global_batch)
        mine = shard(global_batch, groups, world, rank)
        micros = [shard(mine, groups, cfg.grad_accum, k) for k in range(cfg.grad_accum)]
        lr = learning_rate(cfg, state.step, total)
        for grp in optimizer.param_groups:
            grp["lr"] = lr
        step_loss = torch.zeros(2, device=acc.device)  # [weighted loss sum, weight]
        for k, micro in enumerate(micros):
            batch = build_batch([groups[i] for i in micro], eoc_id=pm.eoc_id, pad_id=pm.tokenizer.pad_token_id,
                                responses=responses, lm=lm_on, padding_side=side).to(acc.device)
            sync = acc.no_sync(model) if (k < len(micros) - 1 and world > 1) else nullcontext()
            with sync:
                with autocast:
                    loss, raw = micro_loss(model, batch, cfg.objective, cfg.lm_weight, g_pairs, g_tokens, world)
                bad = torch.tensor([0.0 if math.isfinite(raw) else 1.0], device=acc.device)
                if world > 1:
                    bad = acc.reduce(bad, reduction="sum")
                if bad.item() > 0:
                    ids = [groups[i].group_id or str(groups[i].index) for i in global_batch]
                    last = latest_checkpoint(ckpt_dir)
                    raise TrainingError(
                        f"non-finite loss at step {state.step + 1} (epoch {epoch}, batch {pos}, micro-batch {k}) "
                        f"on groups {ids[:10]}{' ...' if len(ids) > 10 else ''}; nothing was saved after it — "
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
        state.units_seen += g_pairs if cfg.objective != "imitation" else g_tokens
        state.pairs_seen += g_pairs
        state.train_seconds += time.perf_counter() - t0
        steps_this_call += 1
        if state.step % cfg.log_every == 0 or state.step == total:
            state.history.append([state.step, loss_value])
            if writer is not None:
                writer.add_scalar("train/loss", loss_value, state.step)
                writer.add_scalar("train/lr", lr, state.step)
                writer.add_scalar("train/pairs_per_s", state.pairs_seen / max(state.train_seconds, 1e-9), state.step)
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
               "world_size": world, "train_groups": len(groups),
               "pairs_per_s": state.pairs_seen / max(state.train_seconds, 1e-9)}
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
        done = read_json(metrics_path)
        if done.get("config_key") == key:
            return done
    t0 = time.perf_counter()
    pm, summary = train(cfg, accelerator=accelerator)
    from accelerate import PartialState

    main = PartialState().is_main_process
    metrics: dict = {}
    if main:
        pm.save_pretrained(out_dir / "model")
    if cfg.eval:  # every process scores a share of the eval groups (score_sharded)
        metrics, _ = evaluate_model(pm, cfg.eval, batch_size=cfg.eval_batch_size, limit=cfg.max_eval,
                                    progress=cfg.progress)
    if main:
        metrics.update(
            objective=cfg.objective, model=cfg.model, non_embedding_params=pm.non_embedding_params,
            train_steps=summary["step"], train_pairs_seen=summary["pairs_seen"],
            train_tokens_seen=summary["tokens_seen"], train_seconds=summary["train_seconds"],
            pairs_per_s=summary["pairs_per_s"], world_size=summary["world_size"],
            final_train_loss=summary["history"][-1][1] if summary["history"] else None,
            loss_history=summary["history"], train_data=summary["data"], wall_seconds=time.perf_counter() - t0,
            config=cfg.model_dump(), config_key=key, model_dir=str(out_dir / "model"),
        )
        atomic_write_json(metrics_path, metrics)
        if cfg.record_run:
            from hhhlab.store import ResultsStore

            run = ResultsStore().create_run("pm_train", cfg.model_dump(), name=f"{cfg.objective}:{cfg.model}",
                                            run_id=_run_id(cfg))
            run.finish({k: v for k, v in metrics.items() if k not in ("calibration_bins", "loss_history", "pair_correct")})
    PartialState().wait_for_everyone()
    if not main:
        metrics = read_json(metrics_path)
    return metrics
