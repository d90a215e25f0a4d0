"""``hhhlab eval``: run alignment and capability evals."""

import typer


def register(app: typer.Typer) -> None:
    """Add the ``eval`` command to the main app."""
