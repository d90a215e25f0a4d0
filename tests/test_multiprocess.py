"""Evals and PM scoring under `accelerate launch` with 2 CPU processes (issue 6, items 1 and 3).

Each process scores every other item still to do and stores it in the shared results store;
results are merged by item id. So 2 processes must give what 1 gives (the engine's batch
invariance, 1e-4 in fp32), and a run killed under one process count must resume under another to
the uninterrupted result, with every item stored exactly once. (Training: test_train_distributed.)
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from launch import finish, launch
from test_faults_resume import (
    EVAL_TOTAL,
    assert_close,
    assert_same_report,
    check_store,
    eval_args,
    eval_data,
    n_items,
    reference_run,
    run_until,
    sweep_data,
)

from hhhlab.results import read_metrics

__all__ = ["eval_data", "sweep_data"]  # module-scoped fixtures shared with the single-process fault tests


def run_eval_cli(args: list[str], home: Path, processes: int):
    return launch("hhhlab", args, processes, env={"HHHLAB_HOME": str(home)})


@pytest.fixture(scope="module")
def reference(eval_data, tmp_path_factory):
    """One process, uninterrupted, in this interpreter."""
    data, prompt = eval_data
    root = tmp_path_factory.mktemp("ref")
    out = root / "ref.json"
    with pytest.MonkeyPatch.context() as mp:
        reference_run(eval_args(data, prompt, out), root / "home", mp)
    return read_metrics(out), root / "home"


def test_every_scoring_eval_with_two_processes_matches_one(eval_data, tmp_path):
    from test_evals import EVALS

    data, prompt = eval_data
    args = eval_args(data, prompt, tmp_path / "ref.json")
    args[args.index("--evals") + 1] = ",".join(EVALS)  # all six scoring evals, both conditions
    with pytest.MonkeyPatch.context() as mp:
        reference_run(args, tmp_path / "ref_home", mp)
    want = read_metrics(tmp_path / "ref.json")
    args[args.index("--output") + 1] = str(tmp_path / "out.json")
    finish(run_eval_cli(args, tmp_path / "home", processes=2))
    got = read_metrics(tmp_path / "out.json")
    assert got["processes"] == 2 and {r["eval"] for r in got["results"]} == set(EVALS)
    assert_same_report(got, want)
    check_store(tmp_path / "home", tmp_path / "ref_home", "eval")  # each process stored its share, once


def _killed_then_resumed(eval_data, reference, tmp_path, counts: list[int], final: int, seed: int) -> None:
    data, prompt = eval_data
    want, ref_home = reference
    out, home = tmp_path / "out.json", tmp_path / "home"
    args = eval_args(data, prompt, out)
    rng = random.Random(seed)
    log = []
    for processes in counts:
        before = n_items(home)
        target = before + rng.randint(1, max(1, (EVAL_TOTAL - before) // 2))
        killed = run_until(args, home, lambda _s, target=target: n_items(home) >= target,
                           starter=lambda a, h, n=processes: run_eval_cli(a, h, n))
        log.append((processes, killed, n_items(home)))
    assert any(killed and 0 < n < EVAL_TOTAL for _, killed, n in log), log
    text = finish(run_eval_cli(args, home, final))
    assert "resuming run" in text, text[-2000:]
    got = read_metrics(out)
    assert got["processes"] == final
    assert_same_report(got, want)
    check_store(home, ref_home, "eval")


def test_eval_killed_under_two_processes_resumes_under_one(eval_data, reference, tmp_path):
    _killed_then_resumed(eval_data, reference, tmp_path, counts=[2], final=1, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_eval_killed_under_changing_process_counts_resumes(eval_data, reference, tmp_path, seed):
    _killed_then_resumed(eval_data, reference, tmp_path, counts=[1, 2, 1, 2], final=2, seed=seed)


def test_pm_eval_with_two_processes_matches_one(tmp_path):
    from hhhlab.train.preference_model import PreferenceModel
    from hhhlab.train.toy import write_toy

    pm = PreferenceModel.from_lm("tiny:llama,layers=2,hidden=32,heads=4,kv_heads=2", device="cpu")
    pm.save_pretrained(tmp_path / "pm")
    data = write_toy(tmp_path / "eval.jsonl", 40, seed=3)
    outs = {}
    for processes in (1, 2):
        out = tmp_path / f"metrics{processes}.json"
        finish(launch("hhhlab", ["pm", "eval", "--pm", str(tmp_path / "pm"), "--data", str(data), "--output",
                                 str(out), "--batch-size", "8", "--device", "cpu", "--json"], processes,
                      env={"HHHLAB_HOME": str(tmp_path / "home")}))
        outs[processes] = read_metrics(out)
    one, two = outs[1], outs[2]
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["n_eval"] == two["n_eval"] > 0
    for k in ("accuracy", "accuracy_ci", "group_accuracy", "ece"):
        if k in one:
            assert_close(two[k], one[k], k, rel=1e-4, abs_=1e-6)


# -- sweep: every process trains each cell together; the main process keeps the books ------------
@pytest.mark.slow  # three launches with real (tiny) training: ~2-4 min on the 2-core machine
def test_sweep_killed_under_two_processes_resumes_under_one(sweep_data, tmp_path):
    from test_faults_resume import SWEEP_CELLS, SWEEP_STEPS, checkpoints, pick_cells, sweep_args

    ref_out, out = tmp_path / "ref", tmp_path / "sweep"
    ref_home, home = tmp_path / "ref_home", tmp_path / "home"
    finish(launch("hhhlab", sweep_args(sweep_data, ref_out), 1, env={"HHHLAB_HOME": str(ref_home)}))
    # kill the 2-process sweep as soon as it writes its second checkpoint (inside the first cell)
    proc = launch("hhhlab", sweep_args(sweep_data, out), 2, env={"HHHLAB_HOME": str(home)})
    try:
        while proc.poll() is None and len(checkpoints(out)) < 2:
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.stdout:
            proc.stdout.close()
    assert n_items(home) < SWEEP_CELLS
    finish(launch("hhhlab", sweep_args(sweep_data, out), 1, env={"HHHLAB_HOME": str(home)}))
    want = read_metrics(ref_out / "sweep.json")
    got = read_metrics(out / "sweep.json")
    assert all(c["train_steps"] == SWEEP_STEPS for c in got["cells"])
    # data-parallel training reassociates float sums (tests/test_train_distributed.py): 1e-3
    assert_close(pick_cells(got["cells"]), pick_cells(want["cells"]), "cells", rel=1e-3, abs_=1e-3)
    check_store(home, ref_home, "sweep_objectives", compare=("accuracy", "n_eval", "train_steps", "kind"))
