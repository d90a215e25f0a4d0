"""``hhhlab sweep ...``: sweeps over models, objectives and datasets."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command("objectives")
def objectives_cmd(
    datasets: str = typer.Option(..., help="hellaswag, summarize, ethics-commonsense, ethics-utilitarianism, ... "
                                           "or NAME=PATH (JSONL of preference groups, or a folder with "
                                           "train.jsonl and test.jsonl)"),
    output: Path = typer.Option(..., "--output", "-o", help="sweep directory (resumable: rerun to continue)"),
    models: str = typer.Option("smollm2-135m@L2,@L4,@L8,@L15,smollm2-135m", help="model ladder"),
    objectives: str = typer.Option("imitation,preference", help="imitation, preference (ranked), classifier"),
    train_size: int = typer.Option(1000, help="training groups per dataset"),
    eval_size: int = typer.Option(500, help="held-out groups per dataset"),
    data_dir: Path = typer.Option(None, help="local copies of the sources, laid out like shared/data"),
    epochs: float = typer.Option(1.0),
    max_steps: int = typer.Option(None, help="optimizer steps per cell (default: epochs)"),
    checkpoint_every: int = typer.Option(100, help="training checkpoint every N steps (a killed cell resumes "
                                                   "from its last one)"),
    batch_size: int = typer.Option(8),
    lr: float = typer.Option(1e-5),
    max_length: int = typer.Option(512),
    dtype: str = typer.Option("float32", help="float32 or bfloat16 (autocast)"),
    lora: bool = typer.Option(False),
    seed: int = typer.Option(0),
) -> None:
    """IL vs PM on each dataset across model sizes: table, sweep.json, the paper's Figs 3, 14, 15."""
    from pydantic import ValidationError

    from hhhlab.experiments.sweep import SweepConfig, invalid, run_sweep

    try:
        cfg = SweepConfig(models=models, objectives=objectives, datasets=datasets, train_size=train_size,
                          eval_size=eval_size, output=str(output), data_dir=str(data_dir) if data_dir else None,
                          epochs=epochs, max_steps=max_steps, checkpoint_every=checkpoint_every,
                          batch_size=batch_size, lr=lr, max_length=max_length, dtype=dtype, lora=lora, seed=seed)
    except ValidationError as exc:
        raise invalid(exc, "sweep settings") from None

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
