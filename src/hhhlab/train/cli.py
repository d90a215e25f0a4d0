"""``hhhlab pm ...``: train and evaluate preference models / imitation baselines.

``hhhlab pm train``'s flags are generated from `TrainConfig`'s fields, so the pydantic model is
the single source of flags, YAML keys (``--config run.yaml``) and defaults.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from hhhlab.configflags import config_flags
from hhhlab.train.config import TrainConfig, load_config

app = typer.Typer(no_args_is_help=True)
console = Console()


def _config_flags() -> list[inspect.Parameter]:
    """``--config FILE`` plus one flag per `TrainConfig` field (`hhhlab.configflags`), lists comma-separated."""
    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],  # noqa: UP045 (typer reads the object)
                               default=typer.Option(None, "--config", help="YAML file of options (flags override it)"))
    return [config, *config_flags(TrainConfig, comma_lists=True)]


def _train_command(**kwargs) -> None:
    """Train a model with any registered objective (imitation, preference, classifier, language_model, ...)
    on preference groups or texts, then evaluate it."""
    from hhhlab.train.trainer import train_and_evaluate

    cfg = load_config(kwargs.pop("config"), **kwargs)
    metrics = train_and_evaluate(cfg)
    from accelerate import PartialState

    if PartialState().is_main_process:
        _print_metrics(metrics, Path(cfg.output) / "metrics.json")


_train_command.__signature__ = inspect.Signature(_config_flags())  # type: ignore[attr-defined]
app.command("train")(_train_command)


@app.command("eval")
def eval_command(
    pm: Path = typer.Option(..., "--pm", help="directory written by `hhhlab pm train` (OUTPUT/model)"),
    data: Path = typer.Option(..., "--data", help="preference groups (JSONL)"),
    batch_size: int = typer.Option(32, help="responses per forward pass (scores do not depend on it)"),
    dtype: str = typer.Option("auto", help="auto (bf16 where native, else float32), float32 or bfloat16"),
    device: str = typer.Option("auto", help="auto, cpu, cuda"),
    max_eval: int | None = typer.Option(None, help="use only the first N groups"),
    output: Path | None = typer.Option(None, help="write the metrics JSON here too"),
    json_out: bool = typer.Option(False, "--json", help="print the metrics as JSON"),
) -> None:
    """Evaluate a trained model: pairwise accuracy (+CI), group accuracy, calibration (ECE)."""
    from hhhlab import distributed
    from hhhlab.results import write_metrics
    from hhhlab.store import ResultsStore
    from hhhlab.train.preference_model import PreferenceModel
    from hhhlab.train.trainer import evaluate_model

    path = pm / "model" if (pm / "model" / "pm_config.json").exists() else pm
    model = PreferenceModel.from_pretrained(path, device=device, dtype=dtype)
    # Under `accelerate launch` each process scores a share of the groups (train/trainer.py,
    # score_sharded); the main process reports.
    metrics, _ = evaluate_model(model, str(data), batch_size=batch_size, limit=max_eval, progress=not json_out)
    if not distributed.is_main():
        return
    metrics.update(model=model.name, objective=model.extra.get("objective"), pm=str(path), data=str(data),
                   non_embedding_params=model.non_embedding_params, dtype=dtype, batch_size=batch_size,
                   processes=distributed.world_size())
    run_config = {"pm": str(path), "data": str(data), "dtype": dtype, "batch_size": batch_size, "max_eval": max_eval}
    run = ResultsStore().create_run("pm_eval", run_config)
    run.finish({k: v for k, v in metrics.items() if k not in ("calibration_bins", "pair_correct")})
    if output:  # a results document (hhhlab.results), like the run's metrics.json
        write_metrics(output, "pm_eval", metrics, config=run_config, models=[model.name])
    if json_out:
        print(json.dumps(metrics, indent=2, default=str))
    else:
        _print_metrics(metrics, run.path / "metrics.json")


def _print_metrics(m: dict, where: Path) -> None:
    if "lm_loss" in m:  # a text objective's evaluation
        e = m["lm_loss"]
        console.print(f"[bold]{m.get('objective')}[/] {m.get('model')}: token NLL {e['value']:.4f} "
                      f"[{e['lo']:.4f}, {e['hi']:.4f}] (perplexity {m['perplexity']:.2f}) on {m['n_eval_texts']} texts")
        console.print(f"metrics: {where}")
        return
    lo, hi = m.get("accuracy_ci", [float("nan")] * 2)
    line = f"accuracy {m.get('accuracy', float('nan')):.3f} [{lo:.3f}, {hi:.3f}] on {m.get('n_eval')} pairs"
    if "group_accuracy" in m:
        line += f"; group accuracy {m['group_accuracy']:.3f} (n={m['n_eval_item_groups']})"
    if m.get("ece") is not None:
        line += f"; ECE {m['ece']:.3f}"
    console.print(f"[bold]{m.get('objective')}[/] {m.get('model')}: {line}")
    for key in ("train_data", "eval_data"):
        d = m.get(key) or {}
        if d.get("skipped_no_preference") or d.get("truncated_groups") or d.get("skipped_response_too_long"):
            console.print(f"[yellow]{key}:[/] skipped {d['skipped_no_preference']} groups without a preference, "
                          f"{d['skipped_response_too_long']} with a response longer than the window; "
                          f"truncated the context of {d['truncated_groups']} groups")
    console.print(f"metrics: {where}")


if __name__ == "__main__":  # `accelerate launch -m hhhlab.train.cli train ...`
    app()
