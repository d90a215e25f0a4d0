"""Evaluation metrics: pairwise and group accuracy, calibration, the re-ranking acc@k estimator."""

import itertools
import math

import numpy as np
import pytest

from hhhlab.train.batching import EncodedGroup
from hhhlab.train.evaluate import (
    acc_at_k,
    calibration,
    evaluation_metrics,
    group_accuracy,
    lambada_is_correct,
    pairwise_accuracy,
    rerank_accuracy,
)


def G(scores, group_id=None):
    return EncodedGroup(index=0, context=[1], responses=[[2]] * len(scores), scores=scores,
                        metadata={"group_id": group_id} if group_id else {})


def test_pairwise_accuracy_counts_every_pair_and_half_for_ties():
    groups = [G([1, 0]), G([2, 1, 0]), G([0, 1])]
    scores = [[0.5, 0.1], [3.0, 1.0, 2.0], [1.0, 1.0]]
    # pairs: (0>1) right; (0>1) right, (0>2) right, (1>2) wrong; tie -> 0.5
    est = pairwise_accuracy(groups, scores)
    assert est.n == 5 and est.value == pytest.approx((1 + 1 + 1 + 0 + 0.5) / 5)
    assert est.lo <= est.value <= est.hi


def test_group_accuracy_needs_every_item_right():
    groups = [G([1, 0], "a"), G([1, 0], "a"), G([1, 0], "b"), G([1, 0], "b"), G([1, 0], "c")]
    scores = [[1, 0], [1, 0], [1, 0], [0, 1], [1, 0]]
    est = group_accuracy(groups, scores)
    assert est.n == 3 and est.value == pytest.approx(2 / 3)
    assert group_accuracy([G([1, 0])], [[1, 0]]) is None
    m = evaluation_metrics(groups, scores)
    assert m["accuracy"] == pytest.approx(0.8) and m["group_accuracy"] == pytest.approx(2 / 3)
    assert m["n_eval"] == 5 and len(m["accuracy_ci"]) == 2


def test_calibration_is_zero_for_a_calibrated_model_and_large_for_an_overconfident_one():
    rng = np.random.default_rng(0)
    margins = rng.normal(0, 2, 20000)
    p = 1 / (1 + np.exp(-margins))
    won = rng.random(20000) < p  # the "better" response really wins with probability sigma(margin)
    calibrated = np.where(won, margins, -margins)  # margin as seen from the truly better side
    assert calibration(calibrated)["ece"] < 0.02
    assert calibration(calibrated * 10)["ece"] > 0.1
    bins = calibration(calibrated)["bins"]
    assert sum(b["n"] for b in bins) == 40000


def brute_force_acc_at_k(correct_ranked, k):
    """Mean correctness of the best-ranked sample over all k-subsets."""
    n = len(correct_ranked)
    subsets = list(itertools.combinations(range(n), k))
    return sum(correct_ranked[min(s)] for s in subsets) / len(subsets)


@pytest.mark.parametrize("seed", range(5))
def test_acc_at_k_equals_the_subset_average(seed):
    rng = np.random.default_rng(seed)
    c = [bool(x) for x in rng.random(9) < 0.4]
    for k in range(1, 10):
        assert acc_at_k(c, k) == pytest.approx(brute_force_acc_at_k(c, k))
    assert acc_at_k(c, 1) == pytest.approx(np.mean(c))
    with pytest.raises(ValueError):
        acc_at_k(c, 10)


def test_rerank_accuracy_ranker_between_average_and_oracle():
    rng = np.random.default_rng(0)
    correct = [[bool(x) for x in rng.random(100) < 0.3] for _ in range(20)]
    informative = [[float(c) + rng.normal(0, 0.5) for c in cs] for cs in correct]
    out = rerank_accuracy(informative, correct, ks=(2, 8, 32, 96))
    for k in ("2", "8", "32", "96"):
        r = out[k]
        assert r["average"]["value"] <= r["ranked"]["value"] <= r["oracle"]["value"] + 1e-9
    assert out["96"]["ranked"]["value"] > out["2"]["ranked"]["value"]
    assert out["96"]["oracle"]["value"] == pytest.approx(1.0)
    assert math.isclose(out["2"]["average"]["value"], np.mean(correct), rel_tol=1e-9)


def test_lambada_correctness_is_first_word():
    assert lambada_is_correct(" dog. And then", "dog")
    assert not lambada_is_correct(" dogs", "dog")
    assert not lambada_is_correct("   ", "dog")


def test_sample_and_rerank_runs_the_protocol_end_to_end():
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model
    from hhhlab.train.evaluate import sample_and_rerank
    from hhhlab.train.preference_model import PreferenceModel

    lm = load_model("tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2", dtype="float32")  # not the shared
    scorer = PreferenceModel(lm.model, lm.tokenizer, scoring="mean_logprob")  # fixture: this adds the EOC
    prompts = ["The capital of France is", "Human: Hi\n\nAssistant:", "1 2 3"]
    out = sample_and_rerank(Engine(lm), scorer, prompts, lambda i, c: "a" in c, n_samples=8,
                            ks=(2, 8, 32), max_new_tokens=4, stop=())
    assert out["n_samples"] == 8 and set(out["acc_at_k"]) == {"2", "8"}  # k > N is left out
    for k in ("2", "8"):
        r = out["acc_at_k"][k]
        assert r["ranked"]["n"] == 3 and 0.0 <= r["ranked"]["value"] <= r["oracle"]["value"] + 1e-9
