"""``hhhlab distill``: context distillation (flags generated from `DistillConfig`).

Also ``python -m hhhlab.distill.cli`` for ``accelerate launch -m hhhlab.distill.cli --model ...``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from hhhlab.configflags import build_config, config_flags
from hhhlab.distill.config import DistillConfig

app = typer.Typer(no_args_is_help=True)
console = Console()


def _distill_command(**kwargs) -> None:
    """Distil a prompt into a model: cache the prompted teacher's top-k, train the student on a KL."""
    import yaml

    from hhhlab.distill.run import run_distill
    from hhhlab.errors import HHHLabError

    yaml_path = kwargs.pop("config")
    base: dict = {}
    if yaml_path:
        try:
            base = yaml.safe_load(Path(yaml_path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise HHHLabError(f"{yaml_path}: cannot read the YAML config ({exc})") from None
    cfg = build_config(DistillConfig, base, kwargs, where=str(yaml_path or "command line"))
    doc = run_distill(cfg)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    est, pay = doc.get("estimates", {}), doc.get("payload", {})
    tc = pay.get("teacher_cache") or {}
    if tc:
        rate = f"{tc['tokens_per_s']:.0f} tokens/s" if tc.get("tokens_per_s") else "reused"
        console.print(f"teacher cache {tc['dir']}: {tc['tokens']:,} tokens, {tc['bytes_per_token']} bytes/token, {rate}")
    tr = pay.get("training") or {}
    if tr.get("history"):
        console.print(f"student: {tr['step']} steps, final loss {tr['history'][-1][1]:.4f}, "
                      f"{tr.get('units_per_s', 0):.0f} tokens/s")
    for name in ("heldout_kl_plain", "heldout_kl_student", "heldout_kl_closed"):
        if name in est:
            e = est[name]
            console.print(f"{name}: {e['value']:.4f} [{e['lo']:.4f}, {e['hi']:.4f}] (n={e['n']})")
    console.print(f"model: {cfg.output} (hhhlab eval --condition distilled:{cfg.output}); results: "
                  f"{Path(cfg.output) / 'results.json'}")


_distill_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],  # noqa: UP045
                       default=typer.Option(None, "--config", help="YAML file of options (flags override it)"))]
    + config_flags(DistillConfig))
app.command("distill")(_distill_command)


def register(root: typer.Typer) -> None:
    """Add ``hhhlab distill`` to the root app."""
    root.command("distill", help="Context distillation: a model that behaves as if prompted, without the prompt.")(
        _distill_command)


if __name__ == "__main__":  # `accelerate launch -m hhhlab.distill.cli distill ...`
    app()
