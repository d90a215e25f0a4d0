"""``hhhlab reproduce --config paper-cpu|paper-gpu|FILE``: the whole study from one typed config.

`ReproduceConfig` is the one schema of a study: its YAML keys, the command's flags (top-level
fields as ``--field-name``, any key as ``--set section.key=value``) and their defaults. An
unknown key or a wrong type is an error naming the key, before any work. The built-in configs
ship inside the package (``hhhlab/configs/*.yaml``, with the ``accelerate`` configs under
``hhhlab/configs/accelerate/``), so ``--config paper-cpu`` works after a plain ``pip install``.

A study is a list of *cells*, each one self-contained and keyed: one model's eval suite (all
evals and conditions of that model, `evals.runner.run_suite`) and one PM-vs-IL sweep cell (model
× objective × dataset, `train.trainer.train_and_evaluate` with the sweep's `cell_config`), and
the cells of the other stages — re-ranking, distillation, PMP — each its own command run from a
section of the config (`experiments.stages`). Cells
run on an `experiments.executor` (serial here, or Ray tasks with ``--ray``); the driver writes each
finished cell's results document to ``OUTPUT/cells/<key>/results.json`` as it arrives, so a crash,
Ctrl-C or a killed driver loses at most the cells in flight, and a rerun skips every finished
cell (a cell in flight resumes from its own checkpoint or stored items). The stage documents
(``OUTPUT/evals``, ``OUTPUT/pm_vs_il``) and the report are then rebuilt from the cell documents.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hhhlab.configflags import build_config
from hhhlab.errors import DataError, HHHLabError
from hhhlab.experiments.executor import Cell, Executor, make_executor
from hhhlab.results import SchemaError, estimate_dict, read_results, write_results

CONFIG_PACKAGE = "hhhlab.configs"


class EvalStudy(BaseModel):
    """The alignment evals of the study (paper §2): every model × eval × condition."""

    model_config = ConfigDict(extra="forbid")
    models: str | None = Field(None, description="ladder for the evals (default: the study's models)")
    evals: list[str] = Field(default_factory=lambda: ["hhh_alignment", "truthfulqa_mc1", "lambada"])
    conditions: list[str] = Field(default_factory=lambda: ["plain", "prompt"],
                                  description="plain, prompt, distilled:PATH ({model} in PATH per rung)")
    limit: int | None = Field(None, ge=1, description="seeded subset of items per eval (None: all)")
    prompt: str | None = Field(None, description="a prompt file instead of the built-in HHH prompt")
    options: dict[str, Any] = Field(default_factory=dict, description="--eval-option KEY: VALUE pairs")


class PmVsIlStudy(BaseModel):
    """The PM-vs-IL comparison (paper §3): model × objective × dataset cells."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    models: str | None = Field(None, description="ladder for the sweep (default: the study's models)")
    datasets: list[str] = Field(default_factory=lambda: ["hellaswag", "ethics-commonsense", "ethics-utilitarianism"])
    objectives: list[str] = Field(default_factory=lambda: ["imitation", "preference"])
    train_size: int | None = Field(1000, ge=1)
    eval_size: int | None = Field(500, ge=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-5, gt=0)
    max_length: int = Field(512, ge=16)
    lora: bool = False
    checkpoint_every: int = Field(100, ge=1)


class RaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gpus_per_cell: float = Field(0.0, ge=0, description="GPUs each cell requests (a training cell with more "
                                                        "than one runs accelerate launch on its node)")
    cpus_per_cell: float = Field(1.0, gt=0)
    max_retries: int = Field(2, ge=0, description="retries of a failed cell before it is reported")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a --ray local instance (default: all)")


class ReproduceConfig(BaseModel):
    """One study: which models, which stages, where the results go."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field("study", description="a name for the study (report title)")
    models: str = Field("smollm2-135m@L2,@L4,@L8,@L15,smollm2-135m", description="the model ladder")
    output: str = Field("hhhlab-study", description="study folder: cells, stage documents, report.html")
    data_dir: str | None = Field(None, description="local data laid out like shared/data (else the hub/cache)")
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: str = "auto"
    batch_size: int = Field(16, ge=1, description="scoring batch size of the evals")
    seed: int = 0
    accelerate_config: str | None = Field(None, description="built-in name (ddp, fsdp, deepspeed) or a file: "
                                                            "training cells with >1 GPU launch with it")
    evals: EvalStudy | None = Field(default_factory=lambda: EvalStudy(), description="null: skip the evals")
    pm_vs_il: PmVsIlStudy | None = Field(default_factory=lambda: PmVsIlStudy(), description="null: skip PM vs IL")
    # The other stages (`experiments.stages`): each section holds its command's own config keys,
    # checked against that command's schema when the study is loaded; null or absent: skipped.
    rerank: dict[str, Any] | None = Field(None, description="`hhhlab sweep rerank` keys (Lambada, Figs 11/13); "
                                                            "one cell per model")
    rerank_code: dict[str, Any] | None = Field(None, description="`hhhlab sweep rerank --task code` keys "
                                                                 "(Figs 11/12); one cell per model")
    distill: dict[str, Any] | None = Field(None, description="`hhhlab distill` keys plus compare: {`hhhlab distill "
                                                             "compare` keys} (or null); one cell per model")
    pmp_synthetic: dict[str, Any] | None = Field(None, description="`hhhlab sweep pmp-synthetic` keys (Fig 33)")
    pmp: dict[str, Any] | None = Field(None, description="`hhhlab sweep pmp` keys (sources, targets, ...; "
                                                         "Figs 4/5); models: the study's ladder")
    ray: RaySettings = Field(default_factory=lambda: RaySettings())

    @model_validator(mode="after")
    def _check_stages(self) -> ReproduceConfig:
        from hhhlab.experiments.stages import STAGES, check_sections

        check_sections({name: getattr(self, name) for name in STAGES}, self.study_settings())
        return self

    def study_settings(self) -> dict[str, Any]:
        """What a stage section inherits from the study."""
        return {"models": self.models, "data_dir": self.data_dir, "dtype": self.dtype, "seed": self.seed}


# -- configs shipped in the package -----------------------------------------------------------
def builtin_configs() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files(CONFIG_PACKAGE).iterdir()
                  if p.name.endswith(".yaml"))


def builtin_path(name: str, sub: str = "") -> Path:
    """The file of a built-in config (``paper-cpu``, or ``ddp`` under ``accelerate``)."""
    base = resources.files(CONFIG_PACKAGE)
    node = (base / sub / f"{name}.yaml") if sub else base / f"{name}.yaml"
    return Path(str(node))


def resolve_config_file(ref: str) -> Path:
    p = Path(ref).expanduser()
    if p.is_file():
        return p
    if builtin_path(ref).is_file():
        return builtin_path(ref)
    raise HHHLabError(f"--config {ref!r}: no such file and no built-in config of that name "
                      f"(built-in: {', '.join(builtin_configs())})")


def accelerate_config_file(ref: str) -> Path:
    p = Path(ref).expanduser()
    if p.is_file():
        return p
    if builtin_path(ref, "accelerate").is_file():
        return builtin_path(ref, "accelerate")
    raise HHHLabError(f"accelerate_config {ref!r}: no such file and no built-in accelerate config "
                      "(built-in: ddp, fsdp, deepspeed)")


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["pm_vs_il.max_steps=8", "evals.limit=50"]`` -> nested dict (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HHHLabError(f"--set {item!r}: expected KEY=VALUE (e.g. pm_vs_il.max_steps=8)")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise HHHLabError(f"--set {item!r}: {part} is not a section")
        node[parts[-1]] = parsed
    return out


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_study(ref: str | None, flags: dict[str, Any] | None = None, sets: list[str] | None = None) -> ReproduceConfig:
    """The config file (or built-in), updated by ``--set`` keys and then by the flags given."""
    base: dict[str, Any] = {}
    where = "study config"
    if ref:
        path = resolve_config_file(ref)
        where = f"study config {path}"
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise HHHLabError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise HHHLabError(f"{path}: a study config is a YAML mapping, got {type(loaded).__name__}")
        base = loaded
    base = _deep_merge(base, parse_set(sets or []))
    return build_config(ReproduceConfig, base, flags or {}, where=where)


# -- cells ------------------------------------------------------------------------------------
def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_eval_cell(model: str, suite: dict[str, Any], run_id: str) -> dict[str, Any]:
    """One model's eval suite (every eval and condition), resumable item by item in the store."""
    from hhhlab.evals.base import parse_conditions
    from hhhlab.evals.runner import SuiteConfig, run_suite
    from hhhlab.store import ResultsStore

    cfg = SuiteConfig(models=[model], evals=suite["evals"], conditions=parse_conditions(",".join(suite["conditions"])),
                      limit=suite["limit"], data_dir=Path(suite["data_dir"]) if suite["data_dir"] else None,
                      batch_size=suite["batch_size"], dtype=suite["dtype"], device=suite["device"],
                      seed=suite["seed"], progress=False, options=suite["options"], prompt_path=suite["prompt"])
    run = ResultsStore().create_run("eval", {**cfg.to_dict(), "identity": cfg.identity()}, name=model, run_id=run_id)
    report = run_suite(cfg, run=run, log=run.log)
    data = report.to_dict()
    data["caveats"] = sorted({c for m in report.models.values() for c in m.get("caveats", [])})
    run.finish(data)
    return {"suite": cfg.to_dict(), "payload": data, "store_run": run.run_id,
            "estimates": {k: estimate_dict(v) for k, v in report.estimates().items()}}


def run_train_cell(train_cfg: dict[str, Any], accelerate_config: str | None = None, processes: int = 1) -> dict:
    """One sweep cell's training and evaluation; on several GPUs under ``accelerate launch``."""
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.trainer import train_and_evaluate

    cfg = TrainConfig(**train_cfg)
    if processes <= 1:
        return train_and_evaluate(cfg)
    import subprocess
    import sys

    from hhhlab.store import atomic_write_text, read_json

    out = Path(cfg.output)
    cfg_file = atomic_write_text(out / "cell.yaml", yaml.safe_dump(cfg.model_dump()))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    if accelerate_config:
        cmd += ["--config_file", accelerate_config]
    cmd += ["-m", "hhhlab", "pm", "train", "--config", str(cfg_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HHHLabError(f"accelerate launch of {out} failed: {(proc.stderr or proc.stdout)[-800:]}")
    return read_json(out / "metrics.json")


def plan(cfg: ReproduceConfig) -> tuple[list[Cell], dict[str, Any]]:
    """Every cell of the study, and what the driver needs to turn their results into documents."""
    from hhhlab.models.load import expand_model_list

    out = Path(cfg.output)
    cells: list[Cell] = []
    info: dict[str, Any] = {"eval": {}, "train": {}}
    if cfg.evals is not None:
        e = cfg.evals
        suite = {"evals": e.evals, "conditions": e.conditions, "limit": e.limit, "data_dir": cfg.data_dir,
                 "batch_size": cfg.batch_size, "dtype": cfg.dtype, "device": cfg.device, "seed": cfg.seed,
                 "options": e.options, "prompt": e.prompt}
        for model in expand_model_list(e.models or cfg.models):
            ident = {k: v for k, v in suite.items() if k != "batch_size"}
            key = f"eval-{_key(model, ident)}"
            cells.append(Cell(key, run_eval_cell, (model, suite, f"reproduce-{key}"), gpus=cfg.ray.gpus_per_cell,
                              cpus=cfg.ray.cpus_per_cell))
            info["eval"][key] = model
    if cfg.pm_vs_il is not None:
        from hhhlab.experiments.datasets import parse_datasets, prepare_dataset
        from hhhlab.experiments.sweep import Cell as SweepCell
        from hhhlab.experiments.sweep import SweepConfig, cell_config, check_grid

        p = cfg.pm_vs_il
        sweep = SweepConfig(models=p.models or cfg.models, objectives=",".join(p.objectives),
                            datasets=",".join(p.datasets), train_size=p.train_size, eval_size=p.eval_size,
                            output=str(out / "pm_vs_il"), data_dir=cfg.data_dir, epochs=p.epochs,
                            max_steps=p.max_steps, checkpoint_every=p.checkpoint_every, batch_size=p.batch_size,
                            lr=p.lr, max_length=p.max_length, dtype="float32" if cfg.dtype == "auto" else cfg.dtype,
                            lora=p.lora, seed=cfg.seed, progress=False)
        models, objectives = check_grid(sweep)
        data_dir = Path(cfg.data_dir).expanduser() if cfg.data_dir else None
        datasets, missing = {}, {}
        for name, path in parse_datasets(sweep.datasets):
            try:  # a dataset that is not at hand is reported in the study's document, the rest runs
                datasets[name] = prepare_dataset(name, path, data_dir=data_dir, cache=out / "pm_vs_il" / "data",
                                                 train_size=p.train_size, eval_size=p.eval_size, seed=cfg.seed)
            except DataError as exc:
                missing[name] = str(exc)
        info["missing"] = missing
        gpus = cfg.ray.gpus_per_cell
        acc = str(accelerate_config_file(cfg.accelerate_config)) if cfg.accelerate_config else None
        for d, prepared in datasets.items():
            for o in objectives:
                for m in models:
                    sc = SweepCell(m, o, d)
                    tc = cell_config(sweep, sc, prepared).model_dump()
                    key = f"train-{_key(sc.key, tc)}"
                    cells.append(Cell(key, run_train_cell, (tc, acc, max(1, int(gpus))), gpus=gpus,
                                      cpus=cfg.ray.cpus_per_cell))
                    info["train"][key] = sc
        info["sweep"] = sweep
        info["datasets"] = datasets
    info["stage"] = {}
    cells += stage_cells(cfg, info)
    return cells, info


def stage_cells(cfg: ReproduceConfig, info: dict[str, Any]) -> list[Cell]:
    """The cells of the re-ranking, distillation and PMP sections (`experiments.stages`). A cell's
    folder is named by its settings, so changed settings never meet an old cache."""
    from hhhlab.experiments.stages import STAGES, build_cell_config, run_stage_cell, stage_models

    out = Path(cfg.output)
    study = cfg.study_settings()
    cells = []
    for name, stage in STAGES.items():
        section = getattr(cfg, name)
        if section is None:
            continue
        for model in stage_models(section, cfg.models) if stage.ladder else [None]:
            settings = build_cell_config(stage, section, study, model, Path("CELL")).model_dump()
            key = f"{name}-{_key(name, model, settings)}"
            slug = "".join(c if c.isalnum() or c in "@._-" else "_" for c in (model or name))
            config = build_cell_config(stage, section, study, model, out / name / f"{slug}-{key[-12:]}")
            cells.append(Cell(key, run_stage_cell, (name, config), gpus=cfg.ray.gpus_per_cell,
                              cpus=cfg.ray.cpus_per_cell))
            info["stage"][key] = (name, model)
    return cells


def cell_label(info: dict[str, Any], cell: Cell) -> str:
    """What a cell is, in a few words (``--dry-run``)."""
    if cell.key in info["eval"]:
        return f"evals {info['eval'][cell.key]}"
    if cell.key in info["train"]:
        sc = info["train"][cell.key]
        return f"pm_vs_il {sc.model} {sc.objective} {sc.dataset}"
    name, model = info["stage"][cell.key]
    return f"{name} {model or ''}".rstrip()


def cell_doc(out: Path, key: str) -> Path:
    return out / "cells" / key / "results.json"


def _written(out: Path, key: str) -> Any:
    """The cell's document when it is this cell's (else None)."""
    path = cell_doc(out, key)
    if not path.exists():
        return None
    try:
        doc = read_results(path)
    except (SchemaError, HHHLabError):
        return None
    return doc if doc.provenance.get("cell") == key else None


def is_finished(out: Path, key: str) -> bool:
    doc = _written(out, key)
    # a cell skipped for missing data runs again: the data may be there now
    return doc is not None and not doc.payload.get("skipped")


def record_cell(cfg: ReproduceConfig, info: dict[str, Any], cell: Cell, result: Any) -> Path:
    """The driver writes each finished cell's document as soon as it arrives."""
    out = Path(cfg.output)
    if cell.key in info["stage"]:
        return record_stage_cell(cfg, cell.key, result)
    if cell.key in info["eval"]:
        return write_results(cell_doc(out, cell.key), "eval", config=result["suite"], estimates=result["estimates"],
                             payload=result["payload"], models=list(result["payload"].get("models", {})),
                             dtype=cfg.dtype, cell=cell.key, study=cfg.name, store_run=result["store_run"])
    from hhhlab.experiments.sweep import SUMMARY_KEYS

    sc = info["train"][cell.key]
    summary = {k: result.get(k) for k in SUMMARY_KEYS} | {"kind": info["datasets"][sc.dataset].kind}
    est = {f"{sc.dataset}/{sc.model}/{sc.objective}/{name}": e for name, e in (summary.get("estimates") or {}).items()}
    return write_results(cell_doc(out, cell.key), "pm_train", config=cell.args[0], estimates=est,
                         payload={"cell": {"model": sc.model, "objective": sc.objective, "dataset": sc.dataset,
                                           **summary}},
                         models=[sc.model], dtype=cell.args[0].get("dtype"), cell=cell.key, study=cfg.name)


def record_stage_cell(cfg: ReproduceConfig, key: str, docs: list[dict]) -> Path:
    """A stage cell's documents (the command's own, stamped with the cell and study):
    ``results-N.json`` for the second and later ones, then ``results.json``, the finished marker."""
    from hhhlab.results import parse_results
    from hhhlab.store import atomic_write_json

    folder = cell_doc(Path(cfg.output), key).parent
    for i, doc in reversed(list(enumerate(docs))):
        parse_results(doc, source=f"cell {key}")  # a command that wrote no valid document fails here
        stamped = {**doc, "provenance": {**doc.get("provenance", {}), "cell": key, "study": cfg.name}}
        atomic_write_json(folder / ("results.json" if i == 0 else f"results-{i}.json"), stamped)
    return folder / "results.json"


def assemble(cfg: ReproduceConfig, cells: list[Cell], info: dict[str, Any]) -> list[Path]:
    """Stage documents from the finished cells' documents (the report reads these)."""
    from hhhlab.store import read_json

    out = Path(cfg.output)
    written = []
    if "sweep" in info and not info["train"]:
        reasons = "; ".join(f"{k}: {v}" for k, v in info.get("missing", {}).items()) or "no cells"
        written.append(write_results(out / "pm_vs_il" / "results.json", "sweep_objectives",
                                     config=info["sweep"].model_dump(), payload={"skipped": reasons}, study=cfg.name))
    if info.get("train"):
        from hhhlab.experiments.sweep import pm_minus_il

        done = {}
        for key, sc in info["train"].items():
            if is_finished(out, key):
                c = read_json(cell_doc(out, key))["payload"]["cell"]
                done[sc.key] = {k: v for k, v in c.items() if k not in ("model", "objective", "dataset")}
        grid = list(info["train"].values())
        finished_cells = [c for c in grid if c.key in done]
        gains = pm_minus_il(finished_cells, done)
        payload = {
            "datasets": {n: {"kind": d.kind, "n_train": d.n_train, "n_test": d.n_test, "note": d.note}
                         for n, d in info["datasets"].items()},
            "cells": [{"model": c.model, "objective": c.objective, "dataset": c.dataset,
                       **{k: v for k, v in done[c.key].items() if k != "pair_correct"}} for c in finished_cells],
            "gains": gains, "complete": len(finished_cells) == len(grid), "missing": info.get("missing", {}),
        }
        from hhhlab.experiments.sweep import write_sweep

        written.append(write_sweep(out / "pm_vs_il" / "results.json", info["sweep"], payload))
    return written


def report_sources(cfg: ReproduceConfig, info: dict[str, Any]) -> list[str]:
    """What the study's report reads: the eval cells' documents and the stage documents."""
    out = Path(cfg.output)
    refs = [str(cell_doc(out, k)) for k in info["eval"] if is_finished(out, k)]
    for key in info["stage"]:
        if _written(out, key) is not None:  # finished, or skipped for missing data (the report says why)
            refs += [str(p) for p in sorted(cell_doc(out, key).parent.glob("results*.json"))]
    if (out / "pm_vs_il" / "results.json").exists():
        refs.append(str(out / "pm_vs_il" / "results.json"))
    return refs


def reproduce(cfg: ReproduceConfig, *, executor: Executor | None = None,
              on_cell: Any = None, on_plan: Any = None) -> dict[str, Any]:
    """Run (or resume) the study; returns {planned, skipped, ran, failures, report}."""
    from hhhlab.report.collect import collect
    from hhhlab.report.html import build_report
    from hhhlab.store import atomic_write_json

    out = Path(cfg.output)
    atomic_write_json(out / "study.json", cfg.model_dump())
    cells, info = plan(cfg)
    todo = [c for c in cells if not is_finished(out, c.key)]
    if on_plan:
        on_plan(len(cells), len(cells) - len(todo))
    executor = executor or make_executor(None, max_retries=cfg.ray.max_retries)

    def done(cell: Cell, result: Any) -> None:
        record_cell(cfg, info, cell, result)
        if on_cell:
            on_cell(cell)

    try:
        rep = executor.run(todo, done)
    finally:
        executor.close()
    assemble(cfg, cells, info)
    path, _ = build_report(collect(report_sources(cfg, info)), out / "report.html", title=f"hhhlab: {cfg.name}")
    return {"planned": len(cells), "skipped": len(cells) - len(todo), "ran": len(rep.results),
            "failures": rep.failures, "report": path, "report_obj": rep}


# -- the command --------------------------------------------------------------------------------
def reproduce_command(**kwargs: Any) -> None:
    """Run the whole study of a config (resumable: rerun the same command to continue).

    ``--config paper-cpu`` / ``paper-gpu`` name built-in configs (or give a YAML file); top-level
    keys have flags, any key can be set with ``--set section.key=value``; ``--ray ADDRESS|local``
    runs the cells as Ray tasks."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(emoji=False)
    ref, sets, ray_address, dry_run = (kwargs.pop("config"), kwargs.pop("set_"), kwargs.pop("ray"),
                                       kwargs.pop("dry_run"))
    cfg = load_study(ref, kwargs, sets or [])
    if dry_run:
        cells, info = plan(cfg)
        out = Path(cfg.output)
        for c in cells:
            console.print(f"{'done' if is_finished(out, c.key) else 'todo'}  {c.key}  {cell_label(info, c)}")
        console.print(f"{len(cells)} cells; config:\n{yaml.safe_dump(cfg.model_dump(), sort_keys=False)}")
        return
    executor = make_executor(ray_address, max_retries=cfg.ray.max_retries, num_cpus=cfg.ray.num_cpus)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bars:
        task = bars.add_task(f"{cfg.name} cells ({executor.name})", total=None)

        def on_plan(total: int, skipped: int) -> None:
            bars.update(task, total=total, completed=skipped)

        result = reproduce(cfg, executor=executor, on_plan=on_plan, on_cell=lambda cell: bars.advance(task))
    console.print(f"{result['planned']} cells: {result['skipped']} already finished, {result['ran']} run now")
    console.print(f"report: {result['report']}")
    result["report_obj"].raise_failures()


def _signature() -> Any:
    import inspect

    import typer

    from hhhlab.configflags import config_flags

    kw = inspect.Parameter.KEYWORD_ONLY
    extra = [
        inspect.Parameter("config", kw, annotation=str | None, default=typer.Option(
            None, "--config", "-c", help=f"built-in config ({', '.join(builtin_configs())}) or a YAML file")),
        inspect.Parameter("set_", kw, annotation=list[str] | None, default=typer.Option(
            None, "--set", help="KEY=VALUE for any config key, e.g. pm_vs_il.max_steps=8 (repeatable)")),
        inspect.Parameter("ray", kw, annotation=str | None, default=typer.Option(
            None, "--ray", help="run cells as Ray tasks: a cluster address (HOST:PORT, ray://HOST:PORT, auto) "
                                "or 'local'")),
        inspect.Parameter("dry_run", kw, annotation=bool, default=typer.Option(
            False, "--dry-run", help="list the cells (done/todo) and the resolved config, run nothing")),
    ]
    return inspect.Signature(extra + config_flags(ReproduceConfig))


reproduce_command.__signature__ = _signature()  # type: ignore[attr-defined]
