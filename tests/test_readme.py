"""Every command the README shows (its ```bash blocks) is run here.

* Every ``hhhlab ...`` command is parsed by the real CLI (flags that do not exist fail), fast.
* The cheap ones run as written: ``hhhlab report``, ``hhhlab reproduce ... --dry-run``.
* The heavy ones (``hhhlab demo``, ``hhhlab reproduce --config paper-cpu``) run as written plus
  overrides that put them on a tiny model and tiny data (later flags win), marked slow.
* The two set-up commands (``pip install ...``) are what ``.ci/run`` runs; the test checks that
  it still runs those and that the extras they name exist.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hhhlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    """The shell commands of the README's bash blocks, split at ``&&``."""
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                cmds.extend(part.strip() for part in line.split("&&"))
    return cmds


CMDS = readme_commands()
HHHLAB = [c for c in CMDS if c.startswith("hhhlab ")]


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def test_readme_shows_the_main_commands():
    subs = {shlex.split(c)[1] for c in HHHLAB}
    assert {"demo", "report", "reproduce"} <= subs, subs
    assert len(HHHLAB) >= 5


@pytest.mark.parametrize("cmd", HHHLAB)
def test_every_readme_command_parses(cmd):
    res = CliRunner().invoke(app, shlex.split(cmd)[1:] + ["--help"])
    assert res.exit_code == 0, f"{cmd}: {res.output}"


def test_setup_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    installs = [c for c in CMDS if c.startswith("python3 -m pip install")]
    assert len(installs) == 2
    # CI installs the README's test extras (plus `dev`, for ruff and mypy) and runs the same pytest
    ci_install = re.search(r'python3 -m pip install -q torch==2\.13\.0 -e "\.\[([\w,]+)\]"', ci)
    assert ci_install and "test" in ci_install.group(1).split(","), ci
    assert "python3 -m pytest" in ci
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for c in installs:
        for extra in re.findall(r"\.\[(\w+)\]", c):
            assert extra in extras, c
    assert "python3 -m pytest" in CMDS


def test_report_command_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cmd in (c for c in HHHLAB if shlex.split(c)[1] == "report"):
        res = invoke(shlex.split(cmd)[1:])
        assert res.exit_code == 0, res.output
        out = shlex.split(cmd)[shlex.split(cmd).index("--output") + 1]
        assert (tmp_path / out).exists() and "Not run / no data" in (tmp_path / out).read_text()


def test_reproduce_dry_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dry = [c for c in HHHLAB if shlex.split(c)[1] == "reproduce" and "--dry-run" in c]
    assert dry
    for cmd in dry:
        res = invoke(shlex.split(cmd)[1:])
        assert res.exit_code == 0, res.output
        assert "cells; config" in res.output and "todo" in res.output


def _tiny_overrides(tmp_path: Path, sub: str) -> list[str]:
    from report_run import TINY, tiny_study
    from test_evals import PROMPT, make_data

    data = tmp_path / "tinydata"
    if not data.exists():
        make_data(data)
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT)
    if sub == "demo":
        return ["--model", TINY, "--eval-ladder", "@L1,full", "--pm-ladder", "@L1,full", "--evals", "hhh_alignment",
                "--prompt", str(prompt), "--data-dir", str(data), "--pm-data", "arithmetic", "--eval-items", "6",
                "--pm-train-pairs", "16", "--pm-eval-pairs", "16", "--pm-steps", "2", "--pm-batch-size", "4",
                "--max-length", "48", "--dtype", "float32", "--distill-rung", "@L1", "--distill-tokens", "64",
                "--distill-heldout-tokens", "64", "--distill-context", "16", "--pmp-rung", "@L1",
                "--pmp-pairs", "32", "--pmp-sizes", "0,8", "--pmp-conditions", "none,Tb", "--no-progress",
                "--workdir", str(tmp_path / "demo-work")]
    study = tiny_study(tmp_path)
    return ["--models", study.models, "--data-dir", str(data), "--dtype", "float32",
            "--set", f"evals.prompt={prompt}", "--set", "evals.limit=6", "--set", "evals.evals=[hhh_alignment]",
            "--set", f"pm_vs_il.datasets={study.pm_vs_il.datasets}".replace("'", ""),
            "--set", "pm_vs_il.train_size=16", "--set", "pm_vs_il.eval_size=16", "--set", "pm_vs_il.max_steps=2",
            "--set", "pm_vs_il.batch_size=4", "--set", "pm_vs_il.max_length=48",
            # the other stages: null, but for one small synthetic PMP cell (tests/test_reproduce_stages.py
            # runs each of them on tiny models)
            "--set", "rerank=null", "--set", "rerank_code=null", "--set", "distill=null",
            "--set", f"pmp_synthetic.model={TINY}", "--set", "pmp_synthetic.letters=3",
            "--set", "pmp_synthetic.pmp_pairs=32", "--set", "pmp_synthetic.sizes=[0, 8]",
            "--set", "pmp_synthetic.conditions=[none, T2]", "--set", "pmp_synthetic.eval_pairs=20"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("cmd", [c for c in HHHLAB if shlex.split(c)[1] in ("demo", "reproduce")
                                 and "--dry-run" not in c])
def test_heavy_readme_commands_run_on_a_tiny_model(cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = shlex.split(cmd)[1:]
    res = invoke(args + _tiny_overrides(tmp_path, args[0]))
    assert res.exit_code == 0, res.output
    if args[0] == "demo":
        out = Path(args[args.index("--output") + 1]) if "--output" in args else Path("report.html")
        assert str((tmp_path / out).resolve()) in res.output
        assert 'data-paper-fig="2L"' in (tmp_path / out).read_text()
    else:
        out = Path(args[args.index("--output") + 1])
        assert (tmp_path / out / "report.html").exists()
