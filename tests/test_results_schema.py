"""The result schema (`hhhlab.results`): every results file the lab writes is a versioned
document whose estimates are `{value, lo, hi, n, method}` records; it parses, round-trips,
refuses a newer version clearly, and legacy (pre-schema) files still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hhhlab.results import (
    KINDS,
    SCHEMA_VERSION,
    SchemaError,
    find_estimates,
    parse_results,
    read_metrics,
    read_results,
)
from hhhlab.stats import BOOTSTRAP, INDEPENDENT, PAIRED

pytestmark = pytest.mark.usefixtures("one_thread")
LLAMA = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"
RECORD = {"value", "lo", "hi", "n", "method"}


def assert_document(path: Path, kind: str) -> dict:
    """The file is a current-version document of ``kind``; every estimate anywhere is a full
    record; it round-trips through parse_results unchanged."""
    raw = json.loads(path.read_text())
    assert raw["schema"] == "hhhlab.results" and raw["schema_version"] == SCHEMA_VERSION and raw["kind"] == kind
    doc = read_results(path, kind=kind)
    assert doc.estimates, "a results document with no estimates"
    assert all(set(e.model_dump()) == RECORD and e.method for e in doc.estimates.values())
    for _, rec in find_estimates(raw["payload"]):
        assert RECORD <= set(rec), rec
    assert parse_results(doc.to_json(), source="again") == doc
    assert raw["provenance"]["code_version"]
    return raw


def test_eval_cli_writes_a_document(tmp_path):
    from test_evals import make_data
    from typer.testing import CliRunner

    from hhhlab.cli import app

    data = make_data(tmp_path / "data")
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(app, ["eval", "--model", LLAMA, "--evals", "hhh_alignment,truthfulqa_mc1",
                                   "--condition", "plain", "--data-dir", str(data), "--output", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    raw = assert_document(out, "eval")
    assert raw["estimates"][f"{LLAMA}/plain/hhh_alignment/acc"]["method"] == BOOTSTRAP
    assert raw["payload"]["results"][0]["metrics"]["acc"]["method"] == BOOTSTRAP
    from hhhlab.store import ResultsStore

    [run] = ResultsStore().runs("eval")
    assert run["results"].kind == "eval" and (Path(run["path"]) / "metrics.json").exists()
    assert_document(Path(run["path"]) / "metrics.json", "eval")


def test_paired_differences_say_so():
    from hhhlab.stats import paired_difference

    assert paired_difference([1, 0, 1], [0, 0, 1]).method == PAIRED


def test_pm_train_and_pm_eval_write_documents(tmp_path):
    from typer.testing import CliRunner

    from hhhlab.cli import app
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.toy import write_toy
    from hhhlab.train.trainer import train_and_evaluate

    toy = write_toy(tmp_path / "toy.jsonl", 16, seed=0)
    cfg = TrainConfig(model=LLAMA, train=str(toy), eval=str(toy), output=str(tmp_path / "pm"), max_steps=2,
                      batch_size=4, device="cpu", progress=False)
    m = train_and_evaluate(cfg)
    raw = assert_document(tmp_path / "pm" / "metrics.json", "pm_train")
    assert raw["estimates"]["accuracy"]["value"] == m["accuracy"] and raw["config"]["model"] == LLAMA
    assert read_metrics(tmp_path / "pm" / "metrics.json") == json.loads(json.dumps(m))  # the dict API round-trips
    assert train_and_evaluate(cfg)["accuracy"] == m["accuracy"]  # the finished run is read back, not redone
    out = tmp_path / "pm_eval.json"
    res = CliRunner().invoke(app, ["pm", "eval", "--pm", str(tmp_path / "pm"), "--data", str(toy), "--output", str(out),
                                   "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    assert assert_document(out, "pm_eval")["estimates"]["accuracy"]["n"] == m["n_eval"]


def test_sweep_json_is_a_document_with_named_gain_methods(tmp_path):
    from test_sweep import _binary, _ranked

    from hhhlab.data.schema import write_jsonl
    from hhhlab.experiments.sweep import SweepConfig, run_sweep
    from hhhlab.store import ResultsStore

    write_jsonl(_ranked(40), tmp_path / "r.jsonl")
    write_jsonl(_binary(40), tmp_path / "b.jsonl")

    def fake_train(tc, paired=True):
        acc = 0.6 + 0.1 * (tc.objective == "preference")
        pair = [1.0] * 6 + [0.0] * 2 if tc.objective == "preference" else [1.0] * 5 + [0.0] * 3
        return {"accuracy": acc, "accuracy_ci": [acc - 0.1, acc + 0.1], "n_eval": 8, "non_embedding_params": 100,
                "estimates": {"accuracy": {"value": acc, "lo": acc - 0.1, "hi": acc + 0.1, "n": 8, "method": BOOTSTRAP}},
                **({"pair_correct": pair} if "r.jsonl" in tc.train or "arith" in tc.output else {})}

    cfg = SweepConfig(models="tiny:llama,layers=2", objectives="imitation,preference",
                      datasets=f"arith={tmp_path / 'r.jsonl'},parity={tmp_path / 'b.jsonl'}", train_size=16,
                      eval_size=8, output=str(tmp_path / "sweep"), max_steps=1, progress=False)
    results = run_sweep(cfg, store=ResultsStore(tmp_path / "store"), train_fn=fake_train)
    raw = assert_document(tmp_path / "sweep" / "sweep.json", "sweep_objectives")
    methods = {k.split("/")[0]: v["method"] for k, v in raw["estimates"].items() if k.endswith("pm_minus_il")}
    assert methods == {"arith": PAIRED, "parity": INDEPENDENT}
    assert raw["payload"]["gains"] == results["gains"]
    assert all(set(g["estimate"]) == RECORD for g in results["gains"])


def test_store_wraps_a_plain_dict_in_a_document_of_the_runs_kind(tmp_path):
    from hhhlab.store import ResultsStore

    store = ResultsStore(tmp_path)
    run = store.create_run("pm_eval", {"x": 1})
    run.finish({"accuracy": 0.5, "estimates": {"accuracy": {"value": 0.5, "lo": 0.4, "hi": 0.6, "n": 10,
                                                             "method": BOOTSTRAP}}})
    assert_document(run.path / "metrics.json", "pm_eval")
    [rec] = store.runs("pm_eval")
    assert rec["metrics"] == {"accuracy": 0.5} and rec["results"].estimates["accuracy"].n == 10


def test_a_newer_version_is_refused_with_a_clear_message(tmp_path):
    from hhhlab.results import write_results

    path = write_results(tmp_path / "r.json", "eval", estimates={"a": {"value": 1, "lo": 1, "hi": 1, "n": 1}})
    doc = json.loads(path.read_text())
    doc["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(doc))
    with pytest.raises(SchemaError, match=rf"{path.name}: results schema version {SCHEMA_VERSION + 1}.*reads "
                                          rf"versions 0 to {SCHEMA_VERSION}.*upgrade hhhlab"):
        read_results(path)
    with pytest.raises(SchemaError, match="unknown results kind"):
        write_results(tmp_path / "x.json", "nope")
    assert "eval" in KINDS


def test_legacy_files_still_read(tmp_path):
    """Files written before the schema: an eval report, a pm metrics.json (whose finished run is
    still recognised) and a sweep.json."""
    legacy_eval = {"run_id": "e1", "results": [{"model": "m", "condition": "plain", "eval": "lambada",
                                                "variant": None, "metrics": {"acc": {"value": 0.5, "lo": 0.4,
                                                                                     "hi": 0.6, "n": 10}}}]}
    (tmp_path / "e.json").write_text(json.dumps(legacy_eval))
    doc = read_results(tmp_path / "e.json", kind="eval")
    assert doc.schema_version == 0 and doc.payload == legacy_eval
    assert doc.estimates["results/0/metrics/acc"].method == "legacy"
    assert read_metrics(tmp_path / "e.json") == legacy_eval
    legacy_sweep = {"cells": [], "gains": [{"dataset": "d", "model": "m", "gain": 0.1, "gain_ci": [0, 0.2]}]}
    (tmp_path / "sweep.json").write_text(json.dumps(legacy_sweep))
    assert read_results(tmp_path / "sweep.json", kind="sweep_objectives").payload == legacy_sweep


def test_figure_functions_read_documents_paths_and_legacy_dicts(tmp_path):
    from hhhlab.report.scaling import plot_sweep
    from hhhlab.results import write_results

    cells = [{"dataset": "d", "objective": o, "model": "m", "kind": "ranked", "accuracy": a,
              "accuracy_ci": [a - 0.1, a + 0.1], "non_embedding_params": p}
             for o, a in (("imitation", 0.6), ("preference", 0.7)) for p in (100, 200)]
    legacy = {"datasets": {"d": {"kind": "ranked"}}, "cells": cells,
              "gains": [{"dataset": "d", "model": "m", "kind": "ranked", "non_embedding_params": 100, "gain": 0.1,
                         "gain_ci": [0.0, 0.2]}]}
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    doc = write_results(tmp_path / "doc.json", "sweep_objectives", payload=legacy)
    for source in (legacy, tmp_path / "legacy.json", doc, json.loads(doc.read_text())):
        paths = plot_sweep(source, tmp_path / "figs")
        assert [p.name for p in paths] == ["accuracy_vs_params.png", "pm_minus_il.png"]
