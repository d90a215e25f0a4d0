"""`hhhlab distill` killed (SIGKILL) during training resumes to the same model as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"
PROMPT = "Human: Hi, who are you?\n\nAssistant: A helpful assistant.\n\n-----\n\nHuman: What is 2+2?\n\nAssistant: 4.\n"


def _cmd(tmp_path, out):
    return [sys.executable, "-m", "hhhlab", "distill", "--model", TINY, "--prompt", str(tmp_path / "p.txt"),
            "--corpus", str(tmp_path / "c.jsonl"), "--tokens", "3072", "--context-length", "32", "--top-k", "8",
            "--batch-size", "4", "--lr", "1e-3", "--checkpoint-every", "3", "--shard-windows", "16",
            "--device", "cpu", "--no-progress", "--output", str(out)]


@pytest.mark.slow
def test_sigkill_during_distillation_resumes_to_the_same_model(tmp_path):
    (tmp_path / "p.txt").write_text(PROMPT)
    with (tmp_path / "c.jsonl").open("w") as f:
        for i in range(400):
            f.write(json.dumps({"text": f"Sample {i}: the quick brown fox jumps over the lazy dog {i % 7} times."}) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(tmp_path, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and not any((killed / "checkpoints").glob("*")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.safetensors").exists()  # killed before the end
    subprocess.run(_cmd(tmp_path, killed), env=env, check=True, capture_output=True)
    clean = tmp_path / "clean"
    subprocess.run(_cmd(tmp_path, clean), env=env, check=True, capture_output=True)
    a, b = load_file(str(killed / "model.safetensors")), load_file(str(clean / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
