"""Start-up code of every sandboxed Python process (see ``hhhlab.sandbox``).

This file is never imported by hhhlab: ``sandbox.py`` reads its text and runs it with
``python -I -B -c <this text> <config json>`` inside the sandbox. It is plain stdlib Python
so that any interpreter (also one outside hhhlab's environment) can run it.

Layout of the processes it creates, and why:

* The first process stays as a tiny *init*. In a fresh PID namespace it is PID 1: when it
  exits, the kernel kills every process left in the namespace (so a daemonised fork cannot
  outlive the run), and it reaps orphans so zombies do not pile up. PID 1 also ignores
  signals sent from inside the namespace, so the untrusted program cannot kill it.
* It forks one worker, which lowers its resource limits, installs an audit hook (a second
  fence behind the OS limits: no sockets, no spawning, no writes or reads outside the work
  directory) and only then runs the untrusted program.
* The init exits with the worker's exit code, or 128 + the signal that killed it.
"""

import json
import os
import sys

EXIT_BLOCKED = 97  # the audit hook stopped a forbidden action
EXIT_MEMORY = 98  # MemoryError escaped the program
EXIT_SETUP = 99  # the prelude itself failed (a sandbox error, never the program's fault)


def _limit(resource, name, value, hard_extra=0):
    """Lower one resource limit; a limit the platform lacks is skipped.

    ``hard_extra`` leaves the hard limit a little above the soft one where the soft limit
    sends a catchable-in-principle signal first (RLIMIT_CPU: SIGXCPU, then SIGKILL)."""
    which = getattr(resource, name, None)
    if which is not None and value is not None:
        resource.setrlimit(which, (value, value + hard_extra))


def _install_audit_hook(workdir, read_roots):
    """Block network, process creation, ctypes and file access outside the allowed roots.

    A violation ends the process at once (``os._exit``), so the program cannot catch the
    exception and carry on as if nothing happened.
    """
    norm = os.path.normpath
    workdir = norm(workdir)
    read_roots = tuple(norm(r) for r in read_roots)
    write_ok = (workdir, "/dev/null")

    def inside(path, roots):
        if isinstance(path, int) or path is None:
            return True  # an already-open file descriptor
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        path = norm(os.path.join(workdir, os.fspath(path)))
        # no realpath: resolving symlinks would itself stat files; a symlink made inside the
        # work dir is blocked below (os.symlink), and pre-existing ones are the OS's job.
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def deny(event, args):
        msg = f"hhhlab-sandbox: blocked {event} {args[:2] if args else ()!r}\n"
        try:
            os.write(2, msg.encode("utf-8", "replace"))
        finally:
            os._exit(EXIT_BLOCKED)

    forbidden_prefixes = (
        "socket.",
        "ctypes.",
        "subprocess.",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "pty.",
        "winreg.",
        "_winapi.",
    )
    forbidden = {
        "os.fork",
        "os.forkpty",
        "os.system",
        "os.kill",
        "os.killpg",
        "os.setuid",
        "os.chroot",
        "signal.pthread_kill",
        "os.symlink",
        "os.link",
        "webbrowser.open",
        "urllib.Request",
        "http.client.connect",
        "ftplib.connect",
        "smtplib.connect",
        "imaplib.open",
        "poplib.connect",
        "nntplib.connect",
        "telnetlib.Telnet.open",
    }
    path_write_events = {
        "os.remove",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.truncate",
        "os.utime",
        "os.chflags",
        "os.lchflags",
        "os.setxattr",
        "os.removexattr",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.move",
        "shutil.chown",
        "os.mkfifo",
        "os.mknod",
    }
    list_events = {"os.listdir", "os.scandir", "glob.glob", "os.walk", "os.fwalk"}

    def hook(event, args):
        if event in forbidden or event.startswith(forbidden_prefixes):
            deny(event, args)
        elif event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int)
                and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
            )
            if not inside(path, write_ok if writing else read_roots):
                deny(event, args)
        elif event == "os.rename" or event == "os.replace":
            if not (inside(args[0], write_ok) and inside(args[1], write_ok)):
                deny(event, args)
        elif (
            event in path_write_events
            and args
            and not inside(args[0], write_ok)
            or event in list_events
            and args
            and not inside(args[0], read_roots)
        ):
            deny(event, args)

    sys.addaudithook(hook)


def _worker(cfg):
    import resource

    _limit(resource, "RLIMIT_CORE", 0)
    _limit(resource, "RLIMIT_CPU", cfg["cpu_s"], hard_extra=1)
    _limit(resource, "RLIMIT_AS", cfg["memory_bytes"])
    _limit(resource, "RLIMIT_FSIZE", cfg["file_bytes"])
    _limit(resource, "RLIMIT_NOFILE", cfg["max_open_files"])
    _limit(resource, "RLIMIT_NPROC", cfg["nproc"])
    path = os.path.join(cfg["workdir"], cfg["program"])
    with open(path, "rb") as fh:
        code = compile(fh.read(), path, "exec")
    del sys.argv[1:]
    sys.argv[0] = path
    sys.path[:0] = [cfg["workdir"]]
    if cfg["audit"]:
        import sysconfig

        # The interpreter's own files stay readable (imports); everything else on the
        # machine except the work dir and a few harmless system paths is off limits.
        paths = sysconfig.get_paths()
        roots = list(cfg["read_roots"]) + [
            cfg["workdir"],
            sys.prefix,
            sys.base_prefix,
            sys.exec_prefix,
            sys.base_exec_prefix,
        ]
        roots += [paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths]
        _install_audit_hook(cfg["workdir"], roots)
    namespace = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
    try:
        exec(code, namespace)  # noqa: S102 - running the program is this file's purpose
    except MemoryError:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        try:
            sys.stdout.flush()
        except Exception:  # noqa: BLE001, S110 - no memory left to flush, or a closed stream
            pass
        os._exit(EXIT_MEMORY)
    # Normal exits and other exceptions take Python's usual path (exit code 0 or 1).


def _init(cfg):
    """Fork the worker, reap every child, and exit with the worker's status."""
    sys.stdout.flush()
    worker = os.fork()
    if worker == 0:
        try:
            _worker(cfg)
        except SystemExit:
            raise
        except BaseException:  # noqa: BLE001 - report anything the program raised
            # An exception escaping the program: print it like Python would, exit 1.
            import traceback

            traceback.print_exc()
            for stream in (sys.stdout, sys.stderr):  # what it printed before failing is kept
                try:
                    stream.flush()
                except Exception:  # noqa: BLE001, S110 - a closed or replaced stream
                    pass
            os._exit(1)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    status = None
    while True:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        if pid == worker:
            status = wait_status
            break
    if status is None:
        os._exit(EXIT_SETUP)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    _init(json.loads(sys.argv[1]))
