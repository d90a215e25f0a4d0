"""Run evals: one eval under one condition (``run_eval``), or a whole suite over a model ladder,
conditions and format variants (``run_suite``), with item-level results in the results store.

Resume: every finished item is stored in the run under ``model|condition|variant|eval|item``,
one store transaction per batch of items (an engine call's worth); ``run_eval`` skips the keys
the run already holds, so ``--resume`` redoes nothing and stores no item twice, an eval that
raises mid-way keeps every item it finished, and a kill loses at most the batch in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hhhlab import distributed
from hhhlab.errors import HHHLabError
from hhhlab.evals.base import Condition, Eval, EvalContext, check_options, get_eval, select
from hhhlab.stats import Estimate, paired_difference

KEY_SEP = "|"


def item_key(model: str, condition: str, variant: str | None, eval_name: str, item_id: str) -> str:
    return KEY_SEP.join([model, condition, variant or "-", eval_name, item_id])


@dataclass
class EvalOutcome:
    """One eval under one (model, condition, variant): per-item results and metrics."""

    eval: str
    model: str
    condition: str
    variant: str | None
    results: dict[str, dict]  # item id -> the eval's per-item result
    metrics: dict[str, Estimate]
    values: dict[str, dict[str, float]]  # metric -> item id -> value (for paired differences)
    n_items: int
    n_resumed: int
    seconds: float

    def to_dict(self) -> dict:
        return {
            "eval": self.eval, "model": self.model, "condition": self.condition, "variant": self.variant,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "n_items": self.n_items, "n_resumed": self.n_resumed, "seconds": round(self.seconds, 3),
        }


def run_eval(ev: Eval, ctx: EvalContext, *, model: str,
             progress: Callable[[int, int], None] | None = None) -> EvalOutcome:
    """Load the eval's items, score those the run does not hold yet, store each as it finishes.

    ``progress(advance, total)`` is called with the resumed count first, then once per item."""
    t0 = time.perf_counter()
    items = select(ev.load(ctx), ctx.limit, ctx.seed)
    variant = ctx.variant.name if ctx.variant is not None else None
    def key(item_id: str) -> str:
        return item_key(model, ctx.condition.label, variant, ev.name, item_id)

    # What is stored is read by the main process alone and shared: another process reading the
    # store later could already see items of this very run and split the rest differently.
    stored = ctx.run.items() if ctx.run is not None and distributed.is_main() else {}
    done: dict[str, dict] = distributed.broadcast(
        {it.id: stored[key(it.id)] for it in items if key(it.id) in stored})
    todo = [it for it in items if it.id not in done]
    n_resumed = len(done)
    # Under a launcher each process scores every world_size-th item still to do and stores it
    # itself (the store is shared); the results are then merged by item id, so the metrics do
    # not depend on the number of processes, before or after a resume.
    mine = distributed.shard(todo)
    world = distributed.world_size()
    if progress:
        progress(n_resumed, len(items))
    ours: dict[str, dict] = {}
    # Finished items go to the store one transaction per batch (`Run.put_items`: one fsync per
    # batch, not per item). A batch is one engine call's worth of items (``chunk_items``), which
    # ``run_items`` yields together, so a kill loses at most the batch being scored; an
    # exception out of the eval still stores every item finished before it (``finally``).
    pending: dict[str, dict] = {}
    batch = max(1, ev.chunk_items)

    def flush() -> None:
        if ctx.run is not None and pending:
            ctx.run.put_items(pending)
        pending.clear()

    try:
        for item, result in ev.run_items(mine, ctx):
            ours[item.id] = result
            pending[key(item.id)] = result
            if len(pending) >= batch:
                flush()
            if progress:  # the main process's share stands for all: each of its items ~ world items
                progress(min(world, len(todo) - world * (len(ours) - 1)), len(items))
    finally:
        flush()
    for part in distributed.gather(ours):
        done.update(part)
    missing = [it.id for it in items if it.id not in done]
    if missing:
        raise HHHLabError(f"{ev.name}: run_items returned no result for {len(missing)} items (first {missing[0]!r})")
    results = {it.id: done[it.id] for it in items}
    return EvalOutcome(
        eval=ev.name, model=model, condition=ctx.condition.label, variant=variant, results=results,
        metrics=ev.aggregate(results, seed=ctx.seed), values=ev.metric_values(results),
        n_items=len(items), n_resumed=n_resumed, seconds=time.perf_counter() - t0,
    )


# -- suites -------------------------------------------------------------------------------------
@dataclass
class SuiteConfig:
    models: list[str]
    evals: list[str]
    conditions: list[Condition]
    limit: int | None = None
    data_dir: Path | None = None
    batch_size: int = 16
    dtype: str = "auto"
    device: str = "auto"
    prompt_path: str | None = None
    seed: int = 0
    format_variants: bool = False
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # --eval-option: "<eval>.<key>" or "<key>"

    def to_dict(self) -> dict:
        return {
            "models": self.models, "evals": self.evals,
            "conditions": [c.label + (f":{c.model_path}" if c.model_path else "") for c in self.conditions],
            "limit": self.limit, "data_dir": str(self.data_dir) if self.data_dir else None,
            "batch_size": self.batch_size, "dtype": self.dtype, "device": self.device,
            "prompt": self.prompt_path, "seed": self.seed, "format_variants": self.format_variants,
            "options": self.options,
        }

    def identity(self) -> dict:
        """What determines the items' results (not the batch size: metrics do not depend on it)."""
        d = self.to_dict()
        d.pop("batch_size")
        return d


@dataclass
class SuiteReport:
    config: dict
    models: dict[str, dict] = field(default_factory=dict)  # spec -> describe() (+ slot)
    outcomes: list[EvalOutcome] = field(default_factory=list)
    prompt_version: str | None = None

    def outcome(self, model: str, condition: str, eval_name: str, variant: str | None = None) -> EvalOutcome | None:
        for o in self.outcomes:
            if (o.model, o.condition, o.eval, o.variant) == (model, condition, eval_name, variant):
                return o
        return None

    def differences(self, seed: int = 0) -> list[dict]:
        """Paired bootstrap CIs of (prompt - plain) and (distilled - plain) on the same items."""
        out = []
        for base in (o for o in self.outcomes if o.condition == "plain" and o.variant is None):
            for other in self.outcomes:
                if other.variant is not None or other.model != base.model or other.eval != base.eval:
                    continue
                if other.condition == "plain":
                    continue
                for metric, base_vals in base.values.items():
                    other_vals = other.values.get(metric, {})
                    ids = sorted(set(base_vals) & set(other_vals))
                    if not ids:
                        continue
                    est = paired_difference([other_vals[i] for i in ids], [base_vals[i] for i in ids], seed=seed)
                    out.append({"model": base.model, "eval": base.eval, "metric": metric,
                                "comparison": f"{other.condition} - plain", **est.to_dict()})
        return out

    def format_spread(self) -> list[dict]:
        """For each (model, condition, eval, metric) run under several format variants: the
        metric under each variant and its spread (max - min)."""
        groups: dict[tuple, dict[str, float]] = {}
        for o in self.outcomes:
            if o.variant is None:
                continue
            for metric, est in o.metrics.items():
                groups.setdefault((o.model, o.condition, o.eval, metric), {})[o.variant] = est.value
        out = []
        for (model, cond, ev, metric), vals in groups.items():
            out.append({"model": model, "condition": cond, "eval": ev, "metric": metric, "values": vals,
                        "min": min(vals.values()), "max": max(vals.values()),
                        "spread": max(vals.values()) - min(vals.values())})
        return out

    def estimates(self) -> dict[str, Estimate]:
        """Every estimate of the suite under a flat key, for the results document:
        ``model/condition[@variant]/eval/metric`` and ``model/eval/metric/<comparison>``."""
        out: dict[str, Estimate] = {}
        for o in self.outcomes:
            cond = o.condition + (f"@{o.variant}" if o.variant else "")
            for metric, est in o.metrics.items():
                out[f"{o.model}/{cond}/{o.eval}/{metric}"] = est
        for d in self.differences(seed=self.config.get("seed", 0)):
            out[f"{d['model']}/{d['eval']}/{d['metric']}/{d['comparison']}"] = Estimate(
                d["value"], d["lo"], d["hi"], d["n"], d["method"])
        return out

    def document(self, **payload_extra: Any) -> dict:
        """The suite as a results document (kind ``eval``): the flat estimates, and this report's
        dict (per-outcome metrics as estimate records) as the payload."""
        from hhhlab.results import make_results

        return make_results("eval", config=self.config, estimates=self.estimates(),
                            payload={**self.to_dict(), **payload_extra},
                            models=list(self.models), prompt_version=self.prompt_version)

    def to_dict(self) -> dict:
        return {
            "config": self.config, "prompt_version": self.prompt_version, "models": self.models,
            "results": [o.to_dict() for o in self.outcomes],
            "differences": self.differences(seed=self.config.get("seed", 0)),
            "format_spread": self.format_spread(),
        }


def _distilled_spec(cond: Condition, model: str, n_models: int) -> str:
    path = cond.model_path or ""
    if "{model}" in path:
        return path.replace("{model}", model)
    if n_models > 1:
        raise HHHLabError(
            f"distilled:{path} names one model but {n_models} models are evaluated; put '{{model}}' in the "
            "path (e.g. distilled:ckpts/{model}) so each model size has its own distilled checkpoint"
        )
    return path


def run_suite(cfg: SuiteConfig, *, run: Any = None, on_progress: Callable[[str, int, int], None] | None = None,
              log: Callable[[str], None] | None = None) -> SuiteReport:
    """Every eval for every model, condition (and format variant when asked), in one store run.

    ``on_progress(label, advance, total)`` drives the CLI's progress bars."""
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model
    from hhhlab.prompts import format_variants, load_prompt

    # Each eval is built with its own options (validated: an unknown key or bad value fails here,
    # before any model is loaded); the run's raw options stay on the context for the record.
    per_eval = check_options(cfg.evals, cfg.options)
    evals = {name: get_eval(name, **per_eval[name]) for name in cfg.evals}
    need_prompt = any(c.kind == "prompt" for c in cfg.conditions)
    prompt = load_prompt(cfg.prompt_path) if need_prompt or cfg.format_variants else None
    report = SuiteReport(config=cfg.to_dict(), prompt_version=prompt.version if prompt else None)
    say = log or (lambda msg: None)

    for model in cfg.models:
        loaded: dict[str, Any] = {}
        for cond in cfg.conditions:
            spec = _distilled_spec(cond, model, len(cfg.models)) if cond.kind == "distilled" else model
            if spec not in loaded:
                loaded.clear()  # one model in memory at a time
                loaded[spec] = load_model(spec, device=cfg.device, dtype=cfg.dtype)
                lm = loaded[spec]
                report.models[spec] = {**lm.describe(), "slot": model}
                for caveat in lm.caveats:
                    say(f"{spec}: {caveat}")
            lm = loaded[spec]
            engine = Engine(lm, batch_size=cfg.batch_size, progress=False)
            variants: list[Any] = [None]
            if cfg.format_variants and cond.framed:
                variants += format_variants(lm.tokenizer)
            for variant in variants:
                for name, ev in evals.items():
                    ctx = EvalContext(engine=engine, condition=cond, prompt=prompt, data_dir=cfg.data_dir,
                                      limit=cfg.limit, seed=cfg.seed, batch_size=cfg.batch_size,
                                      progress=cfg.progress, run=run, variant=variant, options=cfg.options)
                    label = f"{model} {cond.label}{'/' + variant.name if variant else ''} {name}"

                    def bump(n: int, total: int, label: str = label) -> None:
                        if on_progress:
                            on_progress(label, n, total)

                    outcome = run_eval(ev, ctx, model=model, progress=bump)
                    report.outcomes.append(outcome)
                    say(f"{label}: {len(outcome.results)} items in {outcome.seconds:.1f}s "
                        f"({outcome.n_resumed} resumed)")
    return report

