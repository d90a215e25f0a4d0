"""Preference-model pre-training (issue 13): synthetic data, the PMP command, fine-tuning curves,
pairs saved, and the bad inputs that must fail before training."""

from __future__ import annotations

import json
import shutil
import tracemalloc

import pytest
from pydantic import ValidationError

from hhhlab.data.schema import PreferenceGroup, read_jsonl, write_jsonl
from hhhlab.errors import DataError, HHHLabError
from hhhlab.pmp.analysis import equivalent_n, pairs_saved
from hhhlab.pmp.config import FinetuneConfig, PMPConfig, load
from hhhlab.pmp.synthetic import SCRAMBLES, SymbolTask, SyntheticPairSource
from hhhlab.results import read_results

TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"


# -- synthetic data (App. C.6) ------------------------------------------------------------------

def test_symbol_task_matches_the_paper():
    task = SymbolTask()
    assert len(task.symbols) == 676 and task.text("AC") == "(AC)(AC)(AC)(AC)"
    assert sorted(task.rank.values()) == list(range(676))
    assert SCRAMBLES == {"T0": 0, "T1": 10, "T2": 40, "T3": 160, "T4": 640}
    displaced = [sum(task.scrambled(k)[s] != task.rank[s] for s in task.symbols) for k in (10, 40, 160, 640)]
    assert 0 < displaced[0] <= 20 and displaced == sorted(displaced)  # more transpositions, more scrambled
    assert sum(task.good(s) for s in task.symbols) == 338
    top = max(task.symbols, key=task.rank.__getitem__)
    bottom = min(task.symbols, key=task.rank.__getitem__)
    (g,) = task.binary_groups(top)
    assert g.responses == [f"GOOD: {task.text(top)}", f"BAD: {task.text(top)}"] and g.scores == [1, 0]
    (b,) = task.binary_groups(bottom)
    assert b.responses == [f"BAD: {task.text(bottom)}", f"GOOD: {task.text(bottom)}"]
    (p,) = task.pair_at("T0", 7)
    assert p == task.pair_at("T0", 7)[0] and p.scores[0] != p.scores[1]
    better = p.metadata["symbols"][0 if p.scores[0] > p.scores[1] else 1]
    worse = next(s for s in p.metadata["symbols"] if s != better)
    assert task.rank[better] > task.rank[worse]


def test_million_pair_source_streams_in_constant_memory(tiny_llama):
    """≥ 1M pairs, never materialised: a step's batch is computed from (seed, step) alone."""
    from hhhlab.train.data import encode_record

    tok = tiny_llama.tokenizer
    task = SymbolTask()
    src = SyntheticPairSource(task, "T2", 1_000_000, 32, lambda g, i, stats: encode_record(g, i, tok, 64, stats))
    assert src.steps_per_epoch == 31_250
    tracemalloc.start()
    first = src.global_batch(0)
    _, peak_first = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    last = src.global_batch(31_249)
    _, peak_last = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(first) == len(last) == 32
    assert peak_last < 2 * peak_first + 2**20 and peak_last < 16 * 2**20  # no state grows with the step
    assert [g.responses for g in src.global_batch(31_249)] == [g.responses for g in last]  # resumable


def test_training_on_a_million_pair_stream(tmp_path, tiny_llama):
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.trainer import make_objective, train

    cfg = TrainConfig(model=TINY, objective="preference", train="synthetic", output=str(tmp_path / "o"),
                      max_steps=2, batch_size=8, lm_weight=1.0, device="cpu", progress=False, record_run=False)
    obj = make_objective(cfg)
    tok = tiny_llama.tokenizer
    src = SyntheticPairSource(SymbolTask(), "Tb", 1_000_000, 8,
                              lambda g, i, stats: obj.encode(g, i, tok, 64, stats))
    _, summary = train(cfg, objective=obj, source=src)
    assert summary["step"] == 2 and summary["pairs_seen"] == 16 and summary["source"]["pairs"] == 1_000_000


# -- pairs saved --------------------------------------------------------------------------------

def _point(n, correct):
    return {"n": n, "accuracy": {"value": sum(correct) / len(correct)}, "pair_correct": correct}


def test_equivalent_n_interpolates_on_log_n():
    eq, cens = equivalent_n(0.65, [10, 100, 1000], [0.5, 0.6, 0.7])
    assert cens is None and eq == pytest.approx(316.23, rel=1e-3)
    assert equivalent_n(0.9, [10, 100], [0.5, 0.6]) == (100.0, "above")
    assert equivalent_n(0.4, [10, 100], [0.5, 0.6]) == (10.0, "below")
    assert equivalent_n(0.6, [0, 10, 100], [0.5, 0.7, 0.6])[0] == pytest.approx(10 ** 0.5 * 0.5 ** 0.5, rel=1e-3)


def test_pairs_saved_with_paired_bootstrap():
    base = [_point(10, [1] * 50 + [0] * 50), _point(100, [1] * 60 + [0] * 40), _point(1000, [1] * 70 + [0] * 30)]
    pmp = [_point(10, [1] * 65 + [0] * 35)]
    (row,) = pairs_saved(pmp, base, n_boot=300)
    s = row["pairs_saved"]
    assert row["equivalent_baseline_n"] == pytest.approx(316.23, rel=1e-3) and s["value"] == pytest.approx(306.23, rel=1e-3)
    assert s["lo"] <= s["value"] <= s["hi"] and row["ratio"] == pytest.approx(31.6, rel=1e-2)
    with pytest.raises(ValueError, match="evaluated on"):
        pairs_saved([_point(10, [1, 0])], base)


# -- PMP and fine-tuning, end to end on a tiny model --------------------------------------------

def ranked_file(path, n, offset=0):
    groups = [PreferenceGroup(id=f"q{i}", context=f"Question: {i + offset}?\nAnswer:",
                              responses=[" Yes, because.", " No.", " Maybe."], scores=[3, 1, 2], kind="ranked",
                              source="stackexchange") for i in range(n)]
    write_jsonl(groups, path)
    return str(path)


def test_config_errors_before_training(tmp_path):
    with pytest.raises(DataError, match="weights has 1 values for 2 sources"):
        load(PMPConfig, sources="a.jsonl,b.jsonl", weights="1", output=str(tmp_path))
    with pytest.raises(DataError, match="both 0"):
        load(PMPConfig, sources="a.jsonl", pm_weight=0, lm_weight=0, output=str(tmp_path))
    assert PMPConfig(sources=["a"], output="o").learning_rate == pytest.approx(3e-4)
    assert FinetuneConfig(init="m", train="t", eval="e", output="o").learning_rate == pytest.approx(3e-5)
    with pytest.raises(DataError, match="sizes"):
        load(FinetuneConfig, init="m", train="t", eval="e", output="o", sizes="0,-3")


def test_prepare_binarized_and_ranked_and_empty_source(tmp_path):
    from hhhlab.pmp.pretrain import prepare

    src = ranked_file(tmp_path / "se.jsonl", 5)
    ranked = prepare(PMPConfig(sources=[src], mode="ranked", output=str(tmp_path / "r")))
    binar = prepare(PMPConfig(sources=[src], mode="binarized", output=str(tmp_path / "b")))
    assert ranked["pairs"] == [5] and binar["pairs"] == [10]  # binarizing doubles the pairs
    g = next(read_jsonl(binar["train"][0]))
    assert g.context == "" and g.responses[0].startswith("GOOD: Question: 0?") and g.kind == "binary"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="yields no pair"):
        prepare(PMPConfig(sources=[str(empty)], output=str(tmp_path / "e")))
    with pytest.raises(DataError, match="no such file"):
        prepare(PMPConfig(sources=[str(tmp_path / "missing.jsonl")], output=str(tmp_path / "m")))


def test_pmp_then_finetune_cli(tmp_path):
    from typer.testing import CliRunner

    from hhhlab.cli import app

    runner = CliRunner()
    a, b = ranked_file(tmp_path / "a.jsonl", 12), ranked_file(tmp_path / "b.jsonl", 6, offset=100)
    heldout = ranked_file(tmp_path / "held.jsonl", 4, offset=500)
    out = tmp_path / "pmp"
    args = ["pmp", "--model", TINY, "--sources", f"{a},{b}", "--weights", "2,1", "--mode", "binarized", "--batch-size",
            "4", "--max-steps", "3", "--eval", heldout, "--output", str(out), "--device", "cpu", "--no-progress",
            "--max-length", "64"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = read_results(out / "results.json", kind="pmp")
    assert doc.payload["pairs"] == [24, 12] and doc.payload["steps"] == 3 and "heldout_accuracy" in doc.estimates
    target = ranked_file(tmp_path / "ft.jsonl", 10, offset=1000)
    ft_eval = ranked_file(tmp_path / "ft_eval.jsonl", 6, offset=2000)
    ft = tmp_path / "ft"
    res = runner.invoke(app, ["pm", "finetune", "--init", str(out), "--train", target, "--eval", ft_eval,
                              "--sizes", "0,4,8", "--batch-size", "4", "--output", str(ft), "--device", "cpu",
                              "--no-progress", "--max-length", "64"])
    assert res.exit_code == 0, res.output
    doc = read_results(ft / "results.json", kind="pm_finetune")
    pts = doc.payload["points"]
    assert [p["n"] for p in pts] == [0, 4, 8] and doc.payload["base_model"] == TINY
    assert all(p["accuracy"]["n"] == 18 and len(p["pair_correct"]) == 18 for p in pts)  # 6 groups x 3 pairs
    assert [len(read_jsonl_list(ft / f"n{n}" / "train.jsonl")) for n in (4, 8)] == [4, 8]
    first4 = [g.id for g in read_jsonl_list(ft / "n4" / "train.jsonl")]
    assert [g.id for g in read_jsonl_list(ft / "n8" / "train.jsonl")][:4] == first4  # one fixed shuffle
    # a size larger than the data, and an init of another architecture: errors before training
    res = runner.invoke(app, ["pm", "finetune", "--init", str(out), "--train", target, "--eval", ft_eval,
                              "--sizes", "0,50", "--output", str(tmp_path / "x")])
    assert isinstance(res.exception, DataError) and "exceed the 10 pairs" in str(res.exception)
    res = runner.invoke(app, ["pm", "finetune", "--init", str(out), "--model", TINY.replace("layers=2", "layers=3"),
                              "--train", target, "--eval", ft_eval, "--sizes", "4", "--output", str(tmp_path / "y")])
    assert isinstance(res.exception, HHHLabError) and "another architecture" in str(res.exception)
    assert not (tmp_path / "y" / "n4" / "model").exists()


def read_jsonl_list(path):
    return list(read_jsonl(path))


def test_init_with_another_tokenizer_is_refused(tmp_path):
    from hhhlab.pmp.finetune import check_init
    from hhhlab.train.preference_model import PreferenceModel
    from hhhlab.train.warm_start import InitError

    d = PreferenceModel.from_lm(TINY, scoring="head", device="cpu").save_pretrained(tmp_path / "m")
    check_init(str(d), TINY)
    tj = json.loads((d / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    x, y = list(vocab)[10], list(vocab)[11]
    vocab[x], vocab[y] = vocab[y], vocab[x]
    (d / "tokenizer.json").write_text(json.dumps(tj))
    with pytest.raises(InitError, match="another tokenizer"):
        check_init(str(d), TINY)
    shutil.rmtree(d)


@pytest.mark.slow
def test_synthetic_sweep_end_to_end(tmp_path):
    from hhhlab.pmp.sweep import SyntheticSweepConfig, run_synthetic

    cfg = SyntheticSweepConfig(model=TINY, conditions=["none", "Tb", "T4"], letters=3, pmp_pairs=32, sizes=[0, 8],
                               eval_pairs=20, output=str(tmp_path / "s"), base_lr=1e-2)
    payload = run_synthetic(cfg)
    assert {p["condition"] for p in payload["points"]} == {"No PM pretrain", "Binary", "Very strongly scrambled"}
    assert set(payload["pairs_saved_vs_no_pmp"]) == {"Binary", "Very strongly scrambled"}
    doc = read_results(tmp_path / "s" / "results.json", kind="sweep_pmp_synthetic")
    assert len(doc.estimates) == 6 and (tmp_path / "s" / "fig33_synthetic.png").exists()
    again = run_synthetic(cfg)  # resumable: finished cells are read back, not retrained
    assert [p["accuracy"] for p in again["points"]] == [p["accuracy"] for p in payload["points"]]


def test_synthetic_cells_compute_what_the_one_run_per_cell_commands_compute(tmp_path):
    """The in-process runner (one model load, cells train copies) is a speed-up, not another
    experiment: its no-PMP fine-tuning point equals `pm finetune` on the same files."""
    from hhhlab.pmp.finetune import run_finetune
    from hhhlab.pmp.sweep import SyntheticSweepConfig, run_synthetic

    cfg = SyntheticSweepConfig(model=TINY, conditions=["none"], letters=3, sizes=[0, 8], eval_pairs=20,
                               output=str(tmp_path / "s"), base_lr=1e-1, lm_weight=1.0)  # = FinetuneConfig's (1, 1)
    fast = {p["n"]: p for p in run_synthetic(cfg)["points"]}
    data = sorted((tmp_path / "s" / "data").glob("T0-*.jsonl"))
    train, ev = (next(f for f in data if "finetune" in f.name), next(f for f in data if "eval" in f.name))
    slow = run_finetune(FinetuneConfig(init=TINY, train=str(train), eval=str(ev), sizes=[8], lr=1e-3, batch_size=16,
                                       epochs=1, max_length=64, device="cpu", output=str(tmp_path / "f"),
                                       progress=False))["points"][0]
    assert fast[8]["pair_correct"] == slow["pair_correct"]
    assert fast[8]["accuracy"] == slow["accuracy"]
    assert fast[8]["pm_loss"]["value"] == pytest.approx(slow["pm_loss"]["value"], rel=1e-7)
    assert fast[8]["pm_loss"]["value"] != pytest.approx(fast[0]["pm_loss"]["value"], rel=1e-3)  # it trained


def test_bad_condition_name():
    from hhhlab.pmp.sweep import SyntheticSweepConfig

    with pytest.raises(ValidationError, match="unknown conditions"):
        SyntheticSweepConfig(conditions="none,T9", output="o")


@pytest.mark.slow
def test_pmp_on_two_processes_then_resume_on_one(tmp_path):
    """``accelerate launch -m hhhlab pmp``: 2 CPU processes for 2 steps, then the same run resumed
    with 1 process to 4 steps; its losses match a 1-process run of 4 steps (the global batch is a
    function of the step, not of the process count)."""
    from launch import finish, launch

    src = ranked_file(tmp_path / "a.jsonl", 40)
    common = ["pmp", "--model", TINY, "--sources", src, "--batch-size", "4", "--device", "cpu", "--no-progress",
              "--max-length", "64", "--checkpoint-every", "1"]
    finish(launch("hhhlab", [*common, "--max-steps", "2", "--output", str(tmp_path / "mp")], processes=2))
    finish(launch("hhhlab", [*common, "--max-steps", "4", "--output", str(tmp_path / "mp")], processes=1))
    finish(launch("hhhlab", [*common, "--max-steps", "4", "--output", str(tmp_path / "one")], processes=1))
    mp = read_results(tmp_path / "mp" / "results.json", kind="pmp").payload["loss_history"]
    one = read_results(tmp_path / "one" / "results.json", kind="pmp").payload["loss_history"]
    assert len(mp) == len(one) and all(a[1] == pytest.approx(b[1], rel=1e-4, abs=1e-5) for a, b in zip(mp, one))


def test_hub_sources_stream_through_the_builders(tmp_path):
    """``hf:`` PMP sources (the hub copies of stack-exchange-preferences and SHP) go through the
    data builders; here local folders stand in for the hub, as tests have none."""
    from hhhlab.pmp.pretrain import prepare

    h4 = tmp_path / "stack-exchange-preferences"
    h4.mkdir()
    row = {"qid": 7, "question": "<p>How to brew?</p>", "date": "2020", "metadata": ["beer.stackexchange.com"],
           "answers": [{"answer_id": 1, "pm_score": 3, "selected": True, "text": "<p>Malt.</p>", "author": "a"},
                       {"answer_id": 2, "pm_score": 0, "selected": False, "text": "<p>Buy.</p>", "author": "b"}]}
    (h4 / "train.jsonl").write_text(json.dumps(row) + "\n" + json.dumps({**row, "qid": 8, "answers": "bad"}) + "\n")
    shp = tmp_path / "shp"
    shp.mkdir()
    (shp / "train.jsonl").write_text(json.dumps({"post_id": "p", "domain": "askscience_train", "history": "Why?",
                                                 "c_root_id_A": "a", "c_root_id_B": "b", "score_A": 5, "score_B": 1,
                                                 "human_ref_A": "Because.", "human_ref_B": "No."}) + "\n")
    done = prepare(PMPConfig(sources=[f"hf:{h4}@train", f"reddit=hf:{shp}@train"], mode="ranked",
                             output=str(tmp_path / "o")))
    assert done["pairs"] == [1, 1]
    (g,) = read_jsonl(done["train"][0])
    assert g.context == "Question: How to brew?\nAnswer:" and g.responses == [" Malt.", " Buy."]
    with pytest.raises(DataError, match="say which builder"):
        prepare(PMPConfig(sources=[f"hf:{tmp_path / 'other'}"], output=str(tmp_path / "p")))


def test_sweep_target_names(tmp_path):
    from hhhlab.errors import DataError
    from hhhlab.pmp.sweep import parse_target

    assert parse_target("cm_train.jsonl:cm_test.jsonl") == ("cm", "cm_train.jsonl", "cm_test.jsonl")
    assert parse_target("a/x.test.jsonl.gz:b/x.test.jsonl.gz")[0] == "x"
    split = tmp_path / "hellaswag_split"
    assert parse_target(f"{split}/train.jsonl:{split}/test.jsonl")[0] == "hellaswag"  # data split's layout
    assert parse_target("hs=t.jsonl:e.jsonl") == ("hs", "t.jsonl", "e.jsonl")
    with pytest.raises(DataError, match="NAME=.*TRAIN"):
        parse_target("only_one.jsonl")
