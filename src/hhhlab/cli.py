"""The ``hhhlab`` command line. Each area registers its own sub-commands in its own module
(``data/cli.py``, ``evals/cli.py``, ``train/cli.py``, ``experiments/cli.py``); this file only
assembles them and turns our errors into one clean message instead of a traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from hhhlab.errors import HHHLabError

app = typer.Typer(help="hhhlab: a laboratory for aligning language assistants.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()

def _register_demo() -> None:
    """``hhhlab demo``: the mini-reproduction and its report (code in `hhhlab.demo`)."""
    from hhhlab.demo import demo_command

    app.command("demo")(demo_command)


_register_demo()


@app.command("models")
def models_cmd(spec: str = typer.Argument("smollm2-135m"), dtype: str = typer.Option("auto")) -> None:
    """Describe a model: architecture, parameter counts (incl. non-embedding), dtype, device."""
    from hhhlab.models.load import expand_model_list, load_model

    table = Table(title="models")
    for col in ("model", "layers", "params", "non-embedding params", "dtype"):
        table.add_column(col)
    for s in expand_model_list(spec):
        d = load_model(s, dtype=dtype).describe()
        table.add_row(s, str(d["layers"]), f"{d['params']:,}", f"{d['non_embedding_params']:,}", d["dtype"])
    console.print(table)


def _register_subcommands() -> None:
    from hhhlab.data.cli import app as data_app
    from hhhlab.evals.cli import register as register_eval
    from hhhlab.experiments.cli import app as sweep_app
    from hhhlab.feedback.cli import register as register_feedback
    from hhhlab.train.cli import app as pm_app

    app.add_typer(data_app, name="data", help="Build, split and inspect preference data.")
    app.add_typer(pm_app, name="pm", help="Train and evaluate preference models and imitation baselines.")
    app.add_typer(sweep_app, name="sweep", help="Sweeps across model sizes, objectives and datasets.")
    from hhhlab.sandbox_cli import app as sandbox_app

    app.add_typer(sandbox_app, name="sandbox", help="Check the code sandbox's isolation layers on this machine.")
    register_eval(app)
    register_feedback(app)  # serve, elo
    __import__("hhhlab.distill.cli").distill.cli.register(app)  # distill
    __import__("hhhlab.pmp.cli").pmp.cli.register(app, pm_app, sweep_app)  # pmp, pm finetune, sweep pmp[-synthetic]
    from hhhlab.report.cli import report_cmd

    app.command("report")(report_cmd)
    from hhhlab.experiments.reproduce import reproduce_command

    app.command("reproduce")(reproduce_command)


_register_subcommands()


def main() -> None:
    try:
        app()
    except HHHLabError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        sys.exit(2)
