"""Run untrusted Python (model samples, benchmark programs) without letting it touch the lab.

Every program runs in its own process, under layered fences, so that one failing layer is not
an escape:

1. **Namespaces** (``unshare``, when we are root or user namespaces are allowed): a new network
   namespace with no interfaces (no network at all), a new PID namespace whose init is our
   prelude (when it exits, the kernel kills everything the program forked), and a private
   ``/proc``.
2. **An unprivileged, per-run user id** (when we are root): a random uid no other process
   uses, so the program cannot read or write the user's files (ordinary permissions), and
   ``RLIMIT_NPROC`` (not enforced for root) caps its processes: fork bombs stop there.
   Leftovers are swept by signalling every process of that uid.
3. **Resource limits** set in the worker before the program starts: CPU seconds
   (``RLIMIT_CPU``), address space (``RLIMIT_AS``), file size, open files, processes.
4. **An audit hook** (``sys.addaudithook``) installed before the program's first line: it
   ends the process on any socket, process spawn, ``ctypes`` use, or file write (and read)
   outside the throw-away work directory.
5. **The parent** enforces the wall-clock limit, caps the captured output, kills the whole
   process group on timeout, and deletes the work directory.

The environment is minimal (``HOME`` and ``TMPDIR`` are the work dir, no inherited variables),
stdin is ``/dev/null``, and the interpreter runs isolated (``-I``: no user site, no
``PYTHON*`` variables) without writing bytecode (``-B``).

Which layers were active is recorded in every :class:`SandboxResult` (``isolation``), so a
run on a machine without namespaces says so instead of silently being weaker.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hhhlab.errors import HHHLabError

__all__ = ["SandboxConfig", "SandboxError", "SandboxResult", "isolation", "run_many", "run_python"]

_PRELUDE = (Path(__file__).with_name("_sandbox_prelude.py")).read_text()
EXIT_BLOCKED, EXIT_MEMORY, EXIT_SETUP = 97, 98, 99
STATUSES = ("passed", "failed", "timeout", "memory", "blocked", "error")
# Paths the program may read besides the work dir and the interpreter's own files.
_READ_ROOTS = (
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
    "/proc/self",
    "/etc/localtime",
    "/usr/share/zoneinfo",
)
_UID_RANGE = (1_100_000, 1_900_000)  # far above any real account; one fresh uid per run
_TAIL_BYTES = 4096


class SandboxError(HHHLabError):
    """The sandbox itself cannot run (not the program's fault)."""


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for one run. Defaults suit a unit-test-sized Python program."""

    timeout_s: float = 10.0  # wall clock, enforced by the parent
    cpu_s: int | None = None  # CPU seconds per process (RLIMIT_CPU); default: ceil(timeout_s)
    memory_mb: int = 512  # address space per process (RLIMIT_AS)
    max_processes: int = 16  # processes and threads of the program (RLIMIT_NPROC)
    max_output_bytes: int = 64_000  # per stream, kept from the start; the rest is counted
    max_file_mb: int = 16  # largest file the program may write (RLIMIT_FSIZE)
    max_open_files: int = 256
    audit: bool = True  # install the audit-hook fence (the OS fences are always on)
    success_marker: str | None = None  # if set, "passed" also needs this on stdout

    def cpu_limit(self) -> int:
        return int(self.cpu_s if self.cpu_s is not None else max(1, -(-self.timeout_s // 1)))


@dataclass
class SandboxResult:
    """What happened to one program. ``passed`` is true only for a clean, complete run."""

    passed: bool
    status: str  # one of STATUSES
    returncode: int | None
    stdout: str
    stderr: str
    duration_s: float
    detail: str = ""  # a human-readable reason for a non-pass
    truncated: bool = False  # output beyond max_output_bytes was discarded
    isolation: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["isolation"] = list(self.isolation)
        return d


# ----------------------------------------------------------------------------- isolation probe


@dataclass(frozen=True)
class _Mode:
    """How this machine can isolate a program, found once per process by probing."""

    python: str
    unshare: bool  # net + pid + mount namespaces through util-linux `unshare`
    drop_uid: bool  # run as a fresh unprivileged uid (we are root)

    def layers(self, audit: bool = True) -> tuple[str, ...]:
        out = ["process", "rlimits", "wall-timeout"]
        if self.unshare:
            out += ["netns", "pidns", "mountns"]
        if self.drop_uid:
            out += ["uid"]
        if audit:
            out += ["audit-hook"]
        return tuple(out)


_mode: _Mode | None = None
_mode_lock = threading.Lock()


def _fresh_uid() -> int:
    return _UID_RANGE[0] + secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0])


_WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", "/dev/mqueue")
_SYSTEM_DIRS = {
    "/",
    "/usr",
    "/bin",
    "/lib",
    "/lib64",
    "/etc",
    "/var",
    "/opt",
    "/proc",
    "/dev",
    "/sys",
}


def _private_dirs() -> list[str]:
    """Directories hidden under an empty tmpfs inside the sandbox: the user's files."""
    from hhhlab.paths import cache_home, data_home

    cands = [
        "/root",
        "/home",
        os.path.expanduser("~"),
        os.getcwd(),
        str(data_home()),
        str(cache_home()),
    ]
    out: list[str] = []
    for c in cands:
        c = os.path.realpath(c)
        if c not in _SYSTEM_DIRS and os.path.isdir(c) and c not in out:
            out.append(c)
    return out


def _mount_script(mode: _Mode, uid: int | None, workdir: str) -> str:
    """Shell run as root inside the new namespaces before the uid is dropped.

    It mounts a private /proc (the PID namespace's own), makes every world-writable directory
    read-only (the fresh uid could otherwise write to /tmp), hides the user's directories
    under empty tmpfs mounts, then execs the interpreter as the sandbox uid with
    ``no_new_privs`` (a setuid binary cannot give root back).
    """
    q = shlex.quote
    lines = ["set -e", "mount -t proc proc /proc", f"mount --bind {q(workdir)} {q(workdir)}"]
    keep = (workdir, os.path.dirname(mode.python), os.path.realpath(mode.python))
    for d in _WORLD_WRITABLE:
        if os.path.isdir(d) and not os.path.islink(d) and os.stat(d).st_mode & 0o002:
            lines.append(f"mount --rbind {q(d)} {q(d)}; mount -o remount,bind,ro {q(d)}")
    for d in _private_dirs():
        if not any(k == d or k.startswith(d.rstrip("/") + "/") for k in keep):
            lines.append(f"mount -t tmpfs -o size=64k,mode=755 tmpfs {q(d)}")
    if uid is not None:
        lines.append(
            f'exec setpriv --reuid={uid} --regid={uid} --clear-groups --no-new-privs -- "$@"'
        )
    else:
        lines.append('exec "$@"')
    return "\n".join(lines)


def _command(mode: _Mode, uid: int | None, workdir: str, args: Sequence[str]) -> list[str]:
    cmd = [mode.python, "-I", "-B", *args]
    if not mode.unshare:
        return cmd
    ns = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount"]
    if not _is_root():
        ns.append("--map-root-user")  # an unprivileged user namespace owns the others
    return [*ns, "--", "sh", "-c", _mount_script(mode, uid, workdir), "sandbox", *cmd]


def _popen_kwargs(mode: _Mode, uid: int | None) -> dict:
    # Without unshare, subprocess drops the uid itself (fork + setgroups/setgid/setuid + exec).
    if uid is not None and not mode.unshare:
        return {"user": uid, "group": uid, "extra_groups": []}
    return {}


def _probe(mode: _Mode) -> bool:
    """Can this mode start the interpreter, as the sandbox uid, and does the uid stick?"""
    uid = _fresh_uid() if mode.drop_uid else None
    major, minor = sys.version_info[:2]
    code = f"import os, sys; print(os.getuid(), sys.version_info[:2] == ({major}, {minor}))"
    workdir = tempfile.mkdtemp(prefix="hhhlab-sandbox-probe-")
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        out = subprocess.run(  # noqa: PLW1510 - the return code is inspected below
            _command(mode, uid, workdir, ["-c", code]),
            capture_output=True,
            text=True,
            timeout=30,
            cwd=workdir,
            env=_base_env(workdir),
            stdin=subprocess.DEVNULL,
            **_popen_kwargs(mode, uid),
        )
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    want = str(uid if uid is not None else os.getuid())
    return out.returncode == 0 and out.stdout.split()[:1] == [want]


def _interpreters() -> list[str]:
    """sys.executable first; then system pythons, since a sandbox uid may not reach the former
    (e.g. pyenv under root's 0700 home)."""
    found = [sys.executable]
    name = "python{}.{}".format(*sys.version_info[:2])
    for cand in (name, "python3"):
        path = shutil.which(cand, path="/usr/local/bin:/usr/bin:/bin")
        if path and path not in found:
            found.append(path)
    return found


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def isolation() -> _Mode:
    """Find (once) the strongest isolation this machine allows and the interpreter to use.

    As root: namespaces plus a fresh uid, else a fresh uid alone. Otherwise: namespaces in
    an unprivileged user namespace, else a plain child process. The probe runs the real
    command, so a mode is only chosen if it works here.
    """
    global _mode
    with _mode_lock:
        if _mode is not None:
            return _mode
        has_unshare = shutil.which("unshare") is not None
        options = []
        if _is_root():
            for python in _interpreters():
                if has_unshare:
                    options.append(_Mode(python, unshare=True, drop_uid=True))
                options.append(_Mode(python, unshare=False, drop_uid=True))
        if has_unshare:
            options.append(_Mode(sys.executable, unshare=True, drop_uid=False))
        options.append(_Mode(sys.executable, unshare=False, drop_uid=False))
        for mode in options:
            if _probe(mode):
                _mode = mode
                return mode
        raise SandboxError(
            f"cannot start a sandboxed Python process with {sys.executable} (tried "
            f"{len(options)} isolation modes); check that the interpreter can be executed"
        )


def _user_tasks(uid: int) -> int:
    """Processes and threads ``uid`` owns now: RLIMIT_NPROC counts them all, so a sandbox
    that shares the user's uid needs its limit set above this count."""
    n = 0
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                pass
    return n


def _base_env(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONIOENCODING": "utf-8",
    }


# ----------------------------------------------------------------------------- running


class _Capped:
    """Keep the first ``cap`` bytes of a stream and its last few KB; count the rest."""

    def __init__(self, cap: int):
        self.cap, self.head, self.tail, self.total = cap, bytearray(), bytearray(), 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.cap - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        self.tail = (self.tail + chunk)[-_TAIL_BYTES:]

    @property
    def truncated(self) -> bool:
        return self.total > self.cap

    def text(self) -> str:
        s = self.head.decode("utf-8", "replace")
        if self.truncated:
            s += f"\n[... {self.total - self.cap} more bytes discarded by the sandbox]"
        return s


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _sweep_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (catches programs that left the process group).

    ``kill -KILL -1`` run *as* that uid signals exactly the processes it owns, and nothing
    else; the sweep itself is never counted against the program's own process limit."""
    try:
        subprocess.run(
            ["kill", "-KILL", "-1"],
            check=False,
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            cwd="/",
        )
    except (OSError, subprocess.SubprocessError):
        pass


def _classify(
    rc: int | None, timed_out: bool, stdout_tail: str, stderr: str, cfg: SandboxConfig
) -> tuple[str, str]:
    if timed_out:
        return "timeout", f"wall-clock limit of {cfg.timeout_s:g} s reached; process group killed"
    assert rc is not None
    sig = rc - 128 if rc > 128 else (-rc if rc < 0 else 0)
    if sig == signal.SIGXCPU:
        return "timeout", f"CPU limit of {cfg.cpu_limit()} s reached (SIGXCPU)"
    if sig:
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return "failed", f"killed by {name}"
    if rc == EXIT_BLOCKED and "hhhlab-sandbox: blocked" in stderr:
        line = next(x for x in stderr.splitlines() if x.startswith("hhhlab-sandbox: blocked"))
        return "blocked", line.removeprefix("hhhlab-sandbox: ")
    if rc == EXIT_MEMORY or (rc != 0 and "MemoryError" in stderr):
        return "memory", f"memory limit of {cfg.memory_mb} MB reached (MemoryError)"
    if rc == EXIT_SETUP:
        return "error", "the sandbox prelude failed"
    if rc != 0:
        last = stderr.strip().splitlines()[-1:] or [""]
        return "failed", f"exit code {rc}: {last[0][:300]}"
    if cfg.success_marker is not None and cfg.success_marker not in stdout_tail:
        return (
            "failed",
            "exited with code 0 before printing the success marker (tests did not finish)",
        )
    return "passed", ""


def run_python(
    program: str,
    *,
    config: SandboxConfig | None = None,
    files: dict[str, str] | None = None,
    **limits,
) -> SandboxResult:
    """Run ``program`` (Python source) in the sandbox and say how it ended.

    ``files`` are extra files (name -> text) placed in the work dir beside the program, e.g. a
    helper module it imports. Limits come from ``config`` or keyword arguments named like
    :class:`SandboxConfig` fields (``timeout_s=5, memory_mb=256``). Never raises for anything
    the program does; a sandbox that cannot start gives status ``"error"``.
    """
    cfg = config or SandboxConfig(**limits)
    if config is not None and limits:
        cfg = SandboxConfig(**{**asdict(config), **limits})
    start = time.monotonic()
    try:
        mode = isolation()
    except SandboxError as e:
        return SandboxResult(False, "error", None, "", "", time.monotonic() - start, detail=str(e))
    uid = _fresh_uid() if mode.drop_uid else None
    workdir = tempfile.mkdtemp(prefix="hhhlab-sandbox-")
    try:
        return _run_in(workdir, mode, uid, program, files or {}, cfg, start)
    except OSError as e:  # could not write the work dir or start the process
        return SandboxResult(
            False,
            "error",
            None,
            "",
            "",
            time.monotonic() - start,
            detail=f"sandbox failed to start: {e}",
            isolation=mode.layers(cfg.audit),
        )
    finally:
        if uid is not None and not mode.unshare:
            _sweep_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)


def _run_in(
    workdir: str,
    mode: _Mode,
    uid: int | None,
    program: str,
    files: dict[str, str],
    cfg: SandboxConfig,
    start: float,
) -> SandboxResult:
    for name, text in {**files, "main.py": program}.items():
        if os.path.basename(name) != name or name.startswith("."):
            raise SandboxError(f"sandbox file name must be a plain file name, got {name!r}")
        Path(workdir, name).write_text(text, encoding="utf-8")
    if uid is not None:
        for p in [workdir, *(os.path.join(workdir, n) for n in os.listdir(workdir))]:
            os.chown(p, uid, uid)
    os.chmod(workdir, 0o700)
    prelude_cfg = {
        "workdir": workdir,
        "program": "main.py",
        "cpu_s": cfg.cpu_limit(),
        "memory_bytes": cfg.memory_mb * 2**20,
        "file_bytes": cfg.max_file_mb * 2**20,
        "max_open_files": cfg.max_open_files,
        # +1: the prelude's init process belongs to the same uid. Sharing the user's uid
        # (no root), the count already includes all of the user's processes.
        "nproc": cfg.max_processes
        + 1
        + (0 if uid is not None or _is_root() else _user_tasks(os.getuid())),
        "audit": cfg.audit,
        "read_roots": list(_READ_ROOTS),
    }
    cmd = _command(mode, uid, workdir, ["-c", _PRELUDE, json.dumps(prelude_cfg)])
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=_base_env(workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        **_popen_kwargs(mode, uid),
    )
    out, err = _Capped(cfg.max_output_bytes), _Capped(cfg.max_output_bytes)
    timed_out = _pump(proc, {proc.stdout: out, proc.stderr: err}, start + cfg.timeout_s, mode, uid)
    rc = proc.returncode
    stderr = err.text()
    status, detail = _classify(rc, timed_out, out.tail.decode("utf-8", "replace"), stderr, cfg)
    return SandboxResult(
        status == "passed",
        status,
        rc,
        out.text(),
        stderr,
        round(time.monotonic() - start, 4),
        detail,
        out.truncated or err.truncated,
        mode.layers(cfg.audit),
    )


def _pump(
    proc: subprocess.Popen, sinks: dict, deadline: float, mode: _Mode, uid: int | None
) -> bool:
    """Drain both pipes into capped buffers until the program ends or the deadline passes.

    Returns True when the wall-clock limit was hit. Reading continuously matters: a program
    that prints more than a pipe holds would otherwise block forever instead of timing out.
    """
    sel = selectors.DefaultSelector()
    for stream in sinks:
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    timed_out = False
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                timed_out = proc.poll() is None
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
                # The init has gone: anything still holding our pipes is a leftover.
                if uid is not None and not mode.unshare:
                    _sweep_uid(uid)
                _kill_group(proc)
            if exited_at is not None and now - exited_at > 2.0:
                break  # a leftover we cannot kill keeps the pipe open; stop waiting for it
            for key, _ in sel.select(timeout=min(0.25, deadline - now)):
                try:
                    chunk = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    sinks[key.fileobj].add(chunk)
                else:
                    sel.unregister(key.fileobj)
    finally:
        sel.close()
    if timed_out or proc.poll() is None:
        _kill_group(proc)
        if uid is not None:  # belt and braces: the PID namespace dies with its init anyway
            _sweep_uid(uid)
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 5)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait(timeout=10)
        timed_out = True
    for stream in sinks:
        stream.close()
    return timed_out


def run_many(
    programs: Sequence[str],
    *,
    workers: int | None = None,
    config: SandboxConfig | None = None,
    progress: Callable[[int], None] | None = None,
    **limits,
) -> list[SandboxResult]:
    """Run many programs, a few at a time, results in input order.

    Each run is a separate sandboxed process, so threads are enough to keep ``workers``
    processes busy. ``progress(1)`` is called after each finished program.
    """
    cfg = config or SandboxConfig(**limits)
    if config is not None and limits:
        cfg = SandboxConfig(**{**asdict(config), **limits})
    workers = workers or max(1, min(4, os.cpu_count() or 1))

    def one(p: str) -> SandboxResult:
        res = run_python(p, config=cfg)
        if progress is not None:
            progress(1)
        return res

    if not programs:
        return []
    isolation()  # probe once, before the threads race to do it
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))
