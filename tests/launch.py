"""Start the hhhlab CLI in a subprocess with 1 process or under `accelerate launch` with N CPU
processes (gloo), in its own session so a SIGKILL reaches the launcher and its workers together.
Shared by the multi-process tests (training, evals, PM scoring)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(module: str, args: list[str], processes: int, env: dict | None = None,
           config: str | None = None) -> subprocess.Popen:
    """``python -m module args`` (1 process) or ``accelerate launch --num_processes N -m module args``
    (``config``: an accelerate config file, e.g. configs/accelerate/fsdp.yaml, instead of plain DDP)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    if processes == 1:
        cmd = [sys.executable, "-m", module, *args]
    else:
        how = ["--config_file", config] if config else ["--multi_gpu", "--num_machines", "1", "--mixed_precision",
                                                         "no", "--dynamo_backend", "no"]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *how, "--num_processes", str(processes),
               "--main_process_port", str(free_port()), "-m", module, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 500) -> str:
    out, _ = proc.communicate(timeout=timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text
