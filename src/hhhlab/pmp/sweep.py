"""``hhhlab sweep pmp-synthetic`` (App. C.6, Fig 33) and ``hhhlab sweep pmp`` (Figs 4, 5, 17, 18, 29).

Both are grids of cells, each cell its own resumable run directory under ``OUTPUT``: a PMP
cell (`run_pmp`) per (model, pre-training condition), and a fine-tuning cell (`run_finetune`,
every n) per (model, condition, target). Re-running the command skips finished cells and
resumes an interrupted one from its checkpoint. The sweep's document (``OUTPUT/results.json``)
holds every point, the pairs-saved table and the figure paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hhhlab.pmp.config import BASE_LR, FINETUNE_LR_FACTOR, PMP_LR_FACTOR, FinetuneConfig, PMPConfig
from hhhlab.pmp.synthetic import LABELS, SCRAMBLES, SymbolTask


def _ints(v):
    return [int(x) for x in v.split(",") if x.strip()] if isinstance(v, str) else v


def _strs(v):
    return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class SyntheticSweepConfig(BaseModel):
    """The synthetic experiment. Defaults run in minutes on 2 CPU cores with the small rung."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m@L2", description="model spec (a small rung or a tiny model)")
    conditions: list[str] = Field(["none", "Tb", "T1", "T2", "T3", "T4"],
                                  description="pre-training data: none, Tb (binary), T1-T4 (scrambled ranked)")
    letters: int = Field(26, ge=2, le=26, description="symbols = letters² ordered pairs (the paper: 26 -> 676)")
    repeats: int = Field(4, ge=1, description="symbol repeats per sequence: (AC)(AC)(AC)(AC)")
    pmp_pairs: int = Field(1024, ge=1, description="pre-training pairs per condition (one epoch)")
    sizes: list[int] = Field([0, 16, 64, 256], description="fine-tuning pair counts on T0")
    eval_pairs: int = Field(200, ge=1, description="held-out T0 pairs (symbol pairs not in the fine-tuning set)")
    base_lr: float = Field(BASE_LR, gt=0, description="base rate of the paper's 0.1x (PMP) / 0.01x (fine-tuning)")
    pmp_lr: float | None = Field(None, gt=0, description="PMP learning rate (default 0.1 x base_lr)")
    finetune_lr: float | None = Field(None, gt=0, description="fine-tuning rate (default 0.01 x base_lr)")
    pmp_batch_size: int = Field(32, ge=1)
    finetune_batch_size: int = Field(16, ge=1)
    finetune_epochs: float = Field(1.0, gt=0)
    pm_weight: float = Field(1.0, ge=0)
    lm_weight: float = Field(1.0, ge=0)
    max_length: int = Field(64, ge=8)
    output: str = Field(..., description="output directory (one sub-directory per cell)")
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    _lists = field_validator("sizes", mode="before")(lambda cls, v: _ints(v))
    _conds = field_validator("conditions", mode="before")(lambda cls, v: _strs(v))

    @field_validator("conditions")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if c not in LABELS]
        if bad:
            raise ValueError(f"unknown conditions {bad}: choose from {', '.join(LABELS)}")
        return v


def run_synthetic(cfg: SyntheticSweepConfig) -> dict:
    """Write the data, pre-train each condition, fine-tune each on T0, tabulate, plot."""
    import time

    from hhhlab.pmp.analysis import pairs_saved
    from hhhlab.pmp.finetune import run_finetune
    from hhhlab.pmp.pretrain import run_pmp
    from hhhlab.results import write_results

    t0 = time.perf_counter()
    out = Path(cfg.output)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    task = SymbolTask(letters=cfg.letters, repeats=cfg.repeats, seed=cfg.seed)
    tag = f"L{cfg.letters}-r{cfg.repeats}-s{cfg.seed}"  # data files are named by what makes them
    ft_train = data / f"T0-finetune-{max(cfg.sizes)}-{tag}.jsonl"
    ft_eval = data / f"T0-eval-{cfg.eval_pairs}-{tag}.jsonl"
    if not ft_eval.exists():
        task.write("T0", max(cfg.sizes), ft_train, seed=1)
        from hhhlab.data.schema import read_jsonl

        seen = {g.metadata["split_key"] for g in read_jsonl(ft_train)}
        task.write("T0", cfg.eval_pairs, ft_eval, seed=2, exclude=seen)
    pmp_lr = cfg.pmp_lr or PMP_LR_FACTOR * cfg.base_lr
    ft_lr = cfg.finetune_lr or FINETUNE_LR_FACTOR * cfg.base_lr
    curves: dict[str, list[dict]] = {}
    timings: dict[str, float] = {}
    for cond in cfg.conditions:
        c0 = time.perf_counter()
        init = cfg.model
        if cond != "none":
            src = data / f"{cond}-pmp-{cfg.pmp_pairs}-{tag}.jsonl"
            if not src.exists():
                task.write(cond, cfg.pmp_pairs, src, seed=3)
            pmp = PMPConfig(model=cfg.model, sources=[str(src)], mode="ranked", pm_weight=cfg.pm_weight,
                            lm_weight=cfg.lm_weight, lr=pmp_lr, batch_size=cfg.pmp_batch_size,
                            output=str(out / f"pmp-{cond}"), max_length=cfg.max_length, seed=cfg.seed,
                            device=cfg.device, progress=cfg.progress, checkpoint_every=10_000)
            run_pmp(pmp)
            init = str(out / f"pmp-{cond}")
        ft = FinetuneConfig(init=init, model=cfg.model, train=str(ft_train), eval=str(ft_eval), sizes=cfg.sizes,
                            epochs=cfg.finetune_epochs, lr=ft_lr, batch_size=cfg.finetune_batch_size,
                            pm_weight=cfg.pm_weight, lm_weight=cfg.lm_weight, output=str(out / f"ft-{cond}"),
                            max_length=cfg.max_length, seed=cfg.seed, device=cfg.device, progress=cfg.progress)
        curves[cond] = [{**p, "condition": LABELS[cond], "target": "T0"}
                        for p in run_finetune(ft, label=LABELS[cond])["points"]]
        timings[cond] = time.perf_counter() - c0
    saved = {}
    if "none" in curves:
        for cond, pts in curves.items():
            if cond != "none":
                saved[LABELS[cond]] = pairs_saved(pts, curves["none"], seed=cfg.seed)
    points = [p for pts in curves.values() for p in pts]
    figures = {}
    try:
        from hhhlab.report.pmp_figures import fig33_synthetic

        figures["fig33"] = str(fig33_synthetic(points, out / "fig33_synthetic.png", model=cfg.model,
                                               letters=cfg.letters))
    except ImportError:  # matplotlib missing: the numbers are still written
        pass
    estimates = {f"{p['condition']}@{p['n']}": p["accuracy"] for p in points}
    payload = {"points": points, "pairs_saved_vs_no_pmp": saved, "figures": figures,
               "scrambles": {k: SCRAMBLES[k] for k in ("T1", "T2", "T3", "T4")}, "symbols": len(task.symbols),
               "pmp_lr": pmp_lr, "finetune_lr": ft_lr, "cell_seconds": timings,
               "wall_seconds": time.perf_counter() - t0}
    write_results(out / "results.json", "sweep_pmp_synthetic", config=cfg.model_dump(), estimates=estimates,
                  payload=payload, models=[cfg.model])
    return payload


class PMPSweepConfig(BaseModel):
    """Models x pre-training conditions x targets x n (Figs 4, 5, 17, 18, 29)."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(["smollm2-135m@L2", "smollm2-135m@L4"], description="model specs (a ladder)")
    sources: list[str] = Field(..., description="PMP sources (preference-group JSONL), comma-separated")
    conditions: list[Literal["none", "binarized", "ranked", "pm_only", "lm_only"]] = Field(
        ["none", "binarized", "ranked"], description="none (no PMP), binarized / ranked PMP (λ, μ = 1, 1), and the "
        "Fig 29 ablation: pm_only (1, 0) and lm_only (0, 1) binarized PMP")
    targets: list[str] = Field(..., description="fine-tuning targets: TRAIN.jsonl:EVAL.jsonl pairs, comma-separated")
    sizes: list[int] = Field([0, 32, 128, 512], description="fine-tuning pair counts")
    pmp_steps: int | None = Field(None, ge=1, description="PMP steps (default one epoch)")
    max_pairs: int | None = Field(None, ge=1, description="first N groups of each PMP source")
    pmp_batch_size: int = 32
    finetune_batch_size: int = 32
    base_lr: float = BASE_LR
    max_eval: int | None = Field(None, ge=1)
    max_length: int = 256
    output: str = Field(...)
    seed: int = 0
    device: str = "cpu"
    progress: bool = False

    _ints = field_validator("sizes", mode="before")(lambda cls, v: _ints(v))
    _strs = field_validator("models", "sources", "targets", "conditions", mode="before")(lambda cls, v: _strs(v))


def run_sweep(cfg: PMPSweepConfig) -> dict:
    from hhhlab.errors import DataError
    from hhhlab.pmp.analysis import mean_gain, pairs_saved
    from hhhlab.pmp.finetune import run_finetune
    from hhhlab.pmp.pretrain import run_pmp
    from hhhlab.results import write_results

    targets = []
    for t in cfg.targets:
        train, sep, ev = t.partition(":")
        if not sep:
            raise DataError(f"target {t!r}: expected TRAIN.jsonl:EVAL.jsonl")
        targets.append((Path(ev).stem.replace("_test", "").replace(".test", ""), train, ev))
    out = Path(cfg.output)
    weights = {"binarized": (1.0, 1.0), "ranked": (1.0, 1.0), "pm_only": (1.0, 0.0), "lm_only": (0.0, 1.0)}
    points = []
    for model in cfg.models:
        tag = model.replace("/", "_").replace(":", "_").replace(",", "_")
        for cond in cfg.conditions:
            init = model
            if cond != "none":
                pm_w, lm_w = weights[cond]
                pmp_dir = out / tag / f"pmp-{cond}"
                run_pmp(PMPConfig(model=model, sources=cfg.sources, mode="ranked" if cond == "ranked" else "binarized",
                                  pm_weight=pm_w, lm_weight=lm_w, base_lr=cfg.base_lr, batch_size=cfg.pmp_batch_size,
                                  max_steps=cfg.pmp_steps, max_pairs=cfg.max_pairs, output=str(pmp_dir),
                                  max_length=cfg.max_length, seed=cfg.seed, device=cfg.device, progress=cfg.progress))
                init = str(pmp_dir)
            for name, train, ev in targets:
                res = run_finetune(FinetuneConfig(init=init, model=model, train=train, eval=ev, sizes=cfg.sizes,
                                                  base_lr=cfg.base_lr, batch_size=cfg.finetune_batch_size,
                                                  max_eval=cfg.max_eval, output=str(out / tag / f"ft-{cond}-{name}"),
                                                  max_length=cfg.max_length, seed=cfg.seed, device=cfg.device,
                                                  progress=cfg.progress), label=cond)
                points += [{**p, "condition": cond, "target": name, "model": model} for p in res["points"]]
    saved, gains = [], {}
    for model in cfg.models:
        for name, _, _ in targets:
            base = [p for p in points if p["model"] == model and p["target"] == name and p["condition"] == "none"]
            for cond in cfg.conditions:
                pts = [p for p in points if p["model"] == model and p["target"] == name and p["condition"] == cond]
                if base and cond != "none":
                    saved += [{"model": model, "target": name, "condition": cond, **row}
                              for row in pairs_saved(pts, base, seed=cfg.seed)]
        for cond in cfg.conditions:
            if cond == "none":
                continue
            curves = {t: [p for p in points if p["model"] == model and p["target"] == t and p["condition"] == cond]
                      for t, _, _ in targets}
            bases = {t: [p for p in points if p["model"] == model and p["target"] == t and p["condition"] == "none"]
                     for t, _, _ in targets}
            gains[f"{model}|{cond}"] = mean_gain(curves, bases)
    figures = {}
    try:
        from hhhlab.report import pmp_figures

        figures = pmp_figures.sweep_figures(points, out)
    except ImportError:
        pass
    payload = {"points": points, "pairs_saved": saved, "mean_gain": gains, "figures": figures}
    write_results(out / "results.json", "sweep_pmp", config=cfg.model_dump(),
                  estimates={f"{p['model']}|{p['condition']}|{p['target']}@{p['n']}": p["accuracy"] for p in points},
                  payload=payload, models=cfg.models)
    return payload
