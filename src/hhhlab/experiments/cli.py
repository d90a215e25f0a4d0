"""``hhhlab sweep ...``: sweeps over models, objectives and datasets."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


def _objectives(**flags) -> None:
    """IL vs PM on each dataset across model sizes: table, sweep.json, the paper's Figs 3, 14, 15."""
    from hhhlab.configflags import build_config
    from hhhlab.experiments.sweep import SweepConfig, run_sweep

    yaml_path = flags.pop("config", None)
    base = load_yaml(yaml_path) if yaml_path else {}
    cfg = build_config(SweepConfig, base, flags, where=f"sweep settings ({yaml_path or 'command line'})")
    output = Path(cfg.output)

    def on_cell(cell, summary, cached):
        state = "cached" if cached else "done"
        console.print(f"[dim]{state}[/] {cell.dataset} · {cell.objective} · {cell.model}: "
                      f"accuracy {summary['accuracy']:.3f}")

    results = run_sweep(cfg, on_cell=on_cell)
    from hhhlab import distributed

    if not distributed.is_main():  # under `accelerate launch`: the main process reports
        return
    table = Table(title="IL vs PM (accuracy, 95% CI)")
    for col in ("dataset", "kind", "model", "non-emb params", "objective", "accuracy", "95% CI"):
        table.add_column(col)
    for c in results["cells"]:
        lo, hi = c["accuracy_ci"]
        table.add_row(c["dataset"], c["kind"], c["model"], f"{c['non_embedding_params']:,}", c["objective"],
                      f"{c['accuracy']:.3f}", f"[{lo:.3f}, {hi:.3f}]")
    console.print(table)
    if results["gains"]:
        gains = Table(title="PM − IL accuracy gain")
        for col in ("dataset", "kind", "model", "gain", "95% CI"):
            gains.add_column(col)
        for g in results["gains"]:
            gains.add_row(g["dataset"], g["kind"], g["model"], f"{g['gain']:+.3f}",
                          f"[{g['gain_ci'][0]:+.3f}, {g['gain_ci'][1]:+.3f}]")
        console.print(gains)
    console.print(f"results: {output / 'sweep.json'}; figures: {', '.join(results['figures'])}")


def load_yaml(path: Path) -> dict:
    """A YAML file of sweep settings (the same keys as the flags); errors name the file."""
    import yaml

    from hhhlab.errors import HHHLabError

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise HHHLabError(f"cannot read sweep config {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise HHHLabError(f"{path}: expected a mapping of setting: value, got {type(loaded).__name__}")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def _rerank(**flags) -> None:
    """Re-rank N samples per Lambada passage (--task lambada) or per code problem run with its
    tests (--task code) by PM score and by IL mean log-prob, per model of a ladder: acc@k with the
    oracle and no-ranking lines (the paper's Figs 11-13), results.json."""
    from hhhlab.configflags import build_config
    from hhhlab.experiments.rerank import SERIES, RerankConfig, run_rerank

    yaml_path = flags.pop("config", None)
    base = load_yaml(yaml_path) if yaml_path else {}
    cfg = build_config(RerankConfig, base, flags, where=f"rerank settings ({yaml_path or 'command line'})")

    def on_model(model, record, cached):
        state = "cached" if cached else "done"
        top = record["acc_at_k"][str(record["ks"][-1])]
        console.print(f"[dim]{state}[/] {model}: acc@{record['ks'][-1]} PM {top['pm']['value']:.3f}, "
                      f"IL {top['il']['value']:.3f}, oracle {top['oracle']['value']:.3f}, "
                      f"average {top['average']['value']:.3f}")

    doc = run_rerank(cfg, on_model=on_model)
    table = Table(title=f"{doc['payload']['task'].capitalize()} re-ranking: top-1 accuracy of k samples (95% CI)")
    for col in ("model", "k", *(SERIES[s] for s in ("pm", "il", "oracle", "average"))):
        table.add_column(col)
    for r in doc["payload"]["models"]:
        for k in r["ks"]:
            per = r["acc_at_k"][str(k)]
            table.add_row(r["model"], str(k), *(f"{per[s]['value']:.3f} [{per[s]['lo']:.3f}, {per[s]['hi']:.3f}]"
                                                 for s in ("pm", "il", "oracle", "average")))
        if g := r["greedy"].get("il_greedy"):  # Lambada only (Fig 13)
            table.add_row(r["model"], "T=0", f"IL greedy {g['value']:.3f} [{g['lo']:.3f}, {g['hi']:.3f}]", "", "", "")
    console.print(table)
    console.print(f"results: {Path(cfg.output) / 'results.json'} (hhhlab report --runs {cfg.output})")


def _signature(config_cls) -> inspect.Signature:
    """A sweep command's flags: one per field of its config (the single source of flags, YAML
    keys and defaults, as `TrainConfig` is for ``pm train``), plus ``--config FILE``."""
    from hhhlab.configflags import config_flags

    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],  # noqa: UP045 (typer reads the object)
                               default=typer.Option(None, "--config", help="YAML file of settings (flags override it)"))
    return inspect.Signature([config, *config_flags(config_cls)])


def _register() -> None:
    from hhhlab.experiments.rerank import RerankConfig
    from hhhlab.experiments.sweep import SweepConfig

    _objectives.__signature__ = _signature(SweepConfig)  # type: ignore[attr-defined]
    app.command("objectives")(_objectives)
    _rerank.__signature__ = _signature(RerankConfig)  # type: ignore[attr-defined]
    app.command("rerank")(_rerank)


_register()
