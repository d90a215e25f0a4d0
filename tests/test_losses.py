"""The objectives as formulas: each checked against a hand computation."""

import math

import pytest
import torch

from hhhlab.train.losses import (
    classifier_loss,
    imitation_loss,
    mean_logprob_scores,
    preference_lm_loss,
    preference_loss,
)


def test_preference_loss_is_log1p_exp_of_the_margin():
    scores = torch.tensor([2.0, -1.0, 0.5, 0.5])
    good, bad = torch.tensor([0, 2]), torch.tensor([1, 3])
    expected = (math.log1p(math.exp(-1.0 - 2.0)) + math.log1p(math.exp(0.0))) / 2
    assert preference_loss(scores, good, bad).item() == pytest.approx(expected, rel=1e-6)


def test_preference_loss_is_stable_for_huge_margins():
    scores = torch.tensor([-1000.0, 1000.0], requires_grad=True)
    loss = preference_loss(scores, torch.tensor([0]), torch.tensor([1]))
    assert loss.item() == pytest.approx(2000.0)  # naive log(1 + exp(2000)) overflows to inf
    loss.backward()
    assert torch.isfinite(scores.grad).all() and scores.grad[0].item() == pytest.approx(-1.0)


def test_preference_loss_gradient_pushes_good_up():
    scores = torch.tensor([0.0, 0.0], requires_grad=True)
    preference_loss(scores, torch.tensor([0]), torch.tensor([1])).backward()
    assert scores.grad[0] < 0 < scores.grad[1]  # descent raises r_good, lowers r_bad


def test_imitation_loss_is_mean_token_nll():
    lp = torch.log(torch.tensor([0.5, 0.25, 1.0]))
    assert imitation_loss(lp).item() == pytest.approx(-(math.log(0.5) + math.log(0.25) + 0.0) / 3)
    with pytest.raises(ValueError):
        imitation_loss(torch.tensor([]))


def test_pm_plus_lm_weights_both_terms():
    scores = torch.tensor([1.0, 0.0])
    good, bad = torch.tensor([0]), torch.tensor([1])
    lp = torch.log(torch.tensor([0.5]))
    pm = math.log1p(math.exp(-1.0))
    assert preference_lm_loss(scores, good, bad, None).item() == pytest.approx(pm)
    assert preference_lm_loss(scores, good, bad, lp, lm_weight=1.0).item() == pytest.approx(pm + math.log(2))
    assert preference_lm_loss(scores, good, bad, lp, pm_weight=0.0, lm_weight=2.0).item() == pytest.approx(
        2 * math.log(2))
    with pytest.raises(ValueError):
        preference_lm_loss(scores, good, bad, None, lm_weight=1.0)


def test_classifier_loss_is_bce_on_good_and_bad():
    scores = torch.tensor([2.0, -1.0])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = (-math.log(sig(2.0)) - math.log(1 - sig(-1.0))) / 2
    assert classifier_loss(scores, torch.tensor([0]), torch.tensor([1])).item() == pytest.approx(expected, rel=1e-6)


def test_mean_logprob_scores_average_per_response():
    lp = torch.tensor([-1.0, -3.0, -2.0])
    owner = torch.tensor([0, 0, 1])
    assert mean_logprob_scores(lp, owner, 2).tolist() == [-2.0, -2.0]


@pytest.mark.parametrize("pm_weight,lm_weight", [(1.0, 0.0), (1.0, 1.0), (0.5, 2.0)])
def test_preference_objective_with_the_loop_normalisation_is_eq_c1(pm_weight, lm_weight):
    """On one micro-batch holding the whole global batch, the preference objective's loss terms
    as the loop weights them (`trainer.weighted_loss`) are ``preference_lm_loss`` (eq. C.1)."""
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.objectives import get_objective
    from hhhlab.train.preference_model import PreferenceModel
    from hhhlab.train.toy import toy_groups
    from hhhlab.train.trainer import weighted_loss

    torch.manual_seed(0)
    pm = PreferenceModel.from_lm("tiny:llama,layers=1,hidden=32,heads=2", device="cpu")
    cfg = TrainConfig(train="x.jsonl", output="o", pm_weight=pm_weight, lm_weight=lm_weight)
    objective = get_objective("preference")(cfg)
    items = [pm.encode(g.context, g.responses, g.scores, index=i) for i, g in enumerate(toy_groups(4, ranked=True))]
    batch = objective.collate(items, pm)
    totals = {"pairs": sum(len(g.pairs()) for g in items), "tokens": sum(len(g.responses[i]) for g in items
                                                                          for i in g.best())}
    with torch.no_grad():
        loss, _ = weighted_loss(objective.loss_terms(pm, batch), totals, world=1)
        scores, token_lp = pm(batch, head=True, lm=True)
        ref = preference_lm_loss(scores, batch.pair_good, batch.pair_bad, token_lp, pm_weight=pm_weight,
                                 lm_weight=lm_weight)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
