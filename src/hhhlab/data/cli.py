"""``hhhlab data ...``: build, split, inspect preference data (see data/)."""

import typer

app = typer.Typer(no_args_is_help=True)
