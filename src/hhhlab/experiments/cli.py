"""``hhhlab sweep ...``: sweeps over models, objectives and datasets."""

import typer

app = typer.Typer(no_args_is_help=True)
