"""Kill and resume (issue 6, item 3): the real ``hhhlab`` CLI in a subprocess, SIGKILLed at seeded
random points (after a random delay, or as soon as the results store holds a random number of
items), then resumed, must end with the result of an uninterrupted run, and the results store
must hold every item exactly once in one run.

Training's kill/resume (also across process counts) is in tests/test_train_distributed.py.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_evals import PROMPT, make_data

from hhhlab.results import read_metrics

CLI = [sys.executable, "-c", "from hhhlab.cli import main; main()"]


# -- helpers ------------------------------------------------------------------------------------
def stored_items(home: Path, kind: str | None = None) -> dict[str, dict[str, str]]:
    """run_id -> {item key -> raw JSON value}, read straight from the SQLite index (no hhhlab code),
    so a duplicated run or a lost item shows up whatever the store's API does."""
    db = home / "runs.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        runs = [r for (r,) in con.execute("SELECT run_id FROM runs" + (" WHERE kind=?" if kind else ""),
                                          (kind,) if kind else ())]
        out: dict[str, dict[str, str]] = {r: {} for r in runs}
        for run_id, key, value in con.execute("SELECT run_id, key, value FROM items"):
            out.setdefault(run_id, {})[key] = value
        return out
    except sqlite3.OperationalError:  # the schema is being created right now
        return {}
    finally:
        con.close()


def n_items(home: Path) -> int:
    """Item rows in the index: a cheap COUNT, so the killer's 10 ms poll never lags the writer."""
    db = home / "runs.sqlite"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is being created right now
        return 0
    finally:
        con.close()


def start(args: list[str], home: Path) -> subprocess.Popen:
    env = {**os.environ, "HHHLAB_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text


def run_until(args: list[str], home: Path, should_kill: Callable[[float], bool],
              starter: Callable[[list[str], Path], subprocess.Popen] | None = None) -> bool:
    """Run ``args`` (with ``starter``, default one process); SIGKILL it (and anything it started)
    the first time ``should_kill(seconds)`` holds. Returns whether it was killed (False: it
    finished, successfully)."""
    t0 = time.monotonic()
    proc = (starter or start)(args, home)
    try:
        while proc.poll() is None:
            if should_kill(time.monotonic() - t0):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.01)
        out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        assert proc.returncode == 0, out[-3000:]
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def kill_at_random_points(args: list[str], home: Path, total: int, *, kills: int, seed: int,
                          max_delay: float) -> list[tuple[str, int, float]]:
    """Run ``args`` up to ``kills`` times, each killed with SIGKILL either after a random delay or as
    soon as the store holds a random number of items beyond what it held; returns (how, items
    stored at the kill, seconds)."""
    rng = random.Random(seed)
    log: list[tuple[str, int, float]] = []
    for attempt in range(kills):
        before = n_items(home)
        if before >= total:
            break
        how = "items" if attempt == 0 or rng.random() < 0.5 else "delay"  # the first kill lands mid-run
        # a target in the first half of what is left: items are stored in bursts (one engine batch
        # at a time), so a target near the end could be overtaken by the run finishing
        target = before + rng.randint(1, max(1, (total - before) // 2))
        delay = rng.uniform(0.5, max_delay)
        t = [0.0]

        def due(seconds: float, how=how, target=target, delay=delay, t=t) -> bool:
            t[0] = seconds
            return n_items(home) >= target if how == "items" else seconds >= delay

        killed = run_until(args, home, due)
        log.append((how if killed else "finished", n_items(home), round(t[0], 1)))
    return log


def assert_close(got, want, path: str = "", rel: float = 1e-4, abs_: float = 1e-4) -> None:
    """Recursive equality with a float tolerance (resumed items are scored in other batches)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for k in want:
            assert_close(got[k], want[k], f"{path}.{k}", rel, abs_)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{path}[{i}]", rel, abs_)
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)), f"{path}: {got!r} != {want!r}"
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=rel, abs=abs_), \
            f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def assert_same_report(got: dict, want: dict) -> None:
    """Two `hhhlab eval` JSON reports: the same (model, condition, variant, eval) outcomes, item
    counts, metrics and differences between conditions, within float tolerance."""
    def key(r):
        return (r["model"], r["condition"], r["variant"], r["eval"])

    assert sorted(map(key, got["results"])) == sorted(map(key, want["results"]))
    by_key = {key(r): r for r in got["results"]}
    for r in want["results"]:
        assert by_key[key(r)]["n_items"] == r["n_items"]
        assert_close(by_key[key(r)]["metrics"], r["metrics"], str(key(r)))
    assert_close(got["differences"], want["differences"], "differences")


def pick_cells(cells: list[dict]) -> dict:
    """Sweep cells keyed by (dataset, objective, model), only what must not depend on interruptions."""
    return {(c["dataset"], c["objective"], c["model"]): {k: c.get(k) for k in CELL_RESULT_KEYS} for c in cells}


def check_store(home: Path, ref_home: Path, kind: str, compare: tuple[str, ...] | None = None) -> None:
    """One run of ``kind`` holding exactly the reference run's item keys, with the same values
    (only the ``compare`` fields of each value, when given: timings differ)."""
    got, want = stored_items(home, kind), stored_items(ref_home, kind)
    assert len(want) == 1, want.keys()
    assert len(got) == 1, f"resuming created {len(got)} {kind} runs: {sorted(got)}"
    (got_items,), (want_items,) = got.values(), want.values()
    assert sorted(got_items) == sorted(want_items), (
        f"lost {sorted(set(want_items) - set(got_items))[:5]}, extra {sorted(set(got_items) - set(want_items))[:5]}")
    for key in want_items:
        g, w = json.loads(got_items[key]), json.loads(want_items[key])
        if compare:
            g, w = {k: g.get(k) for k in compare}, {k: w.get(k) for k in compare}
        assert_close(g, w, key, rel=1e-4, abs_=1e-5)
    con = sqlite3.connect(home / "runs.sqlite")
    try:
        (status,), = con.execute("SELECT status FROM runs WHERE kind=?", (kind,)).fetchall()
        (n_rows,), = con.execute("SELECT COUNT(*) FROM items").fetchall()
    finally:
        con.close()
    assert status == "finished" and n_rows == len(want_items)


# -- eval ---------------------------------------------------------------------------------------
N_LAMBADA = 70  # > 1 chunk of 64 items: kills land between and inside the store's write bursts


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory) -> tuple[Path, Path]:
    root = make_data(tmp_path_factory.mktemp("faultdata"))
    rng = random.Random(7)
    words = ["mat", "dog", "sun", "tree", "blue", "four", "house", "river", "bread", "stone"]
    rows = [{"context": " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))) + " the",
             "continuation": rng.choice(words)} for _ in range(N_LAMBADA)]
    (root / "lambada" / "lambada_openai.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompt = root / "prompt.txt"
    prompt.write_text(PROMPT)
    return root, prompt


def eval_args(data: Path, prompt: Path, out: Path) -> list[str]:
    return ["eval", "--model", "tiny:llama,layers=1,hidden=32,heads=2", "--evals", "lambada,hhh_alignment,truthfulqa_mc1",
            "--condition", "plain,prompt", "--data-dir", str(data), "--prompt", str(prompt), "--batch-size", "8",
            "--dtype", "float32", "--device", "cpu", "--no-progress", "--resume", "--output", str(out)]


EVAL_TOTAL = 2 * (N_LAMBADA + 6 + 3)  # conditions x (lambada + hhh + truthfulqa items)


def reference_run(args: list[str], home: Path, monkeypatch) -> None:
    """The uninterrupted run, in-process (saves one interpreter start-up; same code path)."""
    from typer.testing import CliRunner

    from hhhlab.cli import app

    with monkeypatch.context() as m:
        m.setenv("HHHLAB_HOME", str(home))
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output


def _run_eval_kill_test(eval_data, tmp_path, monkeypatch, kills: int, seed: int) -> list:
    data, prompt = eval_data
    ref_home, home = tmp_path / "ref_home", tmp_path / "home"
    ref_out, out = tmp_path / "ref.json", tmp_path / "out.json"
    reference_run(eval_args(data, prompt, ref_out), ref_home, monkeypatch)
    assert n_items(ref_home) == EVAL_TOTAL

    log = kill_at_random_points(eval_args(data, prompt, out), home, EVAL_TOTAL, kills=kills, seed=seed,
                                max_delay=20.0)
    assert any(how != "finished" and 0 < n < EVAL_TOTAL for how, n, _ in log), f"no kill landed mid-run: {log}"
    t0 = time.monotonic()
    text = finish(start(eval_args(data, prompt, out), home))
    print(f"kills {log}; final resume {time.monotonic() - t0:.1f}s")
    assert "resuming run" in text

    assert_same_report(read_metrics(out), read_metrics(ref_out))
    check_store(home, ref_home, "eval")
    return log


# ~15 s on an idle machine, ~100 s on the loaded shared one: two CLI starts (torch import) dominate
def test_eval_killed_at_random_points_resumes_to_the_uninterrupted_result(eval_data, tmp_path, monkeypatch):
    _run_eval_kill_test(eval_data, tmp_path, monkeypatch, kills=1, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_eval_killed_many_times_resumes_to_the_uninterrupted_result(eval_data, tmp_path, monkeypatch, seed):
    _run_eval_kill_test(eval_data, tmp_path, monkeypatch, kills=5, seed=seed)


# -- sweep --------------------------------------------------------------------------------------
SWEEP_MODEL = "tiny:llama,layers=1,hidden=32,heads=2"
SWEEP_CELLS = 2  # one model x (imitation, preference) x one dataset
SWEEP_STEPS = 6
# what must not depend on interruptions (timings and throughput do)
CELL_RESULT_KEYS = ("accuracy", "accuracy_ci", "n_eval", "group_accuracy", "group_accuracy_ci", "ece",
                    "non_embedding_params", "train_steps", "final_train_loss", "kind")


@pytest.fixture(scope="module")
def sweep_data(tmp_path_factory) -> Path:
    from test_sweep import _ranked

    from hhhlab.data.schema import write_jsonl

    path = tmp_path_factory.mktemp("sweepdata") / "arith.jsonl"
    write_jsonl(_ranked(30), path)
    return path


def sweep_args(data: Path, out: Path, **over) -> list[str]:
    opts = {"--datasets": f"arith={data}", "--output": str(out), "--models": SWEEP_MODEL,
            "--objectives": "imitation,preference", "--train-size": "16", "--eval-size": "6",
            "--max-steps": str(SWEEP_STEPS), "--checkpoint-every": "2", "--batch-size": "4", "--lr": "3e-3",
            "--max-length": "64", "--seed": "0", **over}
    return ["sweep", "objectives", *(x for kv in opts.items() for x in kv)]


def checkpoints(out: Path) -> set[str]:
    return {str(p) for p in out.glob("cells/**/checkpoints/ckpt-*")}


def _run_sweep_kill_test(sweep_data, tmp_path, monkeypatch, kills: int, seed: int) -> list:
    ref_home, home = tmp_path / "ref_home", tmp_path / "home"
    ref_out, out = tmp_path / "ref_sweep", tmp_path / "sweep"
    reference_run(sweep_args(sweep_data, ref_out), ref_home, monkeypatch)

    rng = random.Random(seed)
    log = []
    for attempt in range(kills):
        if n_items(home) >= SWEEP_CELLS:
            break
        # a new training checkpoint (kill inside a cell, it resumes from there), a finished cell,
        # or a random delay (import, model load, data preparation, evaluation, ...)
        modes = ["checkpoint", "cell", "delay"]
        how = modes[attempt] if attempt < 3 else rng.choice(modes)
        seen, cells_before, delay = checkpoints(out), n_items(home), rng.uniform(1.0, 25.0)
        extra = 0.0 if how == "checkpoint" else rng.uniform(0.0, 0.5)  # at once: training is fast
        fired: list[float] = []

        def due(seconds: float, how=how, seen=seen, before=cells_before, delay=delay, extra=extra,
                fired=fired) -> bool:
            if how == "delay":
                return seconds >= delay
            hit = checkpoints(out) - seen if how == "checkpoint" else n_items(home) > before
            if hit and not fired:
                fired.append(seconds)
            return bool(fired) and seconds >= fired[0] + extra

        killed = run_until(sweep_args(sweep_data, out), home, due)
        log.append((how if killed else "finished", n_items(home), sorted(Path(p).name for p in checkpoints(out))))
    t0 = time.monotonic()
    finish(start(sweep_args(sweep_data, out), home))
    print(f"sweep kills {log}; final resume {time.monotonic() - t0:.1f}s")
    assert any(how != "finished" for how, *_ in log), log

    want = read_metrics(ref_out / "sweep.json")
    got = read_metrics(out / "sweep.json")
    assert len(got["cells"]) == SWEEP_CELLS
    assert_close(pick_cells(got["cells"]), pick_cells(want["cells"]), "cells", rel=1e-4, abs_=1e-5)
    assert_close(got["gains"], want["gains"], "gains", rel=1e-4, abs_=1e-5)
    assert all(c["train_steps"] == SWEEP_STEPS for c in got["cells"])
    check_store(home, ref_home, "sweep_objectives", compare=CELL_RESULT_KEYS)
    return log


@pytest.mark.slow  # ~140 s on the shared 2-core machine (three CLI starts, real training)
def test_sweep_killed_inside_and_between_cells_resumes_to_the_uninterrupted_result(sweep_data, tmp_path, monkeypatch):
    _run_sweep_kill_test(sweep_data, tmp_path, monkeypatch, kills=2, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sweep_killed_many_times_resumes_to_the_uninterrupted_result(sweep_data, tmp_path, monkeypatch, seed):
    _run_sweep_kill_test(sweep_data, tmp_path, monkeypatch, kills=5, seed=seed)


# -- resuming a sweep directory under other settings ---------------------------------------------
def test_sweep_rerun_with_other_settings_trains_afresh_instead_of_failing(sweep_data, tmp_path):
    """Same --output, another learning rate: a new store run whose cells train in their own
    folders (before, the trainer found the old cells' checkpoints and stopped with "written by
    a run with different settings")."""
    from hhhlab.experiments.sweep import SweepConfig, run_sweep
    from hhhlab.store import ResultsStore

    store = ResultsStore(tmp_path / "store")
    cfg = SweepConfig(models=SWEEP_MODEL, objectives="preference", datasets=f"arith={sweep_data}", train_size=8,
                      eval_size=4, output=str(tmp_path / "sweep"), batch_size=4, max_steps=2, lr=1e-3,
                      max_length=64, progress=False)
    first = run_sweep(cfg, store=store)
    second = run_sweep(cfg.model_copy(update={"lr": 3e-2}), store=store)
    assert len(store.runs("sweep_objectives")) == 2
    assert first["cells"][0]["final_train_loss"] != second["cells"][0]["final_train_loss"]
    again = run_sweep(cfg.model_copy(update={"checkpoint_every": 7}), store=store)  # not a result setting
    assert len(store.runs("sweep_objectives")) == 2 and again["cells"] == first["cells"]


def test_sweep_dataset_name_pointed_at_another_file_uses_that_file(tmp_path):
    from test_sweep import _ranked

    from hhhlab.data.schema import write_jsonl
    from hhhlab.experiments.sweep import SweepConfig, run_sweep
    from hhhlab.store import ResultsStore

    path = tmp_path / "d.jsonl"
    contexts = []

    def fake_train(tc):
        contexts.append({json.loads(line)["context"] for line in Path(tc.train).read_text().splitlines()})
        return {"accuracy": 0.5, "accuracy_ci": [0.4, 0.6], "n_eval": 4, "non_embedding_params": 1}

    cfg = SweepConfig(models=SWEEP_MODEL, objectives="preference", datasets=f"arith={path}", train_size=8,
                      eval_size=4, output=str(tmp_path / "sweep"), max_steps=1, progress=False)
    store = ResultsStore(tmp_path / "store")
    write_jsonl(_ranked(20, seed=0), path)
    run_sweep(cfg, store=store, train_fn=fake_train)
    time.sleep(0.01)
    write_jsonl([g.model_copy(update={"context": "Rebuilt. " + g.context}) for g in _ranked(20, seed=0)], path)
    run_sweep(cfg, store=store, train_fn=fake_train)  # same settings, rebuilt file: its cells are cached...
    assert len(contexts) == 1
    store2 = ResultsStore(tmp_path / "store2")  # ...but a fresh store (cells not cached) must read the new file
    run_sweep(cfg, store=store2, train_fn=fake_train)
    assert len(contexts) == 2 and all(c.startswith("Rebuilt. ") for c in contexts[1])
