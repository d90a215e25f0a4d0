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


def _signature() -> inspect.Signature:
    """``hhhlab sweep objectives``'s flags: one per `SweepConfig` field (the single source of flags,
    YAML keys and defaults, as `TrainConfig` is for ``pm train``), plus ``--config FILE``."""
    from hhhlab.configflags import config_flags
    from hhhlab.experiments.sweep import SweepConfig

    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],  # noqa: UP045 (typer reads the object)
                               default=typer.Option(None, "--config", help="YAML file of settings (flags override it)"))
    return inspect.Signature([config, *config_flags(SweepConfig)])


_objectives.__signature__ = _signature()  # type: ignore[attr-defined]
app.command("objectives")(_objectives)
