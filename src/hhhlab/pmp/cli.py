"""The PMP commands, each with flags generated from its pydantic config (the single source of
flags, YAML keys and defaults, as ``pm train`` does from `TrainConfig`):

* ``hhhlab pmp`` (`PMPConfig`) — preference-model pre-training;
* ``hhhlab pm finetune`` (`FinetuneConfig`) — fine-tuning curves over ``--sizes``;
* ``hhhlab sweep pmp`` (`PMPSweepConfig`) and ``hhhlab sweep pmp-synthetic`` (`SyntheticSweepConfig`).

`register(root, pm_app, sweep_app)` adds them (one line in ``hhhlab/cli.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

console = Console()


def config_flags(cls) -> list[inspect.Parameter]:
    """``--config FILE`` plus the shared flags of ``cls`` (`hhhlab.configflags`), lists comma-separated."""
    from hhhlab.configflags import config_flags as shared_flags

    config = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
                               default=typer.Option(None, "--config", help="YAML file of options (flags override it)"))
    return [config, *shared_flags(cls, comma_lists=True)]


def config_command(cls, run: Callable, doc: str) -> Callable:
    def command(**kwargs) -> None:
        from hhhlab.pmp.config import load

        cfg = load(cls, kwargs.pop("config"), **kwargs)
        run(cfg)

    command.__doc__ = doc
    command.__signature__ = inspect.Signature(config_flags(cls))  # type: ignore[attr-defined]
    return command


def _pmp(cfg) -> None:
    from hhhlab import distributed
    from hhhlab.pmp.pretrain import run_pmp

    m = run_pmp(cfg)
    if distributed.is_main():
        line = f"PMP {cfg.mode} on {len(cfg.sources)} source(s): {m.get('train_steps')} steps, " \
               f"final loss {m.get('final_train_loss')}"
        if "accuracy" in m:
            line += f"; held-out accuracy {m['accuracy']:.3f} [{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}]"
        console.print(line)
        console.print(f"model: {m.get('model_dir')}; results: {Path(cfg.output) / 'results.json'}")


def _finetune(cfg) -> None:
    from hhhlab import distributed
    from hhhlab.pmp.finetune import run_finetune

    res = run_finetune(cfg)
    if distributed.is_main():
        for p in res["points"]:
            a, loss = p["accuracy"], p["pm_loss"]
            console.print(f"n={p['n']:>6}: accuracy {a['value']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}], "
                          f"PM loss {loss['value']:.3f} [{loss['lo']:.3f}, {loss['hi']:.3f}] on {a['n']} pairs")
        console.print(f"results: {Path(cfg.output) / 'results.json'} ({res['epochs']} epoch(s) per size)")


def _print_saved(saved: dict | list) -> None:
    rows = saved if isinstance(saved, list) else [{"condition": c, **r} for c, rs in saved.items() for r in rs]
    for r in rows:
        s = r["pairs_saved"]
        cens = {"above": " (PMP above every baseline point: more than this)", "below": " (below the baseline)"}.get(
            r["censored"] or "", "")
        console.print(f"{r.get('model', '')} {r.get('target', '')} {r['condition']} n={r['n']}: acc "
                      f"{r['accuracy']:.3f} = no-PMP at n≈{r['equivalent_baseline_n']:.0f}; saved "
                      f"{s['value']:.0f} [{s['lo']:.0f}, {s['hi']:.0f}]{cens}")


def _sweep_synthetic(cfg) -> None:
    from hhhlab.pmp.sweep import run_synthetic

    payload = run_synthetic(cfg)
    for p in payload["points"]:
        a = p["accuracy"]
        console.print(f"{p['condition']:<24} n={p['n']:>5}: {a['value']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]")
    _print_saved(payload["pairs_saved_vs_no_pmp"])
    console.print(f"{payload['wall_seconds']:.0f} s; results: {Path(cfg.output) / 'results.json'}; "
                  f"figures: {', '.join(payload['figures'].values())}")


def _sweep(cfg) -> None:
    from hhhlab.pmp.sweep import run_sweep

    payload = run_sweep(cfg)
    _print_saved(payload["pairs_saved"])
    console.print(f"results: {Path(cfg.output) / 'results.json'}; figures: {', '.join(payload['figures'].values())}")


def register(root: typer.Typer, pm_app: typer.Typer, sweep_app: typer.Typer) -> None:
    from hhhlab.pmp.config import FinetuneConfig, PMPConfig
    from hhhlab.pmp.sweep import PMPSweepConfig, SyntheticSweepConfig

    root.command("pmp")(config_command(
        PMPConfig, _pmp, "Preference-model pre-training: λ·L_PM + μ·L_LM over a streamed weighted mixture of "
        "PMP sources, binarized or ranked (paper §4); then `hhhlab pm finetune --init OUTPUT`."))
    pm_app.command("finetune")(config_command(
        FinetuneConfig, _finetune, "Fine-tune from a PMP checkpoint (or the plain LM) on the first n pairs of one "
        "fixed shuffle, for each n of --sizes; held-out accuracy and PM loss with CIs."))
    sweep_app.command("pmp")(config_command(
        PMPSweepConfig, _sweep, "Models x {no, binarized, ranked PMP} x targets x n, with the pairs-saved table and "
        "the Fig 4/5/17/18/29 figures; resumable cell by cell."))
    sweep_app.command("pmp-synthetic")(config_command(
        SyntheticSweepConfig, _sweep_synthetic, "The paper's synthetic ranked-vs-binary experiment (App. C.6, "
        "Fig 33): pre-train on Tb and scrambled T1-T4, fine-tune on T0."))
