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

import contextlib
import json
import os
import re
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

__all__ = [
    "IsolationReport",
    "SandboxConfig",
    "SandboxError",
    "SandboxResult",
    "announce",
    "isolation",
    "isolation_report",
    "require",
    "resolve_policy",
    "run_many",
    "run_python",
]

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
    # "strict" refuses to run without the namespace layers; "best-effort" runs with whatever
    # this machine gives. None: $HHHLAB_SANDBOX, else strict (see resolve_policy).
    policy: str | None = None

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
            out += list(NAMESPACE_LAYERS)
        if self.drop_uid:
            out += ["uid"]
        if audit:
            out += ["audit-hook"]
        return tuple(out)

    def describe(self) -> str:
        what = "+".join(
            [x for x, on in (("namespaces", self.unshare), ("fresh uid", self.drop_uid)) if on]
            or ["plain process"]
        )
        return f"{what} ({self.python})"


@dataclass(frozen=True)
class Probe:
    """One isolation mode tried on this machine: did it start, and did its layers hold?"""

    mode: str  # e.g. "namespaces+fresh uid (/usr/bin/python3.11)"
    layers: tuple[str, ...]
    ok: bool
    reason: str = ""  # why it was rejected ("" when ok)
    seconds: float = 0.0


@dataclass(frozen=True)
class IsolationReport:
    """The probes of this process, in the order tried, and the mode they chose.

    The reason every stronger mode was rejected is kept, so a weaker sandbox is never silent:
    ``hhhlab sandbox check`` prints this, the code evals log it, and a strict policy refuses
    with it (:func:`require`)."""

    mode: _Mode | None
    probes: tuple[Probe, ...]
    exposed: tuple[str, ...] = ()  # user dirs the mount namespace cannot hide (see _hidden_dirs)

    def layers(self, audit: bool = True) -> tuple[str, ...]:
        return self.mode.layers(audit) if self.mode is not None else ()

    def missing(self, policy: str) -> tuple[str, ...]:
        """Layers ``policy`` needs that this machine's chosen mode lacks."""
        have = set(self.layers())
        return tuple(x for x in _REQUIRED[policy] if x not in have)

    def to_dict(self) -> dict:
        return {
            "layers": list(self.layers()),
            "mode": self.mode.describe() if self.mode else None,
            "probes": [{**asdict(p), "layers": list(p.layers)} for p in self.probes],
            "exposed": list(self.exposed),
        }

    def explain(self) -> str:
        """Each probe's outcome on one line: what was tried, and why it was rejected."""
        lines = []
        for p in self.probes:
            verdict = "ok" if p.ok else f"rejected: {p.reason}"
            lines.append(f"  - {p.mode}: {verdict}")
        for d in self.exposed:
            lines.append(f"  - note: {d} stays visible inside the sandbox (the interpreter lives there)")
        return "\n".join(lines)


POLICIES = ("strict", "best-effort")
NAMESPACE_LAYERS = ("netns", "pidns", "mountns")
_REQUIRED: dict[str, tuple[str, ...]] = {"strict": NAMESPACE_LAYERS, "best-effort": ()}
POLICY_ENV = "HHHLAB_SANDBOX"

_report: IsolationReport | None = None
_mode_lock = threading.Lock()


def resolve_policy(policy: str | None = None) -> str:
    """``policy``, else ``$HHHLAB_SANDBOX``, else ``"strict"`` (the default for anything that
    runs model-written code)."""
    value = (policy or os.environ.get(POLICY_ENV) or "strict").strip().lower()
    value = {"best_effort": "best-effort", "besteffort": "best-effort", "weak": "best-effort"}.get(
        value, value
    )
    if value not in POLICIES:
        raise SandboxError(
            f"unknown sandbox policy {value!r} (from {'the caller' if policy else POLICY_ENV}): "
            f"use {' or '.join(POLICIES)}"
        )
    return value


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
    "/tmp",
}


def _user_dirs() -> list[str]:
    """The user's directories, resolved, that exist now: home(s), the current directory (the
    lab's checkout), the results store and the model cache."""
    from hhhlab.paths import cache_home, data_home

    cands = ["/root", "/home", os.path.expanduser("~"), os.getcwd(), str(data_home()), str(cache_home())]
    out: list[str] = []
    for c in cands:
        try:
            c = os.path.realpath(c)
        except OSError:
            continue
        if c not in _SYSTEM_DIRS and os.path.isdir(c) and c not in out:
            out.append(c)
    return out


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _hidden_dirs(keep: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(hide, exposed)``: the user dirs to cover with an empty tmpfs, and those that cannot be.

    A dir that holds something the program needs (``keep``: the work dir, the interpreter) is
    not hidden; its own user sub-dirs still are. A dir inside one already hidden is dropped, so
    no mount ever targets a path that an earlier mount made disappear (the nested-mount
    failure that silently disabled the namespaces when ``$HOME/.cache/hhhlab`` existed)."""
    keep = [os.path.realpath(k) for k in keep]
    hide: list[str] = []
    exposed: list[str] = []
    for d in sorted(_user_dirs(), key=lambda p: (p.count("/"), p)):
        if any(_inside(d, h) for h in hide):
            continue  # covered by a hidden ancestor
        if any(_inside(k, d) for k in keep):
            exposed.append(d)
        else:
            hide.append(d)
    return hide, exposed


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _writable_mounts() -> list[str]:
    """Mount points (of this process's mount namespace, which the sandbox's copies) that are
    not read-only already, outermost first."""
    out: list[str] = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return ["/"]
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        point, opts = _unescape_mount(fields[4]), fields[5].split(",")
        if "ro" not in opts and point not in out:
            out.append(point)
    return sorted(out, key=lambda p: (p.count("/") if p != "/" else 0, p))


def _mount_script(mode: _Mode, uid: int | None, workdir: str) -> str:
    """Shell run as root inside the new namespaces before the program starts.

    It mounts a private /proc (the PID namespace's own), hides the user's directories under
    empty read-only tmpfs mounts, makes every other mount read-only except the work dir (so
    neither ``/tmp`` nor any other world-writable or user-owned directory can be written),
    then execs the interpreter as the sandbox uid with ``no_new_privs`` and no capabilities
    (so a setuid binary cannot give root back and a mapped root cannot undo the mounts).
    Any failing step ends the run with :data:`EXIT_SETUP` and a line saying which step.
    """
    q = shlex.quote
    mount = q(_tool("mount"))
    lines = [
        'fail() { echo "hhhlab-sandbox: setup failed: $*" >&2; exit ' + str(EXIT_SETUP) + "; }",
        f"{mount} -t proc proc /proc || fail 'mount a private /proc (is /proc mounted?)'",
        f"{mount} --bind {q(workdir)} {q(workdir)} || fail {q('bind the work dir ' + workdir)}",
    ]
    hide, _ = _hidden_dirs([workdir, mode.python])
    for d in hide:  # a dir that vanished since is skipped; any other failure is fatal
        lines.append(
            f"[ ! -d {q(d)} ] || {mount} -t tmpfs -o ro,size=16k,mode=755 tmpfs {q(d)} "
            f"|| fail {q('hide ' + d)}"
        )
    for m in _writable_mounts():
        if _inside(m, "/proc") or _inside(m, workdir) or any(_inside(m, h) for h in hide):
            continue
        lines.append(
            f"[ ! -e {q(m)} ] || {mount} -o remount,bind,ro {q(m)} "
            f"|| fail {q('make ' + m + ' read-only')}"
        )
    # The cwd was inherited from before the namespace: re-enter it through the work dir's own
    # (writable) mount, or relative paths would resolve on the read-only root mount.
    lines.append(f"cd {q(workdir)} || fail {q('enter the work dir ' + workdir)}")
    drop = [q(_tool("setpriv")), "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    if uid is not None:
        drop[1:1] = [f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    lines.append(f'exec {" ".join(drop)} -- "$@"')
    return "\n".join(lines)


def _command(mode: _Mode, uid: int | None, workdir: str, args: Sequence[str]) -> list[str]:
    cmd = [mode.python, "-I", "-B", *args]
    if not mode.unshare:
        return cmd
    ns = [_tool("unshare"), "--net", "--pid", "--fork", "--kill-child", "--mount"]
    if not _is_root():
        ns.append("--map-root-user")  # an unprivileged user namespace owns the others
    return [*ns, "--", _tool("sh"), "-c", _mount_script(mode, uid, workdir), "sandbox", *cmd]


def _tool(name: str) -> str:
    """The absolute path of a tool the namespace mode needs, found on this process's PATH (the
    sandbox's own environment has a fixed, minimal PATH)."""
    path = shutil.which(name)
    if path is None:
        raise SandboxError(f"{name} not found on PATH (install util-linux)")
    return path


def _popen_kwargs(mode: _Mode, uid: int | None) -> dict:
    # Without unshare, subprocess drops the uid itself (fork + setgroups/setgid/setuid + exec).
    if uid is not None and not mode.unshare:
        return {"user": uid, "group": uid, "extra_groups": []}
    return {}


def _work_root() -> str:
    """Where work dirs go: the system temp dir, provided the sandbox does not hide it.

    ``tempfile`` falls back to the current directory when ``/tmp`` is read-only; a work dir
    there would keep the whole checkout visible, so that is an error, not a fallback."""
    root = os.path.realpath(tempfile.gettempdir())
    for d in _user_dirs():
        if _inside(root, d):
            raise SandboxError(
                f"the temporary directory {root} lies inside {d}, which the sandbox must hide "
                "(is /tmp read-only or full?): set TMPDIR to a writable directory outside $HOME, "
                "the checkout, $HHHLAB_HOME and $HHHLAB_CACHE"
            )
    return root


def _make_workdir(prefix: str = "hhhlab-sandbox-") -> str:
    root = _work_root()
    try:
        return tempfile.mkdtemp(prefix=prefix, dir=root)
    except OSError as e:
        raise SandboxError(
            f"cannot create the sandbox's work dir in {root} ({e.strerror or e}): the sandbox "
            "needs a writable temporary directory; set TMPDIR to one (not inside $HOME or the "
            "checkout)"
        ) from None


# The probe program: reports what the program would see, so each layer is checked, not assumed.
_PROBE_PROGRAM = r"""
import json, os, sys, sysconfig
cfg = json.loads(open("probe.json").read())
exe = os.path.abspath(sys.executable)
homes = {os.path.dirname(os.path.dirname(p)) for p in (exe, os.path.realpath(exe))}
stdlib = sysconfig.get_paths().get("stdlib", "")
out = {"uid": os.getuid(), "ppid": os.getppid(), "version": list(sys.version_info[:2]),
       "prefix": sys.prefix,
       "own_stdlib": bool(homes & {sys.prefix, sys.base_prefix})
                     and os.path.isfile(os.path.join(stdlib, "os.py"))}
try:
    with open("/proc/net/dev") as fh:
        out["interfaces"] = [l.split(":")[0].strip() for l in fh.read().splitlines()[2:]]
except OSError:
    out["interfaces"] = None
def writable(d):
    p = os.path.join(d, cfg["token"])
    try:
        fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(p)
    return True
out["writable"] = [d for d in cfg["check_write"] if writable(d)]
out["work_writable"] = writable(".")
def visible(d):
    try:
        return len(os.listdir(d)) > 0
    except OSError:
        return False
out["visible"] = [d for d in cfg["check_hidden"] if visible(d)]
print("PROBE " + json.dumps(out))
"""


def _verify(mode: _Mode, uid: int | None, res: SandboxResult, check_hidden: list[str]) -> str:
    """'' when ``res`` (the probe program's run) shows every layer of ``mode`` holding, else why
    not, in words a user can act on."""
    if res.status != "passed":
        tail = (res.stderr.strip().splitlines() or [res.detail])[-1][:300]
        hint = ""
        if mode.unshare and ("unshare" in res.stderr or "Operation not permitted" in res.stderr):
            hint = (
                " (namespaces are not allowed here: run as root, or allow unprivileged user "
                "namespaces, e.g. sysctl kernel.unprivileged_userns_clone=1 and "
                "user.max_user_namespaces > 0; in a container, the runtime's seccomp/AppArmor "
                "profile must allow unshare)"
            )
        return f"{res.status}: {tail}{hint}"
    line = next((x for x in res.stdout.splitlines() if x.startswith("PROBE ")), None)
    if line is None:
        return "the probe program printed no report"
    got = json.loads(line.removeprefix("PROBE "))
    if tuple(got["version"]) != tuple(sys.version_info[:2]):
        return f"{mode.python} is Python {'.'.join(map(str, got['version']))}, not ours"
    if not got["own_stdlib"]:
        return (
            f"{mode.python} cannot read its own installation as the sandbox user (it fell back to "
            f"{got['prefix']}); its directory is not readable by other users"
        )
    if not got["work_writable"]:
        return "the program cannot write its own work dir"
    if uid is not None and got["uid"] != uid:
        return f"the program ran as uid {got['uid']}, not the fresh uid {uid}"
    if mode.unshare:
        if got["ppid"] != 1:  # the worker's parent is the prelude's init, PID 1 of the namespace
            return f"no PID namespace (the program's parent is pid {got['ppid']}, not 1)"
        if got["interfaces"] is None or set(got["interfaces"]) - {"lo"}:
            return f"network interfaces are visible: {got['interfaces']}"
        if got["writable"]:
            return f"{', '.join(got['writable'])} stayed writable inside the mount namespace"
        if got["visible"]:
            return f"{', '.join(got['visible'])} stayed visible inside the mount namespace"
    return ""


def _probe(mode: _Mode) -> Probe:
    """Run the probe program under ``mode`` exactly as a real program would run, and check
    that each of the mode's layers holds there."""
    t0 = time.monotonic()

    def out(reason: str) -> Probe:
        return Probe(mode.describe(), mode.layers(), not reason, reason, round(time.monotonic() - t0, 3))

    if mode.unshare:
        for tool in ("unshare", "setpriv", "mount", "sh"):
            if shutil.which(tool) is None:
                return out(f"{tool} not found on PATH (install util-linux)")
    uid = _fresh_uid() if mode.drop_uid else None
    try:
        workdir = _make_workdir("hhhlab-sandbox-probe-")
    except SandboxError as e:
        return out(str(e))
    try:
        hide, _ = _hidden_dirs([workdir, mode.python])
        check_write = [d for d in _WORLD_WRITABLE if os.path.isdir(d)]
        check_write.append(os.path.dirname(workdir))
        token = f".hhhlab-probe-{secrets.token_hex(8)}"
        files = {"probe.json": json.dumps({"token": token, "check_write": sorted(set(check_write)),
                                           "check_hidden": hide})}
        cfg = SandboxConfig(timeout_s=30, memory_mb=512, audit=False, max_processes=8)
        res = _run_in(workdir, mode, uid, _PROBE_PROGRAM, files, cfg, time.monotonic())
        for d in check_write:  # a probe that could write outside must not leave its file behind
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(d, token))
        return out(_verify(mode, uid, res, hide))
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return out(f"could not start: {e}")
    finally:
        if uid is not None and not mode.unshare:
            _sweep_uid(uid)
        shutil.rmtree(workdir, ignore_errors=True)


def _interpreters() -> list[str]:
    """Candidate interpreters of our Python version: sys.executable and the system's.

    Those outside the user's directories come first: an interpreter under ``$HOME`` (pyenv, a
    venv) keeps ``$HOME`` from being hidden, and a fresh uid may not be able to read it."""
    found = [sys.executable]
    name = "python{}.{}".format(*sys.version_info[:2])
    for cand in (name, "python3"):
        path = shutil.which(cand, path="/usr/local/bin:/usr/bin:/bin")
        if path and os.path.realpath(path) not in {os.path.realpath(f) for f in found}:
            found.append(path)
    users = [d for d in _user_dirs()]
    return sorted(found, key=lambda p: any(_inside(os.path.realpath(p), d) for d in users))


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _candidate_modes() -> list[_Mode]:
    """Strongest first. As root: namespaces + fresh uid, namespaces, fresh uid, plain.
    Otherwise: namespaces in an unprivileged user namespace, then a plain child process."""
    pythons = _interpreters()
    options: list[_Mode] = []
    if _is_root():
        options += [_Mode(p, unshare=True, drop_uid=True) for p in pythons]
        options += [_Mode(p, unshare=True, drop_uid=False) for p in pythons]
        options += [_Mode(p, unshare=False, drop_uid=True) for p in pythons]
    else:
        options += [_Mode(p, unshare=True, drop_uid=False) for p in pythons]
    options.append(_Mode(sys.executable, unshare=False, drop_uid=False))
    return options


def isolation_report(*, refresh: bool = False) -> IsolationReport:
    """Probe (once per process, or again with ``refresh``) the isolation modes strongest first
    and keep the first whose layers all hold, with the reason each stronger one failed."""
    global _report
    with _mode_lock:
        if _report is not None and not refresh:
            return _report
        probes: list[Probe] = []
        chosen = None
        for mode in _candidate_modes():
            probe = _probe(mode)
            probes.append(probe)
            if probe.ok:
                chosen = mode
                break
        exposed = tuple(_hidden_dirs([sys.executable if chosen is None else chosen.python])[1])
        _report = IsolationReport(chosen, tuple(probes), exposed if chosen and chosen.unshare else ())
        return _report


def isolation() -> _Mode:
    """The strongest isolation this machine allows (see :func:`isolation_report`)."""
    report = isolation_report()
    if report.mode is None:
        raise SandboxError(
            f"cannot start a sandboxed Python process with {sys.executable}; every mode "
            f"failed:\n{report.explain()}"
        )
    return report.mode


def require(policy: str | None = None) -> IsolationReport:
    """The isolation report, or a :class:`SandboxError` when ``policy`` (default: strict, see
    :func:`resolve_policy`) needs layers this machine's sandbox lacks.

    Callers that run model-written code call this before doing any work, so a weak sandbox is
    refused up front with what is missing, why, and how to get it or opt out."""
    policy = resolve_policy(policy)
    report = isolation_report()
    if report.mode is None:
        isolation()  # raises with every probe's reason
    missing = report.missing(policy)
    if missing:
        raise SandboxError(refusal(report, policy, missing))
    return report


def announce(
    name: str, policy: str | None = None, log: Callable[[str], None] | None = None
) -> tuple[str, tuple[str, ...]]:
    """For a command about to run model-written code: check ``policy`` (raises
    :class:`SandboxError` saying what is missing when it refuses), print the isolation layers
    the programs will run under to stderr, and pass them with every probe's outcome to ``log``
    (e.g. ``run.log``). Returns ``(policy, layers)`` for the caller to record in its results."""
    policy = resolve_policy(policy)
    report = require(policy)
    line = f"{name}: sandbox policy {policy}, layers: {', '.join(report.layers())}"
    print(line, file=sys.stderr, flush=True)
    if log is not None:
        log(f"{line}\n{report.explain()}")
    return policy, report.layers()


def refusal(report: IsolationReport, policy: str, missing: Sequence[str]) -> str:
    """The message of a refused run: the missing layers, each probe's reason, the remedies."""
    return (
        f"the {policy} sandbox policy needs the {', '.join(missing)} layer(s), which this machine "
        f"does not give (available: {', '.join(report.layers()) or 'none'}). Probes:\n"
        f"{report.explain()}\n{REMEDY}"
    )


REMEDY = (
    "To get them: install util-linux (unshare, setpriv) and run as root or allow unprivileged "
    "user namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; "
    "containers: a seccomp profile that allows unshare). To run anyway with only the layers "
    f"available: {POLICY_ENV}=best-effort (or --eval-option sandbox=best-effort, "
    "SandboxConfig(policy='best-effort')). Details: hhhlab sandbox check"
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
        setup = [x for x in stderr.splitlines() if x.startswith("hhhlab-sandbox: setup failed")]
        return "error", (setup[0].removeprefix("hhhlab-sandbox: ") if setup else
                         "the sandbox prelude failed")
    if rc != 0:
        last = stderr.strip().splitlines()[-1:] or [""]
        return "failed", f"exit code {rc}: {last[0][:300]}"
    if cfg.success_marker is not None and cfg.success_marker not in stdout_tail:
        return (
            "failed",
            "exited with code 0 before printing the success marker (tests did not finish)",
        )
    return "passed", ""


def _config(config: SandboxConfig | None, limits: dict) -> SandboxConfig:
    if config is not None and limits:
        return SandboxConfig(**{**asdict(config), **limits})
    return config or SandboxConfig(**limits)


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
    the program does; a sandbox that cannot start, or that the policy refuses (strict, the
    default: the namespace layers must be there), gives status ``"error"`` with the reason.
    """
    cfg = _config(config, limits)
    start = time.monotonic()
    try:
        mode = require(cfg.policy).mode
        assert mode is not None
        workdir = _make_workdir()
    except SandboxError as e:
        return SandboxResult(False, "error", None, "", "", time.monotonic() - start, detail=str(e))
    uid = _fresh_uid() if mode.drop_uid else None
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
    cfg = _config(config, limits)
    workers = workers or max(1, min(4, os.cpu_count() or 1))

    def one(p: str) -> SandboxResult:
        res = run_python(p, config=cfg)
        if progress is not None:
            progress(1)
        return res

    if not programs:
        return []
    try:
        require(cfg.policy)  # probe once, before the threads race to do it
    except SandboxError:
        pass  # each run_python reports the refusal as its status "error"
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, programs))
