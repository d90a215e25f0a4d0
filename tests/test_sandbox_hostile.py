"""Hostile programs with the audit hook OFF: the OS layers alone must stop each one.

The audit hook is a Python-level fence that ``ctypes`` can bypass, so every attack here runs
with ``audit=False``, under the namespace mode, and must end as a non-pass with nothing
escaped. Each attack is written so that it *passes* only if it got through (a write that
landed, a secret it printed, a connection the test's listener saw), so a stopped attack is
recorded as a failure. Where it shows what a layer is for, the same program also runs under
the weaker fresh-uid-only mode (root only) and does get through there: the control proves the
attack is real and that the namespace layer is what stops it (docs/sandbox.md).

Every path an attack targets is unique to the run and removed afterwards, so an escape can
never leave a file that poisons later runs.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from test_sandbox import _uid_processes, uid_only_mode

from hhhlab import sandbox
from hhhlab.sandbox import run_python

SECRET = "TOPSECRET-" + secrets.token_hex(6)


@pytest.fixture(autouse=True)
def strong():
    """These tests are about the namespace layers; test_sandbox.py fails when a machine that
    allows them does not get them."""
    if "mountns" not in sandbox.isolation().layers():
        pytest.skip("no namespace layers here (see test_the_strongest_mode_is_chosen...)")


@pytest.fixture
def open_dir():
    """A fresh world-traversable dir directly under /tmp: only the mount namespace, not file
    permissions, keeps a fresh uid out of what it holds."""
    d = Path(tempfile.mkdtemp(prefix="hhhlab-hostile-", dir="/tmp" if os.path.isdir("/tmp") else None))
    d.chmod(0o755)
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def victim(open_dir, monkeypatch):
    """A user whose home, results store and model cache are world-readable (and the home
    world-writable), outside any dir the uid layer would protect."""
    home = open_dir / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY----- {SECRET}\n")
    store, cache = open_dir / "store", open_dir / "cache"
    (store / "runs").mkdir(parents=True)
    (store / "runs.sqlite").write_text(SECRET)
    (cache / "models" / "m").mkdir(parents=True)
    (cache / "models" / "m" / "config.json").write_text(SECRET)
    for p in [home, *home.rglob("*"), store, *store.rglob("*"), cache, *cache.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    home.chmod(0o777)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HHHLAB_HOME", str(store))
    monkeypatch.setenv("HHHLAB_CACHE", str(cache))
    return {"home": home, "ssh": home / ".ssh" / "id_rsa", "store": store / "runs.sqlite",
            "cache": cache / "models" / "m" / "config.json"}


def weaker(program: str, monkeypatch, **limits) -> sandbox.SandboxResult:
    """``program`` under the fresh-uid-only mode (no namespaces), best-effort: the control."""
    with monkeypatch.context() as m:
        m.setattr(sandbox, "_report", sandbox.IsolationReport(uid_only_mode(), ()))
        return run_python(program, audit=False, policy="best-effort", **limits)


def unique(d: Path | str) -> str:
    return os.path.join(str(d), f"hhhlab-escape-{secrets.token_hex(8)}.txt")


def _cleanup(*paths: str) -> None:
    for p in paths:
        if os.path.lexists(p):
            os.unlink(p)


def test_ctypes_libc_writes_to_tmp_and_home_are_stopped(victim, monkeypatch):
    targets = [unique("/tmp"), unique(victim["home"])]
    prog = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"done = []\nfor path in {targets!r}:\n"
        "    fd = libc.open(path.encode(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)\n"
        "    if fd >= 0 and libc.write(fd, b'pwned', 5) == 5:\n"
        "        done.append(path)\n"
        "    else:\n"
        "        print('refused', path, os.strerror(ctypes.get_errno()))\n"
        "assert done, 'no write got through'\nprint('WROTE', done)\n"
    )
    try:
        r = run_python(prog, audit=False, timeout_s=20)
        assert r.status == "failed" and not r.passed, r
        assert "WROTE" not in r.stdout and r.stdout.count("Read-only file system") == 2, r.stdout
        assert not any(os.path.exists(t) for t in targets)
        if os.geteuid() == 0:  # control: without the mount namespace the same writes land
            r = weaker(prog, monkeypatch, timeout_s=20)
            assert r.passed and "WROTE" in r.stdout, r
            assert all(Path(t).read_text() == "pwned" for t in targets)
    finally:
        _cleanup(*targets)


def test_shell_writes_through_os_system_and_subprocess_are_stopped(victim, monkeypatch):
    a, b, c = unique("/tmp"), unique(victim["home"]), unique("/var/tmp" if os.path.isdir("/var/tmp") else "/tmp")
    prog = (
        "import os, subprocess\n"
        f"rc1 = os.system('echo pwned > {a}')\n"
        f"rc2 = subprocess.run(['sh', '-c', 'echo pwned > {b} && echo pwned > {c}']).returncode\n"
        "print('exit codes', rc1, rc2)\nassert rc1 == 0 and rc2 == 0, 'the shell could not write'\n"
    )
    try:
        r = run_python(prog, audit=False, timeout_s=20)
        assert r.status == "failed" and not r.passed, r
        assert "Read-only file system" in r.stderr, r.stderr
        assert not any(os.path.exists(p) for p in (a, b, c))
        if os.geteuid() == 0:
            r = weaker(prog, monkeypatch, timeout_s=20)
            assert r.passed, r
            assert os.path.exists(a) and os.path.exists(c)  # world-writable dirs: the uid alone does not help
    finally:
        _cleanup(a, b, c)


@pytest.mark.parametrize("where", ["explicit", "defaults under home"])
def test_reading_ssh_keys_results_store_and_model_cache_is_stopped(victim, monkeypatch, where):
    if where == "defaults under home":  # ~/.local/share/hhhlab and ~/.cache/hhhlab
        home = victim["home"]
        for env, rel, src in (("HHHLAB_HOME", ".local/share/hhhlab", "store"),
                              ("HHHLAB_CACHE", ".cache/hhhlab", "cache")):
            monkeypatch.delenv(env)
            dest = home / rel / Path(victim[src]).name
            dest.parent.mkdir(parents=True)
            for p in (dest.parent, dest.parent.parent):
                p.chmod(0o755)
            dest.write_text(SECRET)
            dest.chmod(0o644)
            victim[src] = dest
    paths = [str(victim[k]) for k in ("ssh", "store", "cache")]
    prog = (
        f"got = []\nfor p in {paths!r}:\n"
        "    try:\n        got.append(open(p).read())\n"
        "    except OSError as e:\n        print('refused', p, e.strerror)\n"
        "print(got)\nassert got, 'nothing read'\n"
    )
    r = run_python(prog, audit=False)
    assert r.status == "failed" and SECRET not in r.stdout + r.stderr, r
    if os.geteuid() == 0:  # world-readable files: only the mount namespace hides them
        r = weaker(prog, monkeypatch)
        assert r.passed and r.stdout.count(SECRET) == 3, r


class _Listener:
    """A loopback server of the test's own: records every connection it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(100) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_connecting_to_a_loopback_port_the_test_listens_on_is_stopped(monkeypatch):
    server = _Listener()
    prog = (
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {server.port}), timeout=3)\n"
        "s.sendall(b'pwned')\nprint('CONNECTED')\n"
    )
    try:
        r = run_python(prog, audit=False, timeout_s=15)
        time.sleep(0.3)
        assert r.status == "failed" and "CONNECTED" not in r.stdout, r
        assert "unreachable" in r.stderr.lower() or "refused" in r.stderr.lower(), r.stderr
        assert server.received == []
        if os.geteuid() == 0:  # control: the host's loopback is reachable without the netns
            r = weaker(prog, monkeypatch, timeout_s=15)
            time.sleep(0.3)
            assert r.passed and server.received == [b"pwned"], (r, server.received)
    finally:
        server.close()


def test_fork_bomb_that_tries_to_outlive_its_parent_is_capped_and_killed(monkeypatch):
    """Children detach (new session), try to fork 40 processes and sleep a minute; the parent
    exits at once. Bounded by the program itself (40 forks at most) as well as the sandbox.
    The process limit caps it (so the program fails: it could not fork them all), and the PID
    namespace kills every child the moment the parent's run ends."""
    uid = 1_960_000 + secrets.randbelow(30_000)
    monkeypatch.setattr(sandbox, "_fresh_uid", lambda: uid)
    prog = (
        "import os, sys, time\nkids = 0\n"
        "for _ in range(40):\n"
        "    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n"
        "    if pid == 0:\n"
        "        os.setsid()\n        sys.stdout = open(os.devnull, 'w')\n"
        "        time.sleep(60)\n        os._exit(0)\n"
        "    kids += 1\n"
        "print('forked', kids, flush=True)\nassert kids == 40, kids\n"
    )
    t0 = time.monotonic()
    r = run_python(prog, audit=False, max_processes=8, timeout_s=20)
    assert r.status == "failed" and not r.passed, r
    assert "AssertionError" in r.stderr and "forked 40" not in r.stdout
    assert time.monotonic() - t0 < 15  # nobody waited for the sleepers
    assert _uid_processes(uid) == []


def test_a_program_cannot_undo_the_mounts(victim, monkeypatch):
    """Root inside the namespace (the mode without a fresh uid, and what an unprivileged user
    namespace gives) has no capabilities left: it cannot remount / writable, unmount the tmpfs
    hiding the home, or write anywhere but its work dir."""
    target = unique("/tmp")
    prog = (
        "import os, subprocess\n"
        "print(subprocess.run('mount -o remount,rw / ; umount " + str(victim["home"]) + "; "
        f"echo pwned > {target}; cat {victim['ssh']}', shell=True).returncode)\n"
        f"assert os.path.exists({target!r}), 'still read-only'\n"
    )
    modes: dict[bool, sandbox._Mode] = {}
    for m in sandbox._candidate_modes():  # the first namespace mode with, and without, a fresh uid
        if m.unshare:
            modes.setdefault(m.drop_uid, m)
    try:
        for mode in modes.values():
            with monkeypatch.context() as m:
                m.setattr(sandbox, "_report", sandbox.IsolationReport(mode, ()))
                r = run_python(prog, audit=False, timeout_s=20)
            assert r.status == "failed" and SECRET not in r.stdout + r.stderr, (mode, r)
            assert not os.path.exists(target)
    finally:
        _cleanup(target)
