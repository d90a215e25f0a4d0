"""``hhhlab serve`` and ``hhhlab elo``. Their flags are generated from `ServeConfig` and
`EloConfig` (feedback/config.py) by ``hhhlab.configflags``, so each config is the one source of
flags and defaults."""

from __future__ import annotations

import inspect
import ipaddress
from typing import Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from hhhlab.configflags import build_config, config_flags
from hhhlab.feedback.config import EloConfig, ServeConfig

console = Console()


def _config(model: type[BaseModel], given: dict[str, Any]) -> Any:
    return build_config(model, None, given, where="options")


# -- serve --------------------------------------------------------------------------------------
def _serve(add_rater: str | None = None, add_admin: str | None = None, token_days: float | None = None,
           **kwargs: Any) -> None:
    """Serve the A/B comparison app (paper §2.4, Fig 1) on 127.0.0.1, or print a rater's token."""
    from hhhlab.feedback.app import build_app, default_db
    from hhhlab.feedback.db import FeedbackStore

    if add_rater or add_admin:
        store = FeedbackStore(default_db(kwargs.get("db")))
        for name, admin in ((add_rater, False), (add_admin, True)):
            if name:
                token = store.add_rater(name, admin=admin, days=token_days)
                kind = "admin" if admin else "rater"
                console.print(f"{kind} [bold]{name}[/] (database {store.url}); access token, shown once:",
                              soft_wrap=True)
                print(token, flush=True)
        return
    cfg = _config(ServeConfig, kwargs)
    try:
        loopback = ipaddress.ip_address(cfg.host).is_loopback
    except ValueError:
        loopback = cfg.host == "localhost"
    app = build_app(cfg, log_fn=lambda m: console.print(m, soft_wrap=True))
    names = ", ".join(app.state.pool.names)
    console.print(f"serving {len(app.state.pool.names)} systems ({names}) on http://{cfg.host}:{cfg.port} "
                  f"with the database {app.state.store.url}", soft_wrap=True)
    if not loopback:
        console.print(f"[yellow]warning:[/] bound to {cfg.host}, not loopback: anyone who can reach it sees the "
                      "sign-in page (use a reverse proxy with TLS)")
    import uvicorn

    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)


_serve.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    inspect.Parameter("add_rater", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                      default=typer.Option(None, "--add-rater", help="create a rater (or re-key one), print its "
                                           "access token and exit")),
    inspect.Parameter("add_admin", inspect.Parameter.KEYWORD_ONLY, annotation=str | None,
                      default=typer.Option(None, "--add-admin", help="like --add-rater, with export rights")),
    inspect.Parameter("token_days", inspect.Parameter.KEYWORD_ONLY, annotation=float | None,
                      default=typer.Option(None, "--token-days", help="the new token expires after this many days")),
    *config_flags(ServeConfig)])


# -- elo ----------------------------------------------------------------------------------------
def _elo(**kwargs: Any) -> None:
    """Elo scores (Bradley–Terry MLE, PM loss) from comparisons, with QC counts, win table, figures."""
    from hhhlab.feedback.analysis import analyze, write_outputs

    cfg = _config(EloConfig, kwargs)
    result = analyze(cfg)
    written = write_outputs(result, cfg)
    _print_elo(result)
    for p in written:
        console.print(f"wrote {p}", soft_wrap=True)


_elo.__signature__ = inspect.Signature(config_flags(EloConfig))  # type: ignore[attr-defined]


def _print_elo(r: dict[str, Any]) -> None:
    without = r.get("elo_without_flagged") or {}
    table = Table(title=f"Elo by {r['by']} ({r['method']}, {r['n_fitted']} comparisons, 95% bootstrap CI)")
    table.add_column(r["by"], overflow="fold", min_width=min(40, max(len(n) for n in r["elo"])))
    for col in ("Elo", "95% CI", "n", "without flagged", *[m for m in r["methods"] if m != r["method"]]):
        table.add_column(col)
    for name, e in sorted(r["elo"].items(), key=lambda kv: -(kv[1]["value"] or 0)):
        w = without.get(name)
        others = [f"{r['methods'][m]['elo'][name]['value']:.0f}" for m in r["methods"] if m != r["method"]]
        table.add_row(name, f"{e['value']:.0f}", f"[{e['lo']:.0f}, {e['hi']:.0f}]", str(e["n"]),
                      f"{w['value']:.0f} [{w['lo']:.0f}, {w['hi']:.0f}]" if w else "-", *others)
    console.print(table)
    qc = r["qc"]
    parts = [f"{rule}: {n}" for rule, n in qc["flagged"].items()]
    console.print(f"quality control: {qc['flagged_any']} of {qc['n']} comparisons flagged ({', '.join(parts)}); "
                  f"the 'without flagged' fit excludes them ({r['n_without_flagged']} left)", soft_wrap=True)
    for rule, note in qc["not_applied"].items():
        console.print(f"  {rule}: {note}", soft_wrap=True)
    for rater, info in qc["one_side_raters"].items():
        console.print(f"  rater {rater} picked side {info['side']} in {info['share']:.0%} of {info['n']} ratings",
                      soft_wrap=True)
    if r["dropped_same_group"]:
        console.print(f"{r['dropped_same_group']} comparisons set a {r['by']} against itself and are not in the fit",
                      soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(_serve)
    app.command("elo")(_elo)
