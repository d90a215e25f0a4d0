"""``hhhlab eval``: run alignment and capability evals for a model ladder under the paper's
conditions, with progress bars, a table, a JSON report, the run in the results store (item-level,
resumable) and paper-style figures when several model sizes are evaluated.

Also registers ``hhhlab data fetch`` (``evals/fetch.py``) on the data sub-app."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

console = Console(emoji=False)


def parse_eval_options(items: list[str]) -> dict:
    """``["samples=5", "toxicity.classifier=x"]`` -> {"samples": 5, "toxicity.classifier": "x"}; values are
    read as YAML scalars (5 is an int, 0.5 a float, true a bool, anything else a string)."""
    import yaml

    from hhhlab.errors import HHHLabError

    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise HHHLabError(f"--eval-option {item!r}: expected KEY=VALUE")
        try:
            parsed = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            parsed = value
        out[key.strip()] = parsed if isinstance(parsed, (int, float, bool, str)) else value
    return out


def eval_cmd(
    model: str = typer.Option("smollm2-135m", "--model", "-m",
                              help="model spec or ladder list, e.g. smollm2-135m@L4,@L8,smollm2-135m"),
    evals: str = typer.Option("hhh_alignment", "--evals", "-e", help="comma-separated eval names"),
    condition: str = typer.Option("plain", "--condition", "-c",
                                  help="comma-separated: plain, prompt, distilled:PATH ({model} in PATH is "
                                       "replaced by each model of a ladder)"),
    limit: int = typer.Option(None, "--limit", help="a seeded random subset of N items per eval"),
    data_dir: Path = typer.Option(None, "--data-dir", help="local data laid out like shared/data"),
    output: Path = typer.Option(None, "--output", "-o", help="write the JSON report here"),
    batch_size: int = typer.Option(16, "--batch-size", help="scoring batch size (metrics do not depend on it)"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 where native, else float32), float32 or bfloat16"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, ..."),
    prompt: Path = typer.Option(None, "--prompt", help="a prompt file instead of the built-in HHH prompt"),
    resume: bool = typer.Option(False, "--resume", help="continue the latest run with the same settings, "
                                                          "skipping items it finished"),
    format_variants: bool = typer.Option(False, "--format-variants",
                                         help="also run framed conditions under each documented prompt format "
                                              "and report each metric's spread"),
    seed: int = typer.Option(0, "--seed", help="seed for --limit sampling and bootstrap CIs"),
    figures: Path = typer.Option(None, "--figures", help="folder for PNG figures (default: the run folder)"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show progress bars"),
    eval_option: list[str] = typer.Option(None, "--eval-option",
                                          help="KEY=VALUE for the evals (repeatable), e.g. samples=5, "
                                               "toxicity.classifier=detoxify:PATH, humaneval.timeout_s=20"),
) -> None:
    """Run evals (hhh_alignment, truthfulqa_mc1, truthfulqa_mc2, lambada, hellaswag, bbq, ...)."""
    from hhhlab import distributed
    from hhhlab.errors import HHHLabError
    from hhhlab.evals.base import check_options, parse_conditions, parse_evals
    from hhhlab.evals.runner import SuiteConfig, run_suite
    from hhhlab.models.load import expand_model_list
    from hhhlab.store import ResultsStore, atomic_write_json

    if batch_size < 1:
        raise HHHLabError(f"--batch-size must be at least 1, got {batch_size}")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise HHHLabError(f"--dtype must be auto, float32 or bfloat16, got {dtype!r}")
    cfg = SuiteConfig(
        models=expand_model_list(model), evals=parse_evals(evals), conditions=parse_conditions(condition),
        limit=limit, data_dir=data_dir, batch_size=batch_size, dtype=dtype, device=device,
        prompt_path=str(prompt) if prompt else None, seed=seed, format_variants=format_variants,
        progress=progress, options=parse_eval_options(eval_option or []),
    )
    if not cfg.models:
        raise HHHLabError(f"--model {model!r} names no model")
    check_options(cfg.evals, cfg.options)  # an unknown option or bad value: refused before any run exists
    if format_variants and not any(c.framed for c in cfg.conditions):
        console.print("[yellow]note:[/] --format-variants applies to framed conditions (prompt, distilled); "
                      "none was given")

    # Under `accelerate launch` / torchrun the main process creates (or finds) the run and every
    # process stores its own share of the items in it; only the main process reports.
    main = distributed.is_main()
    store = ResultsStore()
    run = None
    if main:
        run = _find_resumable(store, cfg) if resume else None
        if resume and run is None:
            console.print("[yellow]note:[/] no earlier run with these settings; starting a new one")
        if run is None:
            run = store.create_run("eval", {**cfg.to_dict(), "identity": cfg.identity()}, name=",".join(cfg.evals))
        else:
            console.print(f"resuming run {run.run_id} ({len(run.items())} items stored)")
        run.log(f"eval started on {distributed.world_size()} process(es): {cfg.to_dict()}")
    run_id = distributed.broadcast(run.run_id if run is not None else None)
    if run is None:
        run = store.create_run("eval", {}, run_id=run_id)

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not (progress and main), transient=False)
    tasks: dict[str, TaskID] = {}

    def on_progress(label: str, advance: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bars.add_task(label, total=total)
        bars.update(tasks[label], advance=advance, total=total)

    try:
        with bars:
            report = run_suite(cfg, run=run, on_progress=on_progress, log=run.log if main else None)
    except BaseException as exc:
        if main:
            run.log(f"eval failed: {type(exc).__name__}: {exc}")
            run.finish({"error": f"{type(exc).__name__}: {exc}", "items_stored": len(run.items())}, status="failed")
        if isinstance(exc, HHHLabError):
            raise HHHLabError(f"{exc} (finished items are kept in run {run.run_id}; rerun with --resume)") from exc
        raise
    if not main:
        return

    caveats = sorted({f"{m['model']}: {c}" for m in report.models.values() for c in m.get("caveats", [])})
    data = {"run_id": run.run_id, **report.to_dict(), "caveats": caveats, "processes": distributed.world_size()}
    print_report(data)
    fig_dir = figures or (run.path / "figures")
    extra = {"run_id": run.run_id, "caveats": caveats, "processes": distributed.world_size()}
    if len({m["non_embedding_params"] for m in data["models"].values()}) > 1:
        from hhhlab.report.figures import plot_suite

        paths = plot_suite(data, fig_dir)
        extra["figures"] = [str(p) for p in paths]
        console.print(f"figures: {', '.join(str(p) for p in paths)}")
    doc = report.document(**extra)  # the results document (hhhlab.results): metrics.json and --output
    run.finish(doc)
    if output:
        atomic_write_json(output, doc)
        console.print(f"wrote {output}")
    console.print(f"run {run.run_id} in {run.path}")


def _find_resumable(store, cfg):
    identity = cfg.identity()
    for rec in reversed(store.runs(kind="eval")):
        if (rec.get("config") or {}).get("identity") == identity:
            return store.create_run("eval", rec["config"], run_id=rec["run_id"])
    return None


def _fmt(est: dict) -> str:
    return f"{est['value']:.3f} [{est['lo']:.3f}, {est['hi']:.3f}]"


def print_report(data: dict) -> None:
    table = Table(title="eval results (95% bootstrap CI)")
    for col in ("model", "condition", "eval", "metric", "value [95% CI]", "n"):
        table.add_column(col)
    for r in data["results"]:
        cond = r["condition"] + (f" / {r['variant']}" if r["variant"] else "")
        for i, (metric, est) in enumerate(r["metrics"].items()):
            table.add_row(r["model"] if i == 0 else "", cond if i == 0 else "", r["eval"] if i == 0 else "",
                          metric, _fmt(est), str(est["n"]))
    console.print(table)
    if data["differences"]:
        diff = Table(title="differences between conditions (paired bootstrap, same items)")
        for col in ("model", "eval", "metric", "comparison", "difference [95% CI]", "n"):
            diff.add_column(col)
        for d in data["differences"]:
            diff.add_row(d["model"], d["eval"], d["metric"], d["comparison"], _fmt(d), str(d["n"]))
        console.print(diff)
    if data["format_spread"]:
        spread = Table(title="format sensitivity: each metric under each prompt format")
        for col in ("model", "condition", "eval", "metric", "values", "spread (max-min)"):
            spread.add_column(col)
        for s in data["format_spread"]:
            vals = ", ".join(f"{k}={v:.3f}" for k, v in s["values"].items())
            spread.add_row(s["model"], s["condition"], s["eval"], s["metric"], vals, f"{s['spread']:.3f}")
        console.print(spread)
    for caveat in data.get("caveats", []):
        console.print(f"[yellow]caveat:[/] {caveat}")


def register(app: typer.Typer) -> None:
    """Add ``hhhlab eval`` to the main app and ``fetch`` to its ``data`` sub-app."""
    app.command("eval")(eval_cmd)
    from hhhlab.evals.fetch import register_fetch

    for group in app.registered_groups:
        if group.name == "data" and group.typer_instance is not None:
            register_fetch(group.typer_instance)
            break
