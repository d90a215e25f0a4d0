"""``hhhlab pm ...``: train and evaluate preference models / imitation baselines."""

import typer

app = typer.Typer(no_args_is_help=True)
