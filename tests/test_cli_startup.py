"""``hhhlab --help`` and every command's ``--help`` start without the ML stack: the CLI builds its
flags from the typed configs (which need pydantic, not torch), and each command imports torch,
transformers, datasets, matplotlib, ray or fastapi only when it runs. Checked in a fresh
interpreter, so what other tests imported does not hide an eager import."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "matplotlib", "ray", "fastapi", "accelerate", "peft", "scipy")
#: pages that still import the ML stack, and why; checked last (what they load would hide the
#: pages after them), and each must still do so, so that a fix removes its entry here
KNOWN_EAGER: dict[str, str] = {}

_PROBE = """
import json, sys
from typer.main import get_command
from typer.testing import CliRunner
from hhhlab.cli import app

group = get_command(app)
paths = [[]] + [[n] for n in group.commands]
paths += [[n, s] for n, c in group.commands.items() for s in getattr(c, "commands", {})]
paths.sort(key=lambda p: " ".join(p) in KNOWN_EAGER)
runner = CliRunner()
pages = {}
for p in paths:
    before = {m for m in HEAVY if m in sys.modules}
    code = runner.invoke(app, [*p, "--help"]).exit_code
    pages[" ".join(p) or "hhhlab"] = {"code": code, "loaded": sorted(m for m in HEAVY if m in sys.modules) if not before
                                     else "not checked"}
print(json.dumps(pages))
"""


def test_every_help_page_starts_without_the_ml_stack():
    code = f"HEAVY = {HEAVY!r}\nKNOWN_EAGER = {sorted(KNOWN_EAGER)!r}\n{_PROBE}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    pages = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"hhhlab", "eval", "pm train", "sweep rerank", "distill", "serve"} <= set(pages)
    assert all(p["code"] == 0 for p in pages.values()), pages
    eager = {name: p["loaded"] for name, p in pages.items() if name not in KNOWN_EAGER and p["loaded"]}
    assert not eager, f"help pages that import the ML stack: {eager}"
    for name in KNOWN_EAGER:
        assert pages[name]["loaded"], f"`hhhlab {name} --help` no longer imports the ML stack: drop it from KNOWN_EAGER"


def test_the_lazy_registries_still_resolve():
    """What the help pages no longer import is there on first use."""
    from hhhlab.models import load_model
    from hhhlab.models.device import resolve_dtype
    from hhhlab.train.objectives import Objective, get_objective, objective_names

    assert callable(load_model) and str(resolve_dtype("bf16")) == "torch.bfloat16"
    assert {"imitation", "preference", "classifier", "language_model"} <= set(objective_names())
    assert issubclass(get_objective("ranked"), Objective)
