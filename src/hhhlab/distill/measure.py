"""Measuring a distilled model: plain vs prompted vs distilled on the same eval items.

``fraction_of_gain_kept``: ``(distilled − plain) / (prompt − plain)`` of a per-item metric, with
a paired bootstrap CI (items resampled together across the three conditions). Undefined (NaN)
where the prompt brings no gain on a resample; the CI is then over the defined resamples, and
``n_undefined`` says how many were not.

``compare_conditions`` runs the evals for the three conditions in one suite (`evals.runner`),
and adds the context cost: context tokens per item with the prompt and without it, and seconds
per item for each condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hhhlab.stats import Estimate, paired_difference


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


def compare_conditions(model: str, distilled: str, evals: list[str], *, limit: int | None, data_dir: Path | None,
                       seed: int = 0, batch_size: int = 16) -> dict:
    """Plain, prompt and distilled:``distilled`` on ``evals`` (the same seeded item subset)."""
    from hhhlab.evals.base import parse_conditions
    from hhhlab.evals.runner import SuiteConfig, run_suite
    from hhhlab.models.load import load_model
    from hhhlab.prompts import load_prompt

    cfg = SuiteConfig(models=[model], evals=evals, conditions=parse_conditions(f"plain,prompt,distilled:{distilled}"),
                      limit=limit, data_dir=data_dir, seed=seed, batch_size=batch_size, dtype="float32",
                      device="cpu", progress=False)
    report = run_suite(cfg)
    tok = load_model(model, dtype="float32").tokenizer
    prompt_tokens = len(tok(load_prompt(None).text + load_prompt(None).separator, add_special_tokens=False)["input_ids"])
    table: list[dict] = []
    fractions: dict[str, dict] = {}
    cost: dict[str, dict] = {}
    for ev in evals:
        by = {c: report.outcome(model, c, ev) for c in ("plain", "prompt", "distilled")}
        for c, o in by.items():
            if o is None:
                continue
            for metric, est in o.metrics.items():
                table.append({"eval": ev, "condition": c, "metric": metric, **est.to_dict()})
            cost.setdefault(ev, {})[c] = {"seconds_per_item": o.seconds / max(o.n_items, 1), "n_items": o.n_items}
        cost.setdefault(ev, {})["prompt_context_tokens_per_item"] = prompt_tokens
        if all(by.values()):
            for metric in by["plain"].values:  # type: ignore[union-attr]
                got = [by[c].values.get(metric) for c in ("plain", "prompt", "distilled")]  # type: ignore[union-attr]
                if not all(got):
                    continue
                pl, pr, di = (v for v in got if v is not None)
                fractions[f"{ev}/{metric}"] = {**fraction_of_gain_kept(pl, pr, di, seed=seed),
                                               "prompt_gain": _diff(pr, pl, seed), "distilled_gain": _diff(di, pl, seed)}
    return {"model": model, "distilled": distilled, "table": table, "fraction_of_gain_kept": fractions,
            "context_cost": cost, "report": report.to_dict()}


def _diff(a: Mapping[str, float], b: Mapping[str, float], seed: int) -> dict:
    ids = sorted(set(a) & set(b))
    est: Estimate = paired_difference([a[i] for i in ids], [b[i] for i in ids], seed=seed)
    return est.to_dict()
