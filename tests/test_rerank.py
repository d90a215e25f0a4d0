"""The re-ranking sweep (App. B.6, Figs 11-13): the estimator on a hand-computed example, the
Lambada training groups, the sweep end to end on tiny models (a valid document, a resume that
reruns nothing) and its report section."""

from __future__ import annotations

import json
import random
import re

import pytest

from hhhlab.experiments.rerank import Passage, RerankConfig, run_rerank, training_groups
from hhhlab.results import read_results
from hhhlab.train.evaluate import acc_at_k, lambada_answer, rerank_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = "tiny:llama,layers=2@L1,tiny:llama,layers=2"
WORDS = ("dog", "fox", "capital", "model", "answer", "python", "history", "function", "numbers", "sky")


def test_acc_at_k_and_the_three_lines_on_a_hand_computed_example():
    # ranked best first, correct at ranks 2 and 4 of 4: the best of a random pair is right in 2 of
    # the 6 pairs ({2,3}, {2,4}): (0·C(3,1) + 1·C(2,1) + 0·C(1,1) + 1·C(0,1)) / C(4,2) = 2/6
    assert acc_at_k([False, True, False, True], 2) == pytest.approx(1 / 3)
    assert acc_at_k([False, True, False, True], 1) == pytest.approx(0.5)
    assert acc_at_k([False, True, False, True], 4) == pytest.approx(0.0)  # the ranker's top is wrong
    scores = [[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]]
    correct = [[False, True, False, True], [True, False, False, False]]  # prompt 2's ranker puts it last
    out = rerank_accuracy(scores, correct, ks=(1, 2))
    assert out["2"]["ranked"]["value"] == pytest.approx((1 / 3 + 0) / 2)
    # oracle: pass@2 = 1 − C(n−c, 2)/C(4, 2): 1 − 1/6 and 1 − 3/6
    assert out["2"]["oracle"]["value"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert out["2"]["average"]["value"] == pytest.approx((0.5 + 0.25) / 2)
    assert out["1"]["ranked"]["value"] == pytest.approx(out["1"]["average"]["value"])
    assert out["2"]["ranked"]["n"] == 2


def test_training_groups_pair_the_target_with_up_to_two_distinct_wrong_answers():
    passages = [Passage("a", "The quick brown fox jumps over the lazy", "dog"),
                Passage("b", "Paris is the capital of", "France"),
                Passage("c", "A language model assigns", "probabilities")]
    samples = [[" dog.", " cat", " cat!", " dog and", " mouse", " horse"],  # 2 right; cat, mouse, horse wrong
               [" France", " France."],  # every sample right: no pair
               ["", "\n", " words here"]]  # answer-less samples are not wrong answers
    groups, counts = training_groups(passages, samples)
    assert [g.responses for g in groups] == [[" dog", " cat", " mouse"], [" probabilities", " words"]]
    assert all(g.kind == "binary" and g.scores[0] == 1 and set(g.scores[1:]) == {0} for g in groups)
    assert counts == {"passages": 3, "samples": 11, "correct_samples": 4, "no_wrong_answer": 1}
    assert groups[0].metadata["sampled_correct"] == 2 and groups[0].split_key == passages[0].context
    assert lambada_answer(' "Dog," she said') == "Dog"


def _lambada_dir(tmp_path, n=40):
    rng = random.Random(0)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
        rows.append({"context": f"Story {i}: the " + " ".join(words) + " and then the",
                     "continuation": rng.choice(WORDS)})
    folder = tmp_path / "data" / "lambada"
    folder.mkdir(parents=True)
    (folder / "lambada_openai.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def tiny_rerank(tmp_path_factory):
    """One sweep over two tiny rungs through the CLI (the default store of the test's $HHHLAB_HOME
    is set per test, so this module-scoped run uses its own store explicitly)."""
    from hhhlab.store import ResultsStore

    tmp = tmp_path_factory.mktemp("rerank")
    cfg = RerankConfig(models=MODELS, output=str(tmp / "out"), data_dir=str(_lambada_dir(tmp)), train_prompts=12,
                       train_samples=3, eval_prompts=6, samples=4, max_new_tokens=3, max_steps=2, batch_size=4,
                       lr=1e-3, dtype="float32", progress=False, max_length=64)
    store = ResultsStore(tmp / "store")
    seen = []
    doc = run_rerank(cfg, store=store, on_model=lambda m, r, cached: seen.append((m, cached)))
    return cfg, store, doc, seen


def test_sweep_writes_a_valid_document_per_model(tiny_rerank):
    cfg, _, _, seen = tiny_rerank
    assert seen == [("tiny:llama,layers=2@L1", False), ("tiny:llama,layers=2", False)]
    read = read_results(cfg.output + "/results.json", kind="sweep_rerank")
    assert read.payload["task"] == "lambada" and read.payload["ks"] == [1, 2, 4]
    recs = read.payload["models"]
    assert [r["model"] for r in recs] == cfg.model_list()
    assert recs[0]["non_embedding_params"] < recs[1]["non_embedding_params"]
    for r in recs:
        assert r["n_eval_prompts"] == 6 and r["train_groups"] >= 2
        for k in ("1", "2", "4"):
            per = r["acc_at_k"][k]
            assert set(per) == {"pm", "il", "oracle", "average"}
            for e in per.values():
                assert e["n"] == 6 and 0.0 <= e["lo"] <= e["value"] <= e["hi"] <= 1.0
            assert per["pm"]["value"] <= per["oracle"]["value"] + 1e-9
            assert per["il"]["value"] <= per["oracle"]["value"] + 1e-9
        assert r["acc_at_k"]["1"]["pm"]["value"] == pytest.approx(r["acc_at_k"]["1"]["average"]["value"])
        assert set(r["greedy"]) == {"il_greedy", "lm_greedy"} and r["greedy"]["il_greedy"]["n"] == 6
        assert set(r["pair_accuracy"]) == {"imitation", "preference"}
    keys = set(read.estimates)
    assert "lambada/tiny:llama,layers=2/pm@4" in keys and "lambada/tiny:llama,layers=2@L1/il_greedy" in keys
    assert len(keys) == 2 * (3 * 4 + 2)


def test_resume_reruns_nothing(tiny_rerank, monkeypatch):
    cfg, store, doc, _ = tiny_rerank
    from hhhlab.experiments import rerank

    def boom(*a, **k):
        raise AssertionError("a finished model was run again")

    monkeypatch.setattr(rerank, "run_model", boom)
    monkeypatch.setattr("hhhlab.evals.lambada.load_passages", boom)  # nothing to do: not even the data
    seen = []
    again = run_rerank(cfg, store=store, on_model=lambda m, r, cached: seen.append(cached))
    assert seen == [True, True] and again["payload"]["models"] == doc["payload"]["models"]
    [run] = store.runs("sweep_rerank")
    assert run["status"] == "finished" and run["results"].kind == "sweep_rerank"
    # other settings are another run: they never reuse these models' results
    with pytest.raises(AssertionError, match="run again"):
        run_rerank(cfg.model_copy(update={"samples": 8}), store=store)


def test_report_draws_figs_11_and_13_from_the_document(tiny_rerank, tmp_path):
    from hhhlab.report.collect import collect
    from hhhlab.report.html import build_report

    cfg, _, doc, _ = tiny_rerank
    path, results = build_report(collect([cfg.output]), tmp_path / "r.html")
    status = {r.section.id: r.status for r in results}
    assert status["rerank"] == "ok", [r.message for r in results if r.section.id == "rerank"]
    html = path.read_text()
    section = html[html.index('<section id="rerank"'):]
    section = section[: section.index("</section>")]
    assert 'data-paper-fig="11"' in section and 'data-paper-fig="13"' in section
    charts = re.findall(r'data-chart="([^"]+)" data-points="(\d+)"', section)
    assert {c for c, _ in charts} >= {"rerank-vs-k", "rerank-k2", "rerank-k4"}, charts
    assert all(int(n) > 0 for _, n in charts), charts
    # Fig 11: per model a solid PM and a dashed IL line over k = 1, 2, 4
    assert section.count('data-series="PM · tiny:llama,layers=2"') == 1
    assert "IL Sampled at T=0" in section and "Oracle" in section and "Average (No Ranking)" in section
    assert "code correctness" in section.lower()  # says what it does not measure
    top = doc["payload"]["models"][1]["acc_at_k"]["4"]["pm"]
    from hhhlab.report.svg import fmt

    assert f"{fmt(top['value'])} [{fmt(top['lo'])}, {fmt(top['hi'])}]" in section
    cov = html[html.index('data-table="coverage"'):]
    assert re.search(r'<tr data-fig="13">.*?<td>drawn</td>', cov)


def test_cli_flags_come_from_the_config():
    from typer.testing import CliRunner

    from hhhlab.cli import app

    res = CliRunner().invoke(app, ["sweep", "rerank", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for flag in ("--models", "--samples", "--eval-prompts", "--train-prompts", "--data-dir", "--config"):
        assert flag in res.output
    bad = CliRunner().invoke(app, ["sweep", "rerank", "--output", "x", "--samples", "0"])
    assert bad.exit_code != 0 and "samples" in str(bad.output) + str(bad.exception)
