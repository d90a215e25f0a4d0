"""The IL-vs-PM sweep: cells, resume without redoing or duplicating, figures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from hhhlab.data.schema import PreferenceGroup, recast_binary, write_jsonl
from hhhlab.errors import DataError
from hhhlab.experiments.datasets import parse_datasets
from hhhlab.experiments.sweep import SweepConfig, run_sweep
from hhhlab.store import ResultsStore


def _ranked(n: int, seed: int = 0) -> list[PreferenceGroup]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = i, rng.randint(1, 9)  # unique contexts
        out.append(PreferenceGroup(id=f"r{i}", context=f"Question: what is {a} plus {b}?\nAnswer:",
                                   responses=[f" {a + b}", f" {a + b + 1}"], scores=[1, 0], kind="ranked",
                                   source="test"))
    return out


def _binary(n: int) -> list[PreferenceGroup]:
    return [recast_binary(f"b{i}", f"Is {i} even?", " Yes" if i % 2 == 0 else " No",
                          " No" if i % 2 == 0 else " Yes", source="test") for i in range(n)]


@pytest.fixture
def data_files(tmp_path):
    ranked, binary = tmp_path / "ranked.jsonl", tmp_path / "binary.jsonl"
    write_jsonl(_ranked(40), ranked)
    write_jsonl(_binary(40), binary)
    return ranked, binary


def _cfg(tmp_path, data_files, **kw) -> SweepConfig:
    ranked, binary = data_files
    return SweepConfig(models="tiny:llama,layers=2@L1,tiny:llama,layers=2", objectives="imitation,preference",
                       datasets=f"arith={ranked},parity={binary}", train_size=16, eval_size=8,
                       output=str(tmp_path / "sweep"), batch_size=4, max_steps=3, lr=1e-3, progress=False, **kw)


def test_resume_skips_finished_cells_and_never_duplicates(tmp_path, data_files):
    calls = []

    def fake_train(tc):  # records which cells ran; metrics depend only on the cell
        calls.append((tc.model, tc.objective, tc.train))
        acc = 0.5 + 0.1 * ("L1" not in tc.model) + 0.05 * (tc.objective == "preference")
        return {"accuracy": acc, "accuracy_ci": [acc - 0.1, acc + 0.1], "n_eval": 8,
                "non_embedding_params": 100 if "L1" in tc.model else 200}

    cfg = _cfg(tmp_path, data_files)
    store = ResultsStore(tmp_path / "store")
    first = run_sweep(cfg, store=store, train_fn=fake_train)
    assert len(calls) == 8 and len(first["cells"]) == 8
    second = run_sweep(cfg, store=store, train_fn=fake_train)
    assert len(calls) == 8, "a finished cell was trained again"
    assert second["cells"] == first["cells"]
    [run] = store.runs("sweep_objectives")
    from pathlib import Path

    from hhhlab.store import Run

    assert len(Run(store, run["run_id"], Path(run["path"])).items()) == 8
    gains = {(g["dataset"], g["model"]): g["gain"] for g in first["gains"]}
    assert gains[("arith", "tiny:llama,layers=2")] == pytest.approx(0.05)
    assert all(g["gain_ci"][0] < g["gain"] < g["gain_ci"][1] for g in first["gains"])
    # changed settings never reuse the old run's cells
    run_sweep(cfg.model_copy(update={"lr": 2e-3}), store=store, train_fn=fake_train)
    assert len(calls) == 16 and len(store.runs("sweep_objectives")) == 2
    kinds = {d: v["kind"] for d, v in first["datasets"].items()}
    assert kinds == {"arith": "ranked", "parity": "binary"}
    for fig in first["figures"]:
        assert (tmp_path / "sweep" / "figures").exists() and fig.endswith(".png")


def test_every_cell_of_a_dataset_shares_train_and_test_items(tmp_path, data_files):
    seen = []
    run_sweep(_cfg(tmp_path, data_files), store=ResultsStore(tmp_path / "s"),
              train_fn=lambda tc: seen.append((tc.train, tc.eval)) or {
                  "accuracy": 0.5, "accuracy_ci": [0.4, 0.6], "n_eval": 8, "non_embedding_params": 1})
    by_data = {}
    for train, test in seen:
        by_data.setdefault(train.split("/")[-2].rsplit("-", 1)[0], set()).add((train, test))  # NAME-<source>
    assert all(len(v) == 1 for v in by_data.values())
    train, test = next(iter(by_data["arith"]))
    train_ctx = {json.loads(line)["context"] for line in Path(train).read_text().splitlines()}
    test_ctx = {json.loads(line)["context"] for line in Path(test).read_text().splitlines()}
    assert len(train_ctx) == 16 and not train_ctx & test_ctx, "a context leaked between train and test"


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        parse_datasets("hellaswag,nope")


def test_real_trainer_end_to_end(tmp_path, data_files):
    cfg = _cfg(tmp_path, data_files).model_copy(update={"datasets": f"arith={data_files[0]}"})
    results = run_sweep(cfg, store=ResultsStore(tmp_path / "store"))
    assert len(results["cells"]) == 4
    params = {c["model"]: c["non_embedding_params"] for c in results["cells"]}
    assert params["tiny:llama,layers=2@L1"] < params["tiny:llama,layers=2"]
    assert all(0 <= c["accuracy"] <= 1 and c["n_eval"] > 0 for c in results["cells"])
    assert len(results["gains"]) == 2
    assert {p.split("/")[-1] for p in results["figures"]} == {"accuracy_vs_params.png", "pm_minus_il.png"}


def test_pm_minus_il_is_a_paired_bootstrap_when_cells_carry_pair_outcomes():
    """Same eval pairs for both objectives: the gain's CI resamples pairs jointly, which is
    narrower than treating the cells as independent when their outcomes agree often."""
    from hhhlab.experiments.sweep import Cell, pm_minus_il
    from hhhlab.stats import bootstrap, paired_difference

    il_pairs = [1.0] * 60 + [0.0] * 40
    pm_pairs = [1.0] * 60 + [1.0] * 10 + [0.0] * 30  # right wherever IL is, and on 10 more pairs

    def cell(pairs, keep_pairs=True):
        est = bootstrap(pairs)
        return {"accuracy": est.value, "accuracy_ci": [est.lo, est.hi], "kind": "ranked",
                "non_embedding_params": 1, **({"pair_correct": pairs} if keep_pairs else {})}

    cells = [Cell("m", "imitation", "d"), Cell("m", "preference", "d")]
    paired = pm_minus_il(cells, {cells[0].key: cell(il_pairs), cells[1].key: cell(pm_pairs)})[0]
    want = paired_difference(pm_pairs, il_pairs)
    assert paired["gain"] == pytest.approx(0.10) and paired["gain_ci"] == [want.lo, want.hi]
    assert paired["gain_ci_method"] == "paired bootstrap" and paired["gain_ci"][0] > 0
    old = pm_minus_il(cells, {cells[0].key: cell(il_pairs, False), cells[1].key: cell(pm_pairs, False)})[0]
    assert old["gain_ci_method"].startswith("independent") and old["gain_ci"][0] < 0 < paired["gain_ci"][0]


def test_sweep_flags_are_generated_from_the_config_and_yaml_works(tmp_path, data_files, monkeypatch):
    """One source of flags, YAML keys and defaults: every `SweepConfig` field is a flag."""
    from typer.testing import CliRunner

    from hhhlab.cli import app
    from hhhlab.experiments import cli as sweep_cli

    params = set(sweep_cli._objectives.__signature__.parameters)
    assert params == set(SweepConfig.model_fields) | {"config"}
    got = {}
    def fake_run_sweep(cfg, on_cell=None):
        got["cfg"] = cfg
        return {"cells": [], "gains": [], "figures": []}

    monkeypatch.setattr("hhhlab.experiments.sweep.run_sweep", fake_run_sweep)
    ranked, _ = data_files
    yml = tmp_path / "s.yaml"
    yml.write_text(f"datasets: arith={ranked}\noutput: {tmp_path / 'out'}\nlr: 0.002\nmax-steps: 3\n")
    res = CliRunner().invoke(app, ["sweep", "objectives", "--config", str(yml), "--lr", "0.003", "--models", "tiny:llama"])
    assert res.exit_code == 0, res.output
    cfg = got["cfg"]
    assert (cfg.lr, cfg.max_steps, cfg.models, cfg.dtype) == (0.003, 3, "tiny:llama", "auto")
    res = CliRunner().invoke(app, ["sweep", "objectives", "--config", str(yml), "--batch-size", "0"])
    assert res.exit_code != 0 and "batch_size" in str(res.exception)


def test_one_default_dtype_rule_for_eval_pm_and_sweep():
    import inspect as _inspect

    from hhhlab.evals.cli import eval_cmd
    from hhhlab.models.device import DEFAULT_DTYPE
    from hhhlab.train.cli import eval_command
    from hhhlab.train.config import TrainConfig

    def flag_default(fn):
        return _inspect.signature(fn).parameters["dtype"].default.default

    assert DEFAULT_DTYPE == "auto"
    assert {flag_default(eval_cmd), flag_default(eval_command), TrainConfig.model_fields["dtype"].default,
            SweepConfig.model_fields["dtype"].default} == {DEFAULT_DTYPE}
