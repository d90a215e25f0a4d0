"""Bad input for the sandbox, simulated: no `unshare` on PATH, user namespaces disabled, a
read-only /tmp. Each gives a clear message naming the missing layer; the strict policy (the
default) refuses; the weaker mode runs only on explicit opt-in. Plus ``hhhlab sandbox check``
and the code evals / builder refusing, printing and recording their layers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hhhlab import sandbox
from hhhlab.sandbox import SandboxError, run_python


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Every test probes under its own simulated machine; the real probe is restored after."""
    monkeypatch.setattr(sandbox, "_report", None)
    monkeypatch.delenv(sandbox.POLICY_ENV, raising=False)
    yield
    sandbox._report = None


def _path_without(tmp_path: Path, missing: str, fake: str | None = None) -> str:
    """A PATH holding the tools the sandbox uses, except ``missing`` (or with a fake of it)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "mount", "setpriv", "kill", "unshare"):
        real = shutil.which(tool)
        if tool == missing:
            if fake is not None:
                (bin_dir / tool).write_text(fake)
                (bin_dir / tool).chmod(0o755)
        elif real:
            (bin_dir / tool).symlink_to(real)
    return str(bin_dir)


def _weakened(report: sandbox.IsolationReport) -> None:
    assert report.mode is not None and "netns" not in report.layers()
    assert report.missing("strict") == sandbox.NAMESPACE_LAYERS
    assert report.missing("best-effort") == ()


def _refused_then_opt_in(monkeypatch, *needles: str) -> None:
    """Strict (default) refuses, naming the missing layers and ``needles``; best-effort runs."""
    with pytest.raises(SandboxError) as exc:
        sandbox.require()
    msg = str(exc.value)
    assert "netns, pidns, mountns" in msg and "best-effort" in msg, msg
    for n in needles:
        assert n in msg, msg
    r = run_python("print('hi')\n")
    assert r.status == "error" and not r.passed and "netns" in r.detail and r.isolation == ()
    monkeypatch.setenv(sandbox.POLICY_ENV, "best-effort")
    r = run_python("print('hi')\n")
    assert r.passed and "netns" not in r.isolation, r
    assert run_python("print('hi')\n", policy="strict").status == "error"  # the caller's word wins


def test_no_unshare_on_path_refuses_strict_and_runs_weaker_on_opt_in(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _path_without(tmp_path, "unshare"))
    report = sandbox.isolation_report()
    _weakened(report)
    assert all("unshare not found on PATH (install util-linux)" in p.reason
               for p in report.probes if "namespaces" in p.mode)
    _refused_then_opt_in(monkeypatch, "unshare not found on PATH")


def test_user_namespaces_disabled_refuses_strict_with_the_kernel_message(tmp_path, monkeypatch):
    fake = "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n"
    monkeypatch.setenv("PATH", _path_without(tmp_path, "unshare", fake))
    report = sandbox.isolation_report()
    _weakened(report)
    reasons = [p.reason for p in report.probes if "namespaces" in p.mode]
    assert reasons and all("Operation not permitted" in r and "user namespaces" in r for r in reasons)
    _refused_then_opt_in(monkeypatch, "Operation not permitted", "unprivileged_userns_clone")


def test_a_namespace_whose_mounts_cannot_be_made_read_only_is_rejected(tmp_path, monkeypatch):
    """`mount` failing inside the namespace (e.g. a locked-down container) is a failed probe
    with the failing step named, never a namespace mode that silently leaves /tmp writable."""
    fake = "#!/bin/sh\necho 'mount: permission denied' >&2\nexit 32\n"
    monkeypatch.setenv("PATH", _path_without(tmp_path, "mount", fake))
    report = sandbox.isolation_report()
    reasons = [p.reason for p in report.probes if "namespaces" in p.mode]
    if os.geteuid() == 0:  # the uid-only mode needs no mount
        _weakened(report)
    assert reasons and all("setup failed: mount a private /proc" in r for r in reasons), reasons


def test_read_only_tmp_is_a_clear_error_in_every_policy(monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", kwargs.get("dir", "/tmp"))

    monkeypatch.setattr(sandbox.tempfile, "mkdtemp", read_only)
    report = sandbox.isolation_report()
    assert report.mode is None and report.probes
    assert all("Read-only file system" in p.reason and "TMPDIR" in p.reason for p in report.probes)
    for policy in ("strict", "best-effort"):
        r = run_python("print('hi')\n", policy=policy)
        assert r.status == "error" and "TMPDIR" in r.detail, r
    with pytest.raises(SandboxError, match="Read-only file system"):
        sandbox.require("best-effort")


def test_temp_dir_falling_back_into_the_checkout_is_refused(monkeypatch):
    """tempfile uses the current dir when no temp dir is writable: a work dir there would keep
    the checkout visible, so it is an error that says to set TMPDIR."""
    monkeypatch.setattr(sandbox.tempfile, "tempdir", os.getcwd())
    with pytest.raises(SandboxError, match="set TMPDIR"):
        sandbox._work_root()
    assert sandbox.isolation_report().mode is None
    r = run_python("print('hi')\n", policy="best-effort")
    assert r.status == "error" and "TMPDIR" in r.detail


def test_another_writable_temp_dir_keeps_the_strong_mode(tmp_path_factory, monkeypatch):
    """A read-only /tmp with TMPDIR pointing elsewhere: still every layer."""
    from test_sandbox import namespaces_work

    if not namespaces_work():
        pytest.skip("this machine cannot create net/pid/mount namespaces")
    other = Path(sandbox.tempfile.mkdtemp(prefix="hhhlab-othertmp-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    other.chmod(0o755)
    try:
        monkeypatch.setattr(sandbox.tempfile, "tempdir", str(other))
        report = sandbox.isolation_report()
        assert set(sandbox.NAMESPACE_LAYERS) <= set(report.layers()), report.explain()
        r = run_python("open('x', 'w').write('1')\nprint(open('x').read())\n")
        assert r.passed and r.stdout == "1\n"
        assert list(other.iterdir()) == []  # work dirs removed
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_unknown_policy_is_an_error():
    with pytest.raises(SandboxError, match="strict or best-effort"):
        sandbox.resolve_policy("lax")
    assert sandbox.resolve_policy("best_effort") == "best-effort"


def test_sandbox_check_prints_layers_probes_and_refuses_with_exit_2(tmp_path, monkeypatch):
    from hhhlab.sandbox_cli import app

    runner = CliRunner()
    monkeypatch.setenv("PATH", _path_without(tmp_path, "unshare"))
    out = runner.invoke(app, ["check"], env={"COLUMNS": "300"})
    assert out.exit_code == 2, out.output
    assert "unshare not found" in out.output and "REFUSED" in out.output and "best-effort" in out.output
    out = runner.invoke(app, ["check", "--policy", "best-effort", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert d["policy"] == "best-effort" and d["missing"] == [] and "netns" not in d["layers"]
    assert any(not p["ok"] and "unshare" in p["reason"] for p in d["probes"])


def test_code_eval_refuses_before_sampling_and_records_layers(tmp_path, monkeypatch):
    """humaneval under strict with no namespaces: refused before any sample is drawn; with
    the explicit opt-out it runs and every item records its layers and policy."""
    from hhhlab.evals.base import EvalContext, get_eval
    from hhhlab.evals.runner import run_eval

    data = tmp_path / "data" / "humaneval"
    data.mkdir(parents=True)
    prob = {"task_id": "T/0", "entry_point": "f", "prompt": "def f(x):\n    \"\"\"Twice x.\"\"\"\n",
            "canonical_solution": "    return 2 * x\n", "test": "def check(c):\n    assert c(2) == 4\n"}
    (data / "HumanEval.jsonl").write_text(json.dumps(prob) + "\n")

    class Engine:
        calls = 0

        def generate(self, prompts, config):
            Engine.calls += 1
            return [["    return 2 * x\n"] * config.num_samples for _ in prompts]

    monkeypatch.setenv("PATH", _path_without(tmp_path, "unshare"))
    ctx = EvalContext(engine=Engine(), data_dir=tmp_path / "data", options={"samples": 2})
    with pytest.raises(SandboxError, match="netns"):
        run_eval(get_eval("humaneval"), ctx, model="scripted")
    assert Engine.calls == 0
    ctx.options["sandbox"] = "best-effort"
    out = run_eval(get_eval("humaneval"), ctx, model="scripted")
    res = out.results["T/0"]
    assert res["c"] == 2 and res["sandbox_policy"] == "best-effort"
    assert "netns" not in res["isolation"] and "rlimits" in res["isolation"]


def test_code_builder_refuses_before_writing_and_records_layers(tmp_path, monkeypatch, capsys):
    from hhhlab.data.build import BuildOptions, build

    src = tmp_path / "he.jsonl"
    prob = {"task_id": "T/0", "entry_point": "f", "prompt": "def f(x):\n    \"\"\"Twice x.\"\"\"\n",
            "canonical_solution": "    return 2 * x\n", "test": "def check(c):\n    assert c(2) == 4\n"}
    src.write_text(json.dumps(prob) + "\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "T/0", "completion": "    return x\n"}) + "\n")
    monkeypatch.setenv("PATH", _path_without(tmp_path, "unshare"))
    out = tmp_path / "out.jsonl"
    with pytest.raises(SandboxError, match="netns"):
        build("code", src, out, BuildOptions(code_samples=samples))
    assert not out.exists()
    build("code", src, out, BuildOptions(code_samples=samples, extra={"sandbox": "best-effort"}))
    assert "code builder: sandbox policy best-effort, layers: " in capsys.readouterr().err
    (group,) = [json.loads(line) for line in out.read_text().splitlines()]
    meta = group["metadata"]
    assert meta["sandbox_policy"] == "best-effort" and "netns" not in meta["isolation"]


def test_strict_is_the_default_where_namespaces_work():
    from test_sandbox import namespaces_work

    if not namespaces_work():
        pytest.skip("this machine cannot create net/pid/mount namespaces")
    report = sandbox.require()  # strict, and met
    assert report.missing("strict") == ()
    assert stat.S_ISDIR(os.stat(sandbox._work_root()).st_mode)
