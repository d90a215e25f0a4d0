"""The paper's §3 sweep: imitation learning vs preference modeling, across model sizes and datasets.

A sweep is a grid of *cells* (model × objective × dataset), each one `train_and_evaluate` call of
`hhhlab.train`. Cells are keyed and recorded in the results store as soon as they finish, so a
resumed sweep (same ``--output``) never redoes a finished cell and never stores one twice; a
cell killed half-way resumes from its own last training checkpoint. Every cell of a dataset is
trained on the same N groups and evaluated on the same held-out groups, so the PM − IL gain
compares like with like.

The outputs are the paper's figures: accuracy vs non-embedding parameters per dataset, one line
per objective (Figs 14–15), and the PM − IL accuracy gain per dataset with ranked datasets in
one colour and binary in another, plus their means (Fig 3).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hhhlab import distributed
from hhhlab.errors import HHHLabError, describe_validation_error
from hhhlab.experiments.datasets import PreparedDataset, parse_datasets, prepare_dataset
from hhhlab.models.device import DEFAULT_DTYPE
from hhhlab.models.load import expand_model_list
from hhhlab.results import estimate_dict, make_results, read_results
from hhhlab.stats import INDEPENDENT, PAIRED, Estimate, paired_difference
from hhhlab.store import ResultsStore, atomic_write_json


class SweepConfig(BaseModel):
    """Everything that defines a sweep; the resolved copy is saved in its run directory."""

    # no inf/NaN: `--lr inf` or `--epochs inf` must be an error, not a run that diverges or never ends
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    models: str = Field("smollm2-135m@L2,@L4,@L8,@L15,smollm2-135m", description="ladder, comma-separated")
    objectives: str = Field("imitation,preference", description="imitation, preference, classifier")
    datasets: str = Field(..., description="names (hellaswag, ethics-utilitarianism, ...) or NAME=PATH")
    train_size: int | None = Field(1000, ge=1, description="training groups per dataset (None: all)")
    eval_size: int | None = Field(500, ge=1, description="held-out groups per dataset (None: all)")
    output: str = Field(..., description="sweep directory: data cache, cells, table, figures")
    data_dir: str | None = Field(None, description="local copies of the sources, laid out like shared/data")
    epochs: float = Field(1.0, gt=0, description="passes over each cell's training data (without max_steps)")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps per cell (default: epochs)")
    checkpoint_every: int = Field(100, ge=1, description="training checkpoint every N steps: a killed cell "
                                                          "resumes from its last one")
    batch_size: int = Field(8, ge=1, description="groups per optimizer step")
    lr: float = Field(1e-5, gt=0, description="peak learning rate (AdamW)")
    max_length: int = Field(512, ge=8, description="window per sequence; contexts are cut from the left")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        DEFAULT_DTYPE, description="auto (bf16 where the hardware has native bf16, else float32), float32, "
                                   "or bfloat16 autocast")
    lora: bool = Field(False, description="train LoRA adapters and the head instead of all weights")
    seed: int = Field(0, description="data sampling, splits and initialisation")
    progress: bool = Field(True, description="show progress bars")

    def model_list(self) -> list[str]:
        return expand_model_list(self.models)

    def objective_list(self) -> list[str]:
        from hhhlab.train.config import OBJECTIVE_ALIASES

        return [OBJECTIVE_ALIASES.get(o.strip(), o.strip()) for o in self.objectives.split(",") if o.strip()]


@dataclass(frozen=True)
class Cell:
    model: str
    objective: str
    dataset: str

    @property
    def key(self) -> str:
        return f"{self.dataset}|{self.objective}|{self.model}"

    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.@-]+", "_", f"{self.dataset}/{self.objective}/{self.model}")


# Settings that do not change a cell's result: changing them resumes the same run and cells.
NOT_RESULT_FIELDS = {"progress", "checkpoint_every"}


def settings_digest(cfg: SweepConfig) -> str:
    """Names the store run and the cells' training folders: another learning rate or step count
    must neither reuse finished cells nor hit the trainer's "checkpoint from other settings" stop."""
    settings = json.dumps(cfg.model_dump(exclude=NOT_RESULT_FIELDS), sort_keys=True)
    return hashlib.sha1(settings.encode()).hexdigest()[:10]


def cell_dir(cfg: SweepConfig, cell: Cell) -> Path:
    """A cell's training folder; its trained model is ``cell_dir(...) / "model"`` once it finished
    (what `hhhlab.experiments.rerank` loads to sample and score with)."""
    return Path(cfg.output) / "cells" / settings_digest(cfg) / cell.slug()


def cell_config(cfg: SweepConfig, cell: Cell, data: PreparedDataset):
    """The `TrainConfig` of one cell: the sweep's hyper-parameters, the cell's model and data."""
    from hhhlab.train.config import TrainConfig

    return TrainConfig(
        model=cell.model, objective=cell.objective, train=str(data.train), eval=str(data.test),
        output=str(cell_dir(cfg, cell)), epochs=cfg.epochs, max_steps=cfg.max_steps,
        checkpoint_every=cfg.checkpoint_every,
        batch_size=cfg.batch_size, lr=cfg.lr, max_length=cfg.max_length, dtype=cfg.dtype, lora=cfg.lora,
        seed=cfg.seed, progress=cfg.progress, record_run=False,
    )


def check_grid(cfg: SweepConfig) -> tuple[list[str], list[str]]:
    """The sweep's models and objectives (duplicates dropped), every cell's training settings
    validated before anything is built or trained: bad input fails at once, not at cell 7."""
    models = list(dict.fromkeys(cfg.model_list()))
    objectives = list(dict.fromkeys(cfg.objective_list()))
    if not models:
        raise HHHLabError(f"--models {cfg.models!r} names no model")
    if not objectives:
        raise HHHLabError(f"--objectives {cfg.objectives!r} names no objective (imitation, preference, classifier)")
    probe = PreparedDataset("probe", Path("train.jsonl"), Path("test.jsonl"), "ranked", 0, 0)
    for m in models:
        for o in objectives:
            try:
                cell_config(cfg, Cell(m, o, "probe"), probe)
            except ValidationError as exc:
                raise HHHLabError(f"invalid sweep settings for the {o} cell of {m}: "
                                  f"{describe_validation_error(exc, 'config')}") from None
    return models, objectives


SUMMARY_KEYS = ("accuracy", "accuracy_ci", "n_eval", "group_accuracy", "group_accuracy_ci", "ece",
                "non_embedding_params", "train_steps", "train_seconds", "pairs_per_s", "final_train_loss",
                "pair_correct", "estimates")


def run_sweep(
    cfg: SweepConfig,
    *,
    store: ResultsStore | None = None,
    train_fn: Callable | None = None,
    on_cell: Callable[[Cell, dict, bool], None] | None = None,
) -> dict:
    """Run (or resume) every cell; returns the results document also written to ``OUTPUT/sweep.json``."""
    from hhhlab.train.trainer import train_and_evaluate

    train_fn = train_fn or train_and_evaluate
    out = Path(cfg.output)
    models, objectives = check_grid(cfg)
    store = store or ResultsStore()
    # One store run per (output dir, settings): rerunning resumes it; changed settings start a new
    # run rather than mixing in stale cells (their training folders are per settings too).
    run_id = ("sweep-" + re.sub(r"[^A-Za-z0-9]+", "-", str(out.resolve()))[-48:].strip("-") + "-"
              + settings_digest(cfg))
    # Under `accelerate launch` every process trains each cell together (data-parallel, see
    # train/trainer.py); the main process alone creates the run, prepares the data files, decides
    # which cells are done, writes results and reports. The others wait for it at each step, so
    # a sweep killed under N processes resumes under M.
    main = distributed.is_main()
    data_dir = Path(cfg.data_dir).expanduser() if cfg.data_dir else None
    datasets: dict[str, PreparedDataset] | None = None
    done: dict[str, dict] | None = None
    if main:
        run = store.create_run("sweep_objectives", cfg.model_dump(), name=out.name, run_id=run_id)
        datasets = {
            name: prepare_dataset(name, path, data_dir=data_dir, cache=out / "data", train_size=cfg.train_size,
                                  eval_size=cfg.eval_size, seed=cfg.seed)
            for name, path in parse_datasets(cfg.datasets)
        }
        done = run.items()
    # The other processes take the main process's data files and finished cells as they are.
    datasets, done = distributed.broadcast((datasets, done))
    assert datasets is not None and done is not None  # the main process built them; broadcast shares them
    if not main:
        run = store.create_run("sweep_objectives", cfg.model_dump(), name=out.name, run_id=run_id)
    cells = [Cell(m, o, d) for d in datasets for o in objectives for m in models]
    for cell in cells:
        if cell.key in done:
            if on_cell and main:
                on_cell(cell, done[cell.key], True)
            continue
        metrics = train_fn(cell_config(cfg, cell, datasets[cell.dataset]))
        summary = {k: metrics.get(k) for k in SUMMARY_KEYS} | {"kind": datasets[cell.dataset].kind}
        done[cell.key] = summary
        if main:
            run.put_item(cell.key, summary)
            run.log(f"cell {cell.key}: accuracy {summary['accuracy']}")
            if on_cell:
                on_cell(cell, summary, False)
    results = {
        "config": cfg.model_dump(),
        "datasets": {n: {"kind": d.kind, "n_train": d.n_train, "n_test": d.n_test, "note": d.note}
                     for n, d in datasets.items()},
        "cells": [{"model": c.model, "objective": c.objective, "dataset": c.dataset, **done[c.key]} for c in cells],
        "gains": pm_minus_il(cells, done),
    }
    if main:
        write_sweep(out / "sweep.json", cfg, results)
        from hhhlab.report.scaling import plot_sweep

        results["figures"] = [str(p) for p in plot_sweep(results, out / "figures")]
        run.finish(write_sweep_document(cfg, results, run_id=run.run_id))
        write_sweep(out / "sweep.json", cfg, results)
    distributed.barrier()
    if not main:
        results = read_results(out / "sweep.json").payload
    return results


def sweep_estimates(results: dict) -> dict[str, dict]:
    """The sweep's estimates under flat keys: ``dataset/model/objective/accuracy`` per cell and
    ``dataset/model/pm_minus_il`` per gain (its method says paired or independent)."""
    out: dict[str, dict] = {}
    for c in results["cells"]:
        for name, est in (c.get("estimates") or {}).items():
            out[f"{c['dataset']}/{c['model']}/{c['objective']}/{name}"] = est
    for g in results["gains"]:
        out[f"{g['dataset']}/{g['model']}/pm_minus_il"] = g["estimate"]
    return out


def write_sweep_document(cfg: SweepConfig, results: dict, **prov) -> dict:
    return make_results("sweep_objectives", config=cfg.model_dump(), estimates=sweep_estimates(results),
                        payload=results, models=cfg.model_list(), **prov)


def write_sweep(path: Path, cfg: SweepConfig, results: dict) -> Path:
    """``sweep.json``: the sweep as a results document (kind ``sweep_objectives``)."""
    return atomic_write_json(path, write_sweep_document(cfg, results))


def pm_minus_il(cells: list[Cell], done: dict[str, dict]) -> list[dict]:
    """PM − IL accuracy per (dataset, model), with a 95% CI.

    Both cells are evaluated on the same pairs, so the CI is a paired bootstrap over the pairs'
    correctness (``pair_correct``) when both cells carry it. Cells from older runs carry only
    their own intervals; their difference's interval then treats them as independent (normal
    approximation, half-widths in quadrature), which is wider, since paired outcomes are
    positively correlated. ``gain_ci_method`` says which."""
    gains = []
    for c in cells:
        if c.objective != "preference":
            continue
        pm, il = done.get(c.key), done.get(Cell(c.model, "imitation", c.dataset).key)
        if not pm or not il or pm.get("accuracy") is None or il.get("accuracy") is None:
            continue
        diff = pm["accuracy"] - il["accuracy"]
        a, b = pm.get("pair_correct"), il.get("pair_correct")
        if a and b and len(a) == len(b):
            est = paired_difference(a, b)
            ci, method, n = [est.lo, est.hi], "paired bootstrap", est.n
        else:
            half = math.hypot(*((m["accuracy_ci"][1] - m["accuracy_ci"][0]) / 2 for m in (pm, il)))
            ci, method, n = [diff - half, diff + half], "independent (normal approximation)", int(
                min(pm.get("n_eval") or 0, il.get("n_eval") or 0))
        record = Estimate(diff, ci[0], ci[1], n, PAIRED if method == "paired bootstrap" else INDEPENDENT)
        gains.append({"dataset": c.dataset, "model": c.model, "kind": pm["kind"],
                      "non_embedding_params": pm["non_embedding_params"], "gain": diff,
                      "gain_ci": ci, "gain_ci_method": method, "estimate": estimate_dict(record)})
    return gains
