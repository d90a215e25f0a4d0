"""The sandbox stops each kind of hostile program and records it as a failure.

Each attack is run twice where it matters: with the audit-hook fence (the default), and with
``audit=False`` so that the OS-level fences (namespaces, fresh uid, rlimits) are shown to
hold on their own. Fork bombs run only where a process limit is really enforced (a fresh uid
or a non-root user), and with a small cap, so a failure cannot take the machine down.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hhhlab import sandbox
from hhhlab.sandbox import SandboxConfig, run_many, run_python


def _layers() -> tuple[str, ...]:
    return sandbox.isolation().layers()


def uid_only_mode() -> sandbox._Mode:
    """The fresh-uid-only mode (no namespaces) with an interpreter that works under it."""
    for python in sandbox._interpreters():
        mode = sandbox._Mode(python, unshare=False, drop_uid=True)
        if sandbox._probe(mode).ok:
            return mode
    pytest.skip("no interpreter reachable by a fresh uid")


def namespaces_work() -> bool:
    """Independently of hhhlab: can this process create net + pid + mount namespaces?"""
    if shutil.which("unshare") is None:
        return False
    cmd = ["unshare", "--net", "--pid", "--mount", "--fork"]
    if os.geteuid() != 0:
        cmd.append("--map-root-user")
    try:
        return subprocess.run([*cmd, "true"], check=False, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.fixture
def fresh_probe(monkeypatch):
    """Probe again in this test (the state it sets up), and forget that probe afterwards."""
    monkeypatch.setattr(sandbox, "_report", None)
    yield
    sandbox._report = None


LAYOUTS = {
    "bare home": [],
    "model cache": [".cache/hhhlab"],
    "results store": [".local/share/hhhlab"],
    "both": [".cache/hhhlab", ".local/share/hhhlab"],
    "explicit dirs inside home": ["custom/cache", "custom/data"],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("cwd_in_home", [False, True])
def test_the_strongest_mode_is_chosen_where_namespaces_work(
    tmp_path, monkeypatch, fresh_probe, layout, cwd_in_home
):
    """Whatever user dirs exist (nested in each other or not) when the sandbox is first touched,
    a machine that allows namespaces gets them: a silent fallback fails here."""
    if not namespaces_work():
        pytest.skip("this machine cannot create net/pid/mount namespaces")
    home = tmp_path / "home"
    for rel in LAYOUTS[layout]:
        (home / rel).mkdir(parents=True)
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    for var in ("HHHLAB_HOME", "HHHLAB_CACHE", "XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(var, raising=False)
    if layout == "explicit dirs inside home":
        monkeypatch.setenv("HHHLAB_CACHE", str(home / "custom" / "cache"))
        monkeypatch.setenv("HHHLAB_HOME", str(home / "custom" / "data"))
    if cwd_in_home:
        monkeypatch.chdir(home)
    report = sandbox.isolation_report()
    assert set(sandbox.NAMESPACE_LAYERS) <= set(report.layers()), report.explain()
    if os.geteuid() == 0:
        assert "uid" in report.layers(), report.explain()
    assert report.probes[0].ok, report.explain()  # the very first (strongest) mode held
    assert sandbox.require("strict") is report
    r = run_python("print('ok')\n")
    assert r.passed and r.isolation == report.layers(), r


def test_a_user_dir_that_vanishes_or_appears_later_does_not_break_the_run(
    tmp_path, monkeypatch, fresh_probe
):
    """The mount script is made per run: a dir created after the probe is hidden, one that
    vanished between making the script and running it is skipped, never a failed run."""
    if not namespaces_work():
        pytest.skip("this machine cannot create net/pid/mount namespaces")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HHHLAB_CACHE", raising=False)
    assert "mountns" in sandbox.isolation_report().layers()
    (home / ".cache" / "hhhlab").mkdir(parents=True)  # appears after the probe
    assert run_python("print('ok')\n").passed
    gone = tmp_path / f"gone-{secrets.token_hex(4)}"
    real = sandbox._user_dirs
    monkeypatch.setattr(sandbox, "_user_dirs", lambda: [*real(), str(gone)])  # listed, then gone
    r = run_python("print('ok')\n")
    assert r.passed, r


def _nproc_enforced() -> bool:
    return "uid" in _layers() or os.geteuid() != 0


def _uid_processes(uid: int, settle_s: float = 5.0) -> list[int]:
    """Live processes of ``uid``, after giving killed ones a moment to finish dying."""
    deadline = time.monotonic() + settle_s
    while True:
        found = _uid_processes_now(uid)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _uid_processes_now(uid: int) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    out.append(int(pid))
            except OSError:
                pass
    return out


def test_correct_program_passes_and_wrong_one_fails():
    ok = run_python("def f(x):\n    return x * 2\nassert f(3) == 6\nprint('done')\n")
    assert ok.passed and ok.status == "passed" and ok.returncode == 0
    assert ok.stdout == "done\n" and ok.stderr == ""
    bad = run_python("def f(x):\n    return x + 2\nassert f(3) == 6\n")
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.detail
    syntax = run_python("def f(:\n")
    assert syntax.status == "failed" and "SyntaxError" in syntax.stderr


@pytest.mark.parametrize("audit", [True, False])
def test_infinite_loop_is_stopped_by_the_wall_clock(audit):
    t = time.monotonic()
    r = run_python("while True:\n    pass\n", timeout_s=1.5, audit=audit)
    assert r.status == "timeout" and not r.passed
    assert time.monotonic() - t < 8


def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock():
    r = run_python("while True:\n    pass\n", timeout_s=20, cpu_s=1)
    assert r.status == "timeout" and "CPU" in r.detail
    assert r.duration_s < 10


def test_sleeping_program_times_out_and_blocked_stdin_is_empty():
    r = run_python(
        "import sys, time\nprint(repr(sys.stdin.read()), flush=True)\ntime.sleep(60)\n", timeout_s=1
    )
    assert r.status == "timeout" and r.stdout == "''\n"


@pytest.mark.parametrize("audit", [True, False])
def test_huge_allocation_is_a_memory_failure(audit):
    r = run_python("x = bytearray(8 * 2**30)\nprint('allocated')\n", memory_mb=256, audit=audit)
    assert r.status == "memory" and not r.passed and "allocated" not in r.stdout


def test_gradual_allocation_is_a_memory_failure():
    r = run_python(
        "x = []\nwhile True:\n    x.append(bytearray(10**6))\n", memory_mb=200, timeout_s=20
    )
    assert r.status == "memory"


def test_fork_bomb_is_blocked_by_the_audit_hook():
    r = run_python("import os\nwhile True:\n    os.fork()\n", timeout_s=5)
    assert r.status == "blocked" and "os.fork" in r.detail


def test_fork_bomb_is_capped_by_the_process_limit(monkeypatch):
    """With the audit hook off, RLIMIT_NPROC of the fresh uid stops the bomb (bounded here to
    8 processes, 3 s); afterwards no process of that uid is left anywhere."""
    if not _nproc_enforced():
        pytest.skip("running as root without a fresh uid: RLIMIT_NPROC would not hold")
    uid = 1_950_123
    monkeypatch.setattr(sandbox, "_fresh_uid", lambda: uid)
    r = run_python(
        "import os\nwhile True:\n    os.fork()\n", timeout_s=3, max_processes=8, audit=False
    )
    assert r.status in ("failed", "timeout") and not r.passed
    assert "BlockingIOError" in r.stderr or r.status == "timeout"
    # A bomb that swallows the errors keeps its few processes spinning until the wall clock.
    prog = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    r = run_python(prog, timeout_s=2, cpu_s=2, max_processes=8, audit=False)
    assert r.status == "timeout"
    assert _uid_processes(uid) == []


def test_daemonised_child_does_not_outlive_the_run(monkeypatch):
    uid = 1_950_124
    monkeypatch.setattr(sandbox, "_fresh_uid", lambda: uid)
    prog = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    os.close(1); os.close(2)\n"
        "    time.sleep(60)\nprint('parent done')\n"
    )
    r = run_python(prog, timeout_s=10, audit=False)
    assert r.passed and r.duration_s < 8
    if "uid" in _layers():
        assert _uid_processes(uid) == []


@pytest.mark.parametrize("audit", [True, False])
def test_network_connection_is_stopped(audit):
    if not audit and "netns" not in _layers():
        pytest.skip("no network namespace here: the audit hook is the only network fence")
    prog = (
        "import socket\ns = socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "print('connected')\n"
    )
    r = run_python(prog, timeout_s=10, audit=audit)
    assert not r.passed and "connected" not in r.stdout
    assert r.status == ("blocked" if audit else "failed")
    # The loopback of the host is out of reach too (a fresh namespace has none up).
    r = run_python(
        "import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=3)\n",
        timeout_s=10,
        audit=audit,
    )
    assert not r.passed


@pytest.mark.parametrize("audit", [True, False])
def test_write_outside_the_work_dir_is_stopped(tmp_path, audit):
    if not audit and "mountns" not in _layers():
        pytest.skip("no mount namespace: a world-writable directory stays writable without it")
    tmp_path.chmod(0o777)  # even a world-writable directory of the user's stays out of reach
    target = tmp_path / "pwned.txt"
    escape = f"/tmp/hhhlab-sandbox-escape-{secrets.token_hex(8)}.txt"  # unique: no stale file
    try:
        for path in (target, escape):
            r = run_python(f"open({str(path)!r}, 'w').write('x')\n", audit=audit)
            assert not r.passed and r.status == ("blocked" if audit else "failed")
        assert not target.exists() and not os.path.exists(escape)
    finally:
        if os.path.exists(escape):
            os.unlink(escape)


@pytest.mark.parametrize("audit", [True, False])
def test_user_files_cannot_be_read(tmp_path, audit):
    if not audit and "mountns" not in _layers():
        pytest.skip("without a mount namespace only the audit hook hides world-readable files")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    secret.chmod(0o644)
    r = run_python(f"print(open({str(secret)!r}).read())\n", audit=audit)
    assert not r.passed and "TOPSECRET" not in r.stdout
    here = os.path.join(os.getcwd(), "pyproject.toml")  # the lab's own checkout
    if os.path.exists(here):
        r = run_python(f"print(open({here!r}).read())\n", audit=audit)
        assert not r.passed and "[project]" not in r.stdout


def test_work_dir_is_writable_and_helper_files_importable():
    prog = (
        "import helper, os\nopen('scratch.txt', 'w').write('ok')\n"
        "print(helper.VALUE, open('scratch.txt').read(), os.environ['HOME'] == os.getcwd())\n"
    )
    r = run_python(prog, files={"helper.py": "VALUE = 41 + 1\n"})
    assert r.passed and r.stdout.split() == ["42", "ok", "True"]


def test_subprocess_and_ctypes_are_blocked():
    r = run_python("import subprocess\nsubprocess.run(['id'])\n")
    assert r.status == "blocked" and "subprocess" in r.detail
    r = run_python("import ctypes\nctypes.CDLL(None).system(b'id')\n")
    assert r.status == "blocked"


def test_swallowing_the_violation_does_not_help():
    prog = (
        "try:\n    open('/etc/passwd-x', 'w')\nexcept BaseException:\n    pass\nprint('survived')\n"
    )
    r = run_python(prog)
    assert r.status == "blocked" and "survived" not in r.stdout


def test_output_is_capped():
    r = run_python(
        "import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 10000)\n",
        max_output_bytes=1000,
        timeout_s=20,
    )
    assert r.passed and r.truncated
    assert r.stdout.startswith("x" * 1000) and len(r.stdout) < 1200


def test_success_marker_catches_an_early_clean_exit():
    cfg = SandboxConfig(success_marker="TESTS-DONE-7f3a")
    early = run_python("import sys\nsys.exit(0)\nprint('TESTS-DONE-7f3a')\n", config=cfg)
    assert early.status == "failed" and "marker" in early.detail
    full = run_python("print('TESTS-DONE-7f3a')\n", config=cfg)
    assert full.passed


def test_run_many_keeps_order_and_runs_in_parallel():
    progs = [f"import time\ntime.sleep(0.5)\nassert {i} % 2 == 0\n" for i in range(6)]
    t = time.monotonic()
    results = run_many(progs, workers=3, timeout_s=10)
    elapsed = time.monotonic() - t
    assert [r.passed for r in results] == [i % 2 == 0 for i in range(6)]
    assert elapsed < 6 * 0.5 + 1.0  # serial would need ≥ 3 s of sleeping plus start-ups


def test_results_serialise():
    d = run_python("print(1)\n").to_dict()
    assert d["status"] == "passed" and isinstance(d["isolation"], list)


def test_fallback_without_namespaces_still_fences(monkeypatch):
    """Where `unshare` is unavailable, a fresh uid (as root) plus the audit hook still hold,
    under an explicit best-effort policy (strict refuses: tests/test_sandbox_policy.py)."""
    if os.geteuid() != 0:
        pytest.skip("the uid fallback needs root")
    mode = uid_only_mode()
    monkeypatch.setattr(sandbox, "_report", sandbox.IsolationReport(mode, ()))
    assert run_python("print('hi')\n").status == "error"  # strict (the default) refuses
    monkeypatch.setenv(sandbox.POLICY_ENV, "best-effort")
    r = run_python("print('hi')\n")
    assert r.passed and "netns" not in r.isolation and "uid" in r.isolation
    target = f"/tmp/hhhlab-fallback-{secrets.token_hex(8)}.txt"
    try:
        assert run_python(f"open({target!r}, 'w')\n").status == "blocked"
        r = run_python(
            "import os\nwhile True:\n    os.fork()\n", timeout_s=3, max_processes=8, audit=False
        )
        assert not r.passed
        assert run_python("while True:\n    pass\n", timeout_s=1).status == "timeout"
        assert not os.path.exists(target)
    finally:
        if os.path.exists(target):
            os.unlink(target)


_AS_USER = """
import json, os, sys
from hhhlab import sandbox
home, target = sys.argv[1], sys.argv[2]
report = sandbox.isolation_report()
ok = sandbox.run_python("open('x', 'w').write('1')\\nprint(open('x').read())\\n")
prog = (f"import subprocess, os\\nsubprocess.run('mount -o remount,rw / ; umount {home}; "
        f"cat {home}/secret; echo pwned > {target}', shell=True)\\nassert os.path.exists({target!r})\\n")
bad = sandbox.run_python(prog, audit=False)
print(json.dumps({"layers": report.layers(), "explain": report.explain(), "ok": ok.passed,
                  "bad": bad.status, "out": bad.stdout + bad.stderr}))
"""


def test_an_unprivileged_user_gets_the_namespaces_too(tmp_path):
    """As a non-root user (user namespaces allowed), the sandbox has the same namespace layers
    in an unprivileged user namespace, and the program, root inside it without capabilities,
    cannot undo the mounts to read the hidden home or write /tmp."""
    python = shutil.which("python{}.{}".format(*sys.version_info[:2]), path="/usr/local/bin:/usr/bin:/bin")
    src = Path(sandbox.__file__).resolve().parents[1]
    if os.geteuid() != 0 or shutil.which("setpriv") is None or python is None:
        pytest.skip("needs root (to become another user), setpriv and a system python")
    if subprocess.run(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", python, "-c",
                       f"import sys; sys.path.insert(0, {str(src)!r}); import hhhlab.sandbox"],
                      check=False, capture_output=True).returncode != 0:
        pytest.skip("hhhlab's source is not readable by other users here")
    if subprocess.run(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", "unshare",
                       "--map-root-user", "--net", "--pid", "--mount", "--fork", "true"],
                      check=False, capture_output=True).returncode != 0:
        pytest.skip("unprivileged user namespaces are not allowed here")
    base = Path(tempfile.mkdtemp(prefix="hhhlab-user-", dir="/tmp"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir()
        (home / "secret").write_text("S3CRET")
        os.chown(home, 4242, 4242)
        os.chown(home / "secret", 4242, 4242)
        target = base / f"escape-{secrets.token_hex(6)}"
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(src), "LANG": "C.UTF-8"}
        out = subprocess.run(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", python, "-c",
                              _AS_USER, str(home), str(target)], check=False, capture_output=True,
                             text=True, env=env, cwd=str(home), timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        got = json.loads(out.stdout.splitlines()[-1])
        assert set(sandbox.NAMESPACE_LAYERS) <= set(got["layers"]), got["explain"]
        assert "uid" not in got["layers"] and got["ok"]
        assert got["bad"] == "failed" and "S3CRET" not in got["out"] and not target.exists(), got
    finally:
        shutil.rmtree(base, ignore_errors=True)
