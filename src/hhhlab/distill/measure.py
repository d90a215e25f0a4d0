"""Measuring a distilled model: plain vs prompted vs distilled on the same eval items.

``fraction_of_gain_kept``: ``(distilled − plain) / (prompt − plain)`` of a per-item metric, with
a paired bootstrap CI (items resampled together across the three conditions). Undefined (NaN)
where the prompt brings no gain on a resample; the CI is then over the defined resamples, and
``n_undefined`` says how many were not.

``compare_conditions`` (``hhhlab distill compare``) runs the evals for the three conditions in
one suite (`evals.runner`, one store run, resumable) for each model of a ladder, each with its
own student (``--distilled ckpts/{model}-student``), and writes a results document of kind
``distill_compare``. Per model (``payload.ladder[i]``), per eval and metric (hhh_alignment's
``acc`` and ``acc_mi``, per category too):

* ``metrics``: the metric under plain, prompt and distilled (bootstrap CIs over items);
* ``prompt_gain`` / ``distilled_gain``: prompt − plain and distilled − plain, paired;
* ``fraction_of_gain_kept``: the ratio above, paired bootstrap over the items all three share;
* ``context_cost``: context tokens per item under each condition (the prompt's tokens are what
  distillation saves: ``prompt_tokens_saved_per_item``), seconds per item and items/s per
  condition (timed over the items scored in this call; the first condition of a model also pays
  the engine's warm-up).

The flat estimates repeat these as ``MODEL/CONDITION/EVAL/METRIC``,
``MODEL/EVAL/METRIC/{fraction_of_gain_kept,prompt_gain,distilled_gain}`` and
``MODEL/EVAL/context_tokens_per_item/CONDITION``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hhhlab.distill.config import CompareConfig
from hhhlab.errors import HHHLabError
from hhhlab.stats import Estimate, bootstrap, paired_difference

if TYPE_CHECKING:
    from hhhlab.evals.runner import SuiteConfig, SuiteReport


def fraction_of_gain_kept(plain: Mapping[str, float], prompt: Mapping[str, float], distilled: Mapping[str, float],
                          *, n_boot: int = 2000, seed: int = 0) -> dict:
    """The share of the prompt's gain that distillation keeps, over the items all three share."""
    ids = sorted(set(plain) & set(prompt) & set(distilled))
    x = np.array([[plain[i], prompt[i], distilled[i]] for i in ids], dtype=float)  # [n, 3]
    if len(ids) == 0:
        return {"value": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0, "method": "paired-bootstrap",
                "n_undefined": 0}

    def ratio(m: np.ndarray) -> float:
        gain = m[:, 1].mean() - m[:, 0].mean()
        return float((m[:, 2].mean() - m[:, 0].mean()) / gain) if gain != 0 else float("nan")

    rng = np.random.default_rng(seed)
    boots = np.array([ratio(x[rng.integers(0, len(ids), len(ids))]) for _ in range(n_boot)])
    ok = boots[np.isfinite(boots)]
    lo, hi = (float(np.quantile(ok, 0.025)), float(np.quantile(ok, 0.975))) if len(ok) else (float("nan"),) * 2
    return {"value": ratio(x), "lo": lo, "hi": hi, "n": len(ids), "method": "paired-bootstrap",
            "n_undefined": int(n_boot - len(ok))}


CONDITIONS = ("plain", "prompt", "distilled")


def suite_config(cfg: CompareConfig) -> SuiteConfig:
    """The eval suite of a comparison: every model under plain, prompt and distilled:DIR."""
    from hhhlab.evals.base import Condition, parse_evals
    from hhhlab.evals.runner import SuiteConfig
    from hhhlab.models.load import expand_model_list

    models = expand_model_list(cfg.model)
    if not models:
        raise HHHLabError(f"--model {cfg.model!r} names no model")
    if len(models) > 1 and "{model}" not in cfg.distilled:
        raise HHHLabError(f"--distilled {cfg.distilled!r} names one checkpoint but {len(models)} models are "
                          "compared; put '{model}' in it (e.g. ckpts/{model}-student)")
    return SuiteConfig(models=models, evals=parse_evals(cfg.evals),
                       conditions=[Condition("plain"), Condition("prompt"), Condition("distilled", cfg.distilled)],
                       limit=cfg.limit, data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
                       batch_size=cfg.batch_size, dtype=cfg.dtype, device=cfg.device,
                       prompt_path=None if cfg.prompt == "hhh" else cfg.prompt, seed=cfg.seed,
                       progress=cfg.progress)


def context_tokens(suite: SuiteConfig, model: str) -> dict[str, dict[str, list[int]]]:
    """Context tokens per item, ``{eval: {condition: [n_items]}}``: the longest context among
    the item's requests, as the engine tokenises it (the prompt's tokens are in it when prompted).
    Plain and distilled read the same tokens but for the Human/Assistant framing; what the
    distilled model saves is the prompt."""
    from hhhlab.evals.base import EvalContext, get_eval, select
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model
    from hhhlab.prompts import load_prompt

    engine = Engine(load_model(model, device="cpu", dtype="float32"))  # the tokenizer is all it uses
    prompt = load_prompt(suite.prompt_path)
    out: dict[str, dict[str, list[int]]] = {}
    for name in suite.evals:
        ev = get_eval(name)
        for cond in suite.conditions:
            ctx = EvalContext(engine=engine, condition=cond, prompt=prompt, data_dir=suite.data_dir,
                              limit=suite.limit, seed=suite.seed)
            try:
                items = select(ev.load(ctx), suite.limit, suite.seed)
                out.setdefault(name, {})[cond.kind] = [
                    max(len(engine.encode_pair(r.context, r.continuation)[0]) for r in ev.requests(it, ctx))
                    for it in items]
            except NotImplementedError:  # an eval that generates instead of scoring requests
                break
    return out


def compare_conditions(cfg: CompareConfig, *, run: Any = None,
                       on_progress: Callable[[str, int, int], None] | None = None,
                       log: Callable[[str], None] | None = None) -> dict:
    """Plain, prompt and distilled on ``cfg.evals`` for every model of ``cfg.model`` (the same
    seeded item subset under every condition), as a results document of kind
    ``distill_compare`` (see the module docstring for what it holds)."""
    from hhhlab.evals.runner import run_suite
    from hhhlab.results import make_results

    suite = suite_config(cfg)
    report = run_suite(suite, run=run, on_progress=on_progress, log=log)
    estimates: dict[str, Mapping[str, Any]] = {}
    ladder = []
    for model in suite.models:
        entry = _compare_model(report, model, suite, cfg, context_tokens(suite, model))
        ladder.append(entry)
        for ev, by_metric in entry["metrics"].items():
            for metric, by_cond in by_metric.items():
                for cond, est in by_cond.items():
                    estimates[f"{model}/{cond}/{ev}/{metric}"] = est
        for part in ("fraction_of_gain_kept", "prompt_gain", "distilled_gain"):
            for ev, by_metric in entry[part].items():
                for metric, est in by_metric.items():
                    estimates[f"{model}/{ev}/{metric}/{part}"] = est
        for ev, cost in entry["context_cost"].items():
            for cond, est in cost.get("context_tokens_per_item", {}).items():
                estimates[f"{model}/{ev}/context_tokens_per_item/{cond}"] = est
    payload = {"ladder": ladder, "prompt_version": report.prompt_version, "models": report.models,
               "evals": suite.evals, "suite": report.to_dict()}
    return make_results("distill_compare", config=cfg.model_dump(), estimates=estimates, payload=payload,
                        models=list(report.models), prompt_version=report.prompt_version,
                        dtype=cfg.dtype, device=cfg.device)


def compare_identity(cfg: CompareConfig) -> dict[str, Any]:
    """What makes two compare runs the same, so that one may resume the other's stored items."""
    return {**suite_config(cfg).identity(), "n_boot": cfg.n_boot}


def compare_in_run(cfg: CompareConfig, run: Any, log: Callable[[str], None] | None = None) -> dict:
    """`compare_conditions` in a results-store run (each finished item is stored as it ends):
    the run is finished with the document, or, when it raises, marked failed with its items kept
    for a resume. ``hhhlab distill compare`` and the study's distill cells both run it."""
    try:
        doc = compare_conditions(cfg, run=run, log=log or run.log)
    except BaseException as exc:
        run.finish({"error": f"{type(exc).__name__}: {exc}", "items_stored": len(run.items())}, status="failed")
        raise
    doc["payload"]["run_id"] = run.run_id
    run.finish(doc)
    return doc


def _compare_model(report: SuiteReport, model: str, suite: SuiteConfig, cfg: CompareConfig,
                   tokens: dict[str, dict[str, list[int]]]) -> dict:
    """One model's rows: metrics per condition, the gains and the fraction kept, context cost."""
    metrics: dict[str, dict] = {}
    fractions: dict[str, dict] = {}
    prompt_gain: dict[str, dict] = {}
    distilled_gain: dict[str, dict] = {}
    cost: dict[str, dict] = {}
    for ev in suite.evals:
        by = {c: report.outcome(model, c, ev) for c in CONDITIONS}
        outs = {c: o for c, o in by.items() if o is not None}
        for c, o in outs.items():
            for metric, est in o.metrics.items():
                metrics.setdefault(ev, {}).setdefault(metric, {})[c] = est.to_dict()
        scored = {c: o.n_items - o.n_resumed for c, o in outs.items()}
        cost[ev] = {
            "n_items": {c: o.n_items for c, o in outs.items()},
            "n_resumed": {c: o.n_resumed for c, o in outs.items()},
            # seconds over the items scored in this call (a resumed item costs nothing here)
            "seconds_per_item": {c: o.seconds / scored[c] if scored[c] else None for c, o in outs.items()},
            "items_per_s": {c: scored[c] / o.seconds if scored[c] and o.seconds > 0 else None
                            for c, o in outs.items()},
        }
        if ev in tokens:
            t = tokens[ev]
            cost[ev]["context_tokens_per_item"] = {c: bootstrap(t[c], seed=cfg.seed).to_dict() for c in t}
            if "prompt" in t and "distilled" in t:
                cost[ev]["prompt_tokens_saved_per_item"] = paired_difference(
                    t["prompt"], t["distilled"], seed=cfg.seed).to_dict()
        if len(outs) < len(CONDITIONS):
            continue
        pl, pr, di = (outs[c].values for c in CONDITIONS)
        for metric in pl:
            if metric not in pr or metric not in di:
                continue
            fractions.setdefault(ev, {})[metric] = fraction_of_gain_kept(pl[metric], pr[metric], di[metric],
                                                                         n_boot=cfg.n_boot, seed=cfg.seed)
            prompt_gain.setdefault(ev, {})[metric] = _diff(pr[metric], pl[metric], cfg.seed)
            distilled_gain.setdefault(ev, {})[metric] = _diff(di[metric], pl[metric], cfg.seed)
    return {"model": model, "distilled": cfg.distilled.replace("{model}", model), "metrics": metrics, "fraction_of_gain_kept": fractions,
            "prompt_gain": prompt_gain, "distilled_gain": distilled_gain, "context_cost": cost}


def _diff(a: Mapping[str, float], b: Mapping[str, float], seed: int) -> dict:
    ids = sorted(set(a) & set(b))
    est: Estimate = paired_difference([a[i] for i in ids], [b[i] for i in ids], seed=seed)
    return est.to_dict()
