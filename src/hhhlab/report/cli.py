"""``hhhlab report``: the HTML report, rebuilt from the results store without recomputing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(emoji=False)


def report_cmd(
    runs: Annotated[list[str] | None, typer.Option(
        "--runs", help="run ids, run directories or results files (repeatable or comma-separated); "
                       "default: every run in the store")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")] = Path("report.html"),
    store: Annotated[Path | None, typer.Option("--store", help="results store root (default: $HHHLAB_HOME)")] = None,
    title: Annotated[str, typer.Option(help="the report's title")] = "hhhlab report",
) -> None:
    """Write one self-contained HTML report (figures, tables with CIs, provenance) from results."""
    from hhhlab.report.collect import collect
    from hhhlab.report.html import build_report
    from hhhlab.store import ResultsStore

    refs = [r.strip() for item in (runs or []) for r in item.split(",") if r.strip()] or None
    collection = collect(refs, store=ResultsStore(store) if store else None)
    path, sections = build_report(collection, output, title=title)
    for problem in collection.problems:
        console.print(f"[yellow]not read:[/] {problem}")
    for r in sections:
        colour = {"ok": "green", "error": "red"}.get(r.status, "yellow")
        console.print(f"[{colour}]{r.status:>13}[/] {r.section.title}" + (f": {r.message}" if r.message else ""))
    console.print(f"wrote {path}")
    print(path.resolve())
