"""``hhhlab sandbox check``: which isolation layers the code sandbox has on this machine, and why.

Every mode is probed afresh (strongest first) and each probe's outcome is printed with the
reason it was rejected, so a sandbox that is weaker than the machine should allow is visible
before any model-written code runs. Exit status: 0 when the policy (``--policy``, default
``$HHHLAB_SANDBOX`` or strict) is met, 2 when a run under it would be refused.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)


@app.callback()
def _group() -> None:
    """The code sandbox (see docs/sandbox.md)."""


@app.command("check")
def check_cmd(
    policy: str = typer.Option(
        None, "--policy", "--sandbox", help="strict (needs net/pid/mount namespaces) or best-effort; "
        "default: $HHHLAB_SANDBOX, else strict"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    run_all: bool = typer.Option(False, "--all", help="probe every mode, not only until one holds"),
) -> None:
    """Probe the sandbox's isolation modes and print the layers, each probe's outcome and why."""
    from hhhlab import sandbox

    chosen_policy = sandbox.resolve_policy(policy)
    report = sandbox.isolation_report(refresh=True)
    probes = list(report.probes)
    if run_all:
        tried = {p.mode for p in probes}
        probes += [sandbox._probe(m) for m in sandbox._candidate_modes() if m.describe() not in tried]
    missing = report.missing(chosen_policy)
    if as_json:
        d = report.to_dict()
        d["probes"] = [{**p.__dict__, "layers": list(p.layers)} for p in probes]
        print(json.dumps({**d, "policy": chosen_policy, "missing": list(missing)}, indent=2))
    else:
        console = Console()
        table = Table(title="sandbox probes (strongest first)")
        for col in ("mode", "layers", "outcome", "seconds"):
            table.add_column(col)
        for p in probes:
            table.add_row(p.mode, ", ".join(p.layers), "ok" if p.ok else f"rejected: {p.reason}",
                          f"{p.seconds:.2f}")
        console.print(table)
        console.print(f"layers in use: [bold]{', '.join(report.layers()) or 'none'}[/]")
        for exposed in report.exposed:
            console.print(f"[yellow]note:[/] {exposed} stays visible inside the sandbox (the interpreter lives there)")
        if missing:
            console.print(f"policy {chosen_policy}: REFUSED, missing {', '.join(missing)}", style="red")
            console.print(sandbox.REMEDY, markup=False)
        else:
            console.print(f"policy {chosen_policy}: [green]met[/]")
    if missing:
        raise typer.Exit(2)
