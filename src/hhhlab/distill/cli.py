"""``hhhlab distill``: context distillation (flags generated from `DistillConfig`),
``hhhlab distill compare``: plain vs prompted vs distilled on the evals (flags from
`CompareConfig`), and ``hhhlab distill toy``: the counting toy (Fig 26).

Also ``python -m hhhlab.distill.cli`` for ``accelerate launch -m hhhlab.distill.cli --model ...``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from hhhlab.configflags import build_config, config_flags
from hhhlab.distill.config import CompareConfig, DistillConfig

HELP = "Context distillation: a model that behaves as if prompted, without the prompt."
#: ``hhhlab distill [OPTIONS]`` runs a distillation; ``hhhlab distill compare`` measures one
app = typer.Typer(no_args_is_help=True, invoke_without_command=True, help=HELP)
console = Console()


def _yaml_values(yaml_path: Path | None) -> dict:
    import yaml

    from hhhlab.errors import HHHLabError

    if not yaml_path:
        return {}
    try:
        return yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise HHHLabError(f"{yaml_path}: cannot read the YAML config ({exc})") from None


def _distill_command(ctx: typer.Context, **kwargs) -> None:
    """Distil a prompt into a model: cache the prompted teacher's top-k, train the student on a KL.

    `hhhlab distill compare --help`: plain vs prompted vs distilled on the evals."""
    if ctx.invoked_subcommand is not None:  # `hhhlab distill compare ...`: nothing to do here
        return
    from hhhlab.distill.run import run_distill  # torch: only when a distillation runs

    yaml_path = kwargs.pop("config")
    cfg = build_config(DistillConfig, _yaml_values(yaml_path), kwargs, where=str(yaml_path or "command line"))
    doc = run_distill(cfg)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    est, pay = doc.get("estimates", {}), doc.get("payload", {})
    tc = pay.get("teacher_cache") or {}
    if tc:
        rate = f"{tc['tokens_per_s']:.0f} tokens/s" if tc.get("tokens_per_s") else "reused"
        console.print(f"teacher cache {tc['dir']}: {tc['tokens']:,} tokens, {tc['bytes_per_token']} bytes/token, {rate}")
    tr = pay.get("training") or {}
    if tr.get("history"):
        console.print(f"student: {tr['step']} steps, final loss {tr['history'][-1][1]:.4f}, "
                      f"{tr.get('units_per_s', 0):.0f} tokens/s")
    for name in ("heldout_kl_plain", "heldout_kl_student", "heldout_kl_closed"):
        if name in est:
            e = est[name]
            console.print(f"{name}: {e['value']:.4f} [{e['lo']:.4f}, {e['hi']:.4f}] (n={e['n']})")
    console.print(f"model: {cfg.output} (hhhlab eval --condition distilled:{cfg.output}); results: "
                  f"{Path(cfg.output) / 'results.json'}")


def _compare_command(**kwargs) -> None:
    """Plain vs prompted vs distilled on the same seeded eval items, per model of a ladder: every
    metric with CIs, the fraction of the prompt's gain the student keeps (paired bootstrap), and
    the context cost (tokens and seconds per item)."""
    from hhhlab.distill.measure import compare_identity, compare_in_run, suite_config
    from hhhlab.errors import HHHLabError
    from hhhlab.evals.base import check_options
    from hhhlab.store import ResultsStore, atomic_write_json

    yaml_path = kwargs.pop("config")
    cfg = build_config(CompareConfig, _yaml_values(yaml_path), kwargs, where=str(yaml_path or "command line"))
    suite = suite_config(cfg)  # bad models, evals or a one-checkpoint ladder: refused before any run exists
    check_options(suite.evals, {})
    store = ResultsStore()
    identity = compare_identity(cfg)
    run = None
    if cfg.resume:
        for rec in reversed(store.runs(kind="distill_compare")):
            if (rec.get("config") or {}).get("identity") == identity:
                run = store.create_run("distill_compare", rec["config"], run_id=rec["run_id"])
                console.print(f"resuming run {run.run_id} ({len(run.items())} items stored)")
                break
        else:
            console.print("[yellow]note:[/] no earlier compare run with these settings; starting a new one")
    if run is None:
        run = store.create_run("distill_compare", {**cfg.model_dump(), "identity": identity}, name=cfg.evals)
    def log(msg: str) -> None:  # each finished (model, condition, eval) as it ends
        run.log(msg)
        if cfg.progress:
            console.print(msg)

    try:
        doc = compare_in_run(cfg, run, log)
    except HHHLabError as exc:
        raise HHHLabError(f"{exc} (finished items are kept in run {run.run_id}; rerun with --resume)") from exc
    atomic_write_json(cfg.output, doc)
    _print_compare(doc)
    console.print(f"wrote {cfg.output} (run {run.run_id})")


def _print_compare(doc: dict) -> None:
    from rich.table import Table

    def ci(e: dict | None) -> str:
        if not e or e.get("value") is None:
            return "n/a"
        return f"{e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]" if e.get("lo") is not None else f"{e['value']:.3f}"

    table = Table(title="plain vs prompted vs distilled (95% CIs; fraction kept: paired bootstrap)")
    for col in ("model", "eval", "metric", "plain", "prompt", "distilled", "fraction kept"):
        table.add_column(col)
    for entry in doc["payload"]["ladder"]:
        for ev, by_metric in entry["metrics"].items():
            for metric, by in by_metric.items():
                frac = entry["fraction_of_gain_kept"].get(ev, {}).get(metric)
                table.add_row(entry["model"], ev, metric, *(ci(by.get(c)) for c in ("plain", "prompt", "distilled")),
                              ci(frac))
    console.print(table)
    for entry in doc["payload"]["ladder"]:
        for ev, cost in entry["context_cost"].items():
            tok = cost.get("context_tokens_per_item", {})
            sec = cost.get("seconds_per_item", {})
            console.print(f"{entry['model']} {ev}: context tokens/item " + ", ".join(
                f"{c} {tok[c]['value']:.0f}" for c in tok) + "; s/item " + ", ".join(
                f"{c} {v:.3f}" for c, v in sec.items() if v is not None))


def _config_flag() -> inspect.Parameter:
    return inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],  # noqa: UP045
                             default=typer.Option(None, "--config", help="YAML file of options (flags override it)"))


_distill_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context), _config_flag(),
     *config_flags(DistillConfig)])
_compare_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [_config_flag(), *config_flags(CompareConfig)])
app.callback()(_distill_command)
app.command("compare")(_compare_command)


@app.command("toy")
def _toy_command(
    model: str = typer.Option("smollm2-135m", help="model spec; the teacher must be able to count (the full "
                              "default model does, its @L8 rung does not)"),
    steps: int = typer.Option(30, min=1, help="AdamW steps per arm"),
    lr: float = typer.Option(1e-4, help="learning rate of both arms"),
    output: Path = typer.Option(Path("results/counting_toy"), help="folder for results.json and counting_toy.png"),
) -> None:
    """The counting toy (Fig 26): fine-tuning on the context "1, ..., 63," vs distilling it."""
    from hhhlab.distill.toy import main

    main(model=model, steps=steps, lr=lr, output=str(output))


def register(root: typer.Typer) -> None:
    """Add ``hhhlab distill`` (and ``hhhlab distill compare``) to the root app."""
    root.add_typer(app, name="distill", help=HELP)


if __name__ == "__main__":  # `accelerate launch -m hhhlab.distill.cli --model ...`
    import sys

    from hhhlab.errors import HHHLabError

    try:
        app()
    except HHHLabError as exc:  # one line, as `hhhlab distill` prints it
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        sys.exit(2)
