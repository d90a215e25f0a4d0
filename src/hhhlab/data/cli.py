"""``hhhlab data ...``: build, split, inspect preference data (see data/ and docs/data.md)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from hhhlab.data.builders import SOURCES
from hhhlab.errors import DataError

app = typer.Typer(no_args_is_help=True)
console = Console(stderr=True)


@app.command("build")
def build_cmd(
    source: str = typer.Argument(..., help=f"one of: {', '.join(SOURCES)}"),
    input: Path = typer.Option(None, "--input", "-i", help="a file or a folder in the source's own format"),
    db: str = typer.Option(None, "--db", help="feedback: the comparisons database (SQLAlchemy URL or SQLite path)"),
    min_strength: int = typer.Option(1, help="feedback: drop ratings weaker than this (2 drops 'slightly better')"),
    exclude_flagged: bool = typer.Option(False, help="feedback: drop comparisons a quality-control rule flags"),
    output: Path = typer.Option(..., "--output", "-o", help="output JSON Lines (.jsonl, .jsonl.gz)"),
    seed: int = typer.Option(0, help="seed for any sampling a builder does"),
    dedupe: bool = typer.Option(True, help="drop exact duplicate groups"),
    comment_regex: str = typer.Option(None, help="wikipedia: regex for vandalism-revert edit comments"),
    reverts: str = typer.Option("comment", help="wikipedia: revert detection: comment (the paper's), identity "
                                "(text equal to a recent earlier revision) or both"),
    identity_radius: int = typer.Option(15, help="wikipedia: how many revisions back an identity revert may reach"),
    paper_subreddits: bool = typer.Option(False, help="reddit: keep only the paper's subreddit whitelist"),
    code_samples: Path = typer.Option(None, help="code: JSONL of model samples {task_id, completion}"),
    timeout_s: float = typer.Option(10.0, help="code: wall-clock limit per program"),
    strict: bool = typer.Option(False, help="exit with status 2 when any record was rejected"),
) -> None:
    """Build preference groups from a real source; bad records go to OUT.rejects.jsonl."""
    from hhhlab.data.build import BuildOptions, build

    options = BuildOptions(seed=seed, dedupe=dedupe, reddit_paper_whitelist=paper_subreddits,
                           code_samples=code_samples, code_timeout_s=timeout_s,
                           wiki_reverts=reverts, wiki_identity_radius=identity_radius)
    if comment_regex:
        options.wiki_comment_regex = comment_regex
    def progress(r) -> None:  # long dumps: a heartbeat every 100k groups
        if r.written % 100_000 == 0:
            console.print(f"{r.written:,} groups, {r.rejected:,} rejected ...", soft_wrap=True)

    if (input is None) == (db is None):
        raise DataError("give --input FILE (or --db URL for the feedback source)")
    options.extra.update(min_strength=min_strength, exclude_flagged=exclude_flagged)
    report = build(source, db if db is not None else input, output, options, progress=progress)
    console.print(report.summary(), soft_wrap=True, markup=False)
    if report.rejected:
        console.print(f"[yellow]{report.rejected} record(s) rejected:[/] see {report.rejects_path}", soft_wrap=True)
        if strict:
            raise typer.Exit(2)


@app.command("split")
def split_cmd(
    input: Path = typer.Argument(..., help="preference groups (JSONL)"),
    out_dir: Path = typer.Option(..., "--out-dir", "-o", help="writes train/validation/test .jsonl here"),
    fractions: str = typer.Option("0.9,0.05,0.05", help="train,validation,test fractions"),
    seed: int = typer.Option(0, help="changes which contexts land in which split"),
    dedupe: bool = typer.Option(True, help="drop exact duplicate groups"),
) -> None:
    """Split by context hash (no context in two splits), deterministic from --seed."""
    from hhhlab.data.splits import parse_fractions, split_file

    counts = split_file(input, out_dir, parse_fractions(fractions), seed=seed, dedupe_groups=dedupe)
    console.print(", ".join(f"{name}: {n}" for name, n in counts.items()) + f" -> {out_dir}")


@app.command("stats")
def stats_cmd(
    file: Path = typer.Argument(..., help="preference groups (JSONL)"),
    tokenizer: str = typer.Option("whitespace", help="whitespace, tiny, or a tokenizer path / hub id"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Counts, score histograms and token-length percentiles of a preference file."""
    from hhhlab.data.stats import compute_stats, print_stats

    stats = compute_stats(file, tokenizer=tokenizer)
    if as_json:
        import json

        print(json.dumps(stats, indent=2))
    else:
        print_stats(stats)
