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

from hhhlab.errors import DataError
from hhhlab.pmp.config import BASE_LR, FINETUNE_LR_FACTOR, PMP_LR_FACTOR, FinetuneConfig, PMPConfig
from hhhlab.pmp.synthetic import LABELS, SCRAMBLES, SymbolTask


def _ints(v):
    return [int(x) for x in v.split(",") if x.strip()] if isinstance(v, str) else v


def _strs(v):
    return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


class SyntheticSweepConfig(BaseModel):
    """The synthetic experiment (App. C.6). The defaults — all six conditions on the paper's 676
    symbols — run in minutes on 2 CPU cores: see docs/pmp.md, "The synthetic experiment".

    Two defaults differ from the real-data PMP stage, on purpose (both are flags):

    * ``lm_weight = 0`` (PM loss only). The paper's (1, 1) adds an LM term on sequences such as
      ``(AC)(AC)(AC)(AC)``: learning to repeat a symbol, which is not what the experiment is
      about, costs three quarters of each step (the LM head over SmolLM2's 49,152 tokens at every
      target token), and its loss (about 25 nats per pair at the start against the PM term's 0.69)
      swamps the PM gradient, so 2,048 T1 pairs at (1, 1) moved held-out T0 accuracy only to 0.575.
    * ``base_lr = 1e-2`` (PMP 1e-3, fine-tuning 1e-4: the paper's 0.1x / 0.01x of it). A fresh
      scalar head on a one-block trunk has to learn an arbitrary order of 676 symbols; at 3e-3
      (PMP 3e-4) a few thousand pairs barely start."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2-135m@L1", description="model spec (a small rung or a tiny model; with "
                       "--lm-weight 1 most of a step is the LM head, so deeper rungs cost little more)")
    conditions: list[str] = Field(["none", "Tb", "T1", "T2", "T3", "T4"],
                                  description="pre-training data: none, Tb (binary), T1-T4 (scrambled ranked)")
    letters: int = Field(26, ge=2, le=26, description="symbols = letters² ordered pairs (the paper: 26 -> 676)")
    repeats: int = Field(4, ge=1, description="symbol repeats per sequence: (AC)(AC)(AC)(AC)")
    pmp_pairs: int = Field(4096, ge=1, description="pre-training pairs per condition (one epoch; each of the 676 "
                           "symbols is compared about 12 times)")
    sizes: list[int] = Field([0, 64, 256, 1024], description="fine-tuning pair counts on T0")
    eval_pairs: int = Field(200, ge=1, description="held-out T0 pairs (symbol pairs not in the fine-tuning set)")
    base_lr: float = Field(1e-2, gt=0, description="base rate of the paper's 0.1x (PMP) / 0.01x (fine-tuning); "
                           f"above the real-data stage's {BASE_LR:g} (see the class docstring)")
    pmp_lr: float | None = Field(None, gt=0, description="PMP learning rate (default 0.1 x base_lr)")
    finetune_lr: float | None = Field(None, gt=0, description="fine-tuning rate (default 0.01 x base_lr)")
    pmp_batch_size: int = Field(32, ge=1)
    finetune_batch_size: int = Field(16, ge=1)
    finetune_epochs: float = Field(1.0, gt=0)
    pm_weight: float = Field(1.0, ge=0)
    lm_weight: float = Field(0.0, ge=0, description="μ of λ·L_PM + μ·L_LM (0: PM only, see the class docstring; "
                             "the paper's default is 1)")
    max_length: int = Field(64, ge=8)
    eval_batch_size: int = Field(128, ge=1, description="responses per forward pass when evaluating")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="training precision (bfloat16: autocast; "
                                                  "not clearly faster on a loaded 2-core AVX512-BF16 CPU)")
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


RUNNER_VERSION = 2
"""Part of every synthetic cell's key: results of the earlier one-run-per-cell runner are not reused."""


def _synthetic_train_config(cfg: SyntheticSweepConfig, output: Path, *, lr: float, batch_size: int,
                            max_steps: int | None = None, epochs: float = 1.0):
    """A cell's `TrainConfig`: the preference objective, no checkpoints (cells are short, see
    `hhhlab.pmp.inprocess`), no run record."""
    from hhhlab.train.config import TrainConfig

    return TrainConfig(model=cfg.model, objective="preference", train=str(output / "in-memory"), output=str(output),
                       max_steps=max_steps, epochs=epochs, batch_size=batch_size, lr=lr, pm_weight=cfg.pm_weight,
                       lm_weight=cfg.lm_weight, dtype=cfg.dtype, device=cfg.device, max_length=cfg.max_length, seed=cfg.seed,
                       checkpoint_every=1_000_000, final_checkpoint=False, progress=cfg.progress,
                       record_run=False, log_every=1)


def run_synthetic(cfg: SyntheticSweepConfig) -> dict:
    """Pre-train each condition, fine-tune each on T0 at every size, tabulate, plot.

    One process, one model load (`hhhlab.pmp.inprocess`): PMP trains a copy of the base model
    on pairs drawn on demand (`SyntheticPairSource`); every fine-tuning size trains a copy of the
    condition's starting model on the first n pairs of one fixed shuffle of the T0 fine-tuning
    set (`finetune_order`), and is evaluated on the held-out T0 pairs tokenised once."""
    import time

    import torch

    from hhhlab.data.schema import read_jsonl
    from hhhlab.pmp.analysis import pairs_saved
    from hhhlab.pmp.finetune import evaluate_encoded, finetune_order
    from hhhlab.pmp.inprocess import cached, save_cell, train_copy
    from hhhlab.pmp.synthetic import SyntheticPairSource
    from hhhlab.results import write_results
    from hhhlab.train.data import DataStats
    from hhhlab.train.objectives import get_objective
    from hhhlab.train.preference_model import PreferenceModel
    from hhhlab.train.sources import MemorySource

    t0 = time.perf_counter()
    out = Path(cfg.output)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    task = SymbolTask(letters=cfg.letters, repeats=cfg.repeats, seed=cfg.seed)
    tag = f"L{cfg.letters}-r{cfg.repeats}-s{cfg.seed}"  # data files are named by what makes them
    ft_train = data / f"T0-finetune-{max(cfg.sizes)}-{tag}.jsonl"
    ft_eval = data / f"T0-eval-{cfg.eval_pairs}-{tag}.jsonl"
    if not ft_eval.exists() or not ft_train.exists():
        task.write("T0", max(cfg.sizes), ft_train, seed=1)
        seen = {g.metadata["split_key"] for g in read_jsonl(ft_train)}
        task.write("T0", cfg.eval_pairs, ft_eval, seed=2, exclude=seen)
    pmp_lr = cfg.pmp_lr or PMP_LR_FACTOR * cfg.base_lr
    ft_lr = cfg.finetune_lr or FINETUNE_LR_FACTOR * cfg.base_lr
    common = {"runner": RUNNER_VERSION, "model": cfg.model, "dtype": cfg.dtype, "letters": cfg.letters, "repeats": cfg.repeats,
              "task_seed": cfg.seed, "weights": [cfg.pm_weight, cfg.lm_weight], "max_length": cfg.max_length}

    # how a group becomes tokens depends on (λ, μ) only (μ > 0: LM targets), not on the rate
    objective = get_objective("preference")(_synthetic_train_config(cfg, out, lr=ft_lr, batch_size=1))
    base: PreferenceModel | None = None  # loaded on first need: a fully cached sweep loads nothing
    encoded: dict[str, list] = {}

    def base_model() -> PreferenceModel:
        nonlocal base
        if base is None:
            torch.manual_seed(cfg.seed)  # the no-PMP head: fresh, seeded (n = 0 is chance)
            base = PreferenceModel.from_lm(cfg.model, scoring="head", device=cfg.device, dtype="float32",
                                           max_length=cfg.max_length)
            stats = DataStats()
            for name, groups in (("train", finetune_order(list(read_jsonl(ft_train)), cfg.seed)),
                                 ("eval", list(read_jsonl(ft_eval)))):
                encoded[name] = [e for i, g in enumerate(groups) if (e := objective.encode(
                    g, i, base.tokenizer, base.max_length, stats)) is not None]
        return base

    def encode_pmp(record, index, stats):
        pm = base_model()
        return objective.encode(record, index, pm.tokenizer, pm.max_length, stats)

    def pmp_model(cond: str) -> tuple[PreferenceModel, dict]:
        """The condition's pre-trained model: loaded if saved with this key, else trained and saved."""
        key = {**common, "dataset": cond, "pairs": cfg.pmp_pairs, "batch": cfg.pmp_batch_size, "lr": pmp_lr,
               "seed": cfg.seed}
        cell_dir = out / f"pmp-{cond}"
        done = cached(cell_dir / "cell.json", key)
        if done is not None and (cell_dir / "model" / "pm_config.json").exists():
            return PreferenceModel.from_pretrained(cell_dir / "model", device=cfg.device), done
        init = base_model()
        source = SyntheticPairSource(task, cond, cfg.pmp_pairs, cfg.pmp_batch_size, encode_pmp, seed=3)
        tcfg = _synthetic_train_config(cfg, cell_dir, lr=pmp_lr, batch_size=cfg.pmp_batch_size,
                                       max_steps=source.steps_per_epoch)
        pm, summary = train_copy(init, tcfg, source)
        pm.save_pretrained(cell_dir / "model")
        return pm, save_cell(cell_dir / "cell.json", key, {
            "steps": summary["step"], "train_seconds": summary["train_seconds"], "loss_history": summary["history"]})

    curves: dict[str, list[dict]] = {}
    timings: dict[str, float] = {}
    pmp_cells: dict[str, dict] = {}
    for cond in cfg.conditions:
        c0 = time.perf_counter()
        init: PreferenceModel | None = None
        pmp_key: dict | str = "none"
        if cond != "none":
            pmp_key = {"dataset": cond, "pairs": cfg.pmp_pairs, "batch": cfg.pmp_batch_size, "lr": pmp_lr}
        points = []
        for n in sorted(set(cfg.sizes)):
            key = {**common, "init": pmp_key, "n": n, "lr": ft_lr, "batch": cfg.finetune_batch_size,
                   "epochs": cfg.finetune_epochs, "seed": cfg.seed, "eval_pairs": cfg.eval_pairs}
            path = out / f"ft-{cond}" / f"n{n}" / "eval.json"
            result = cached(path, key)
            if result is None:
                if init is None:
                    if cond == "none":
                        init = base_model()
                    else:
                        init, pmp_cells[cond] = pmp_model(cond)
                    base_model()  # the tokenised fine-tuning and held-out sets
                assert init is not None
                if n == 0:
                    pm, seconds = init, 0.0
                else:
                    batch = min(cfg.finetune_batch_size, n)
                    items = encoded["train"][:n]
                    source = MemorySource(items, batch_size=batch, seed=cfg.seed, length_grouped=True)
                    tcfg = _synthetic_train_config(cfg, path.parent, lr=ft_lr, batch_size=batch,
                                                   epochs=cfg.finetune_epochs)
                    pm, summary = train_copy(init, tcfg, source)
                    seconds = summary["train_seconds"]
                result = save_cell(path, key, {"n": n, "train_seconds": seconds, **evaluate_encoded(
                    pm, encoded["eval"], batch_size=cfg.eval_batch_size)})
                del pm
            points.append({"n": n, "condition": LABELS[cond], "target": "T0", "model": cfg.model,
                           **{k: v for k, v in result.items() if k != "key"}})
        curves[cond] = points
        timings[cond] = time.perf_counter() - c0
        del init
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
               "pmp_train_seconds": {c: v["train_seconds"] for c, v in pmp_cells.items()},
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
    targets: list[str] = Field(..., description="fine-tuning targets: [NAME=]TRAIN.jsonl:EVAL.jsonl pairs, comma-separated "
                               "(NAME: the eval file's stem, or its folder's for test.jsonl)")
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


GENERIC_STEMS = {"test", "eval", "validation", "val", "dev", "train"}


def parse_target(text: str) -> tuple[str, str, str]:
    """``[NAME=]TRAIN.jsonl:EVAL.jsonl`` -> (name, train, eval). Without ``NAME=`` the name is the
    eval file's stem less ``_test``/``.test`` — or, for a generic stem such as ``test.jsonl``
    (what ``hhhlab data split`` writes), its folder's name less ``_split``."""
    name, eq, rest = text.partition("=")
    if not eq or ":" in name:
        name, rest = "", text
    train, sep, ev = rest.partition(":")
    if not sep or not train or not ev:
        raise DataError(f"target {text!r}: expected [NAME=]TRAIN.jsonl:EVAL.jsonl")
    if not name:
        stem = Path(ev).name.split(".")[0]
        name = stem.removesuffix("_test")
        if name in GENERIC_STEMS:
            name = Path(ev).resolve().parent.name.removesuffix("_split") or name
    return name, train, ev


def run_sweep(cfg: PMPSweepConfig) -> dict:
    from hhhlab.pmp.analysis import mean_gain_curve, pairs_saved
    from hhhlab.pmp.finetune import run_finetune
    from hhhlab.pmp.pretrain import run_pmp
    from hhhlab.results import write_results

    targets = [parse_target(t) for t in cfg.targets]
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
            if cond != "none":
                gains[f"{model}|{cond}"] = mean_gain_curve([p for p in points if p["model"] == model], cond)
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
