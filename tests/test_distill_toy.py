"""The counting toy (Fig 26) on a tiny model: both arms train, the distilled arm closes its KL."""

from __future__ import annotations

import pytest

from hhhlab.distill.toy import counting, counting_toy, plot_toy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_counting_text():
    assert counting(1, 3) == "1, 2, 3"


def test_toy_curves_and_figure(tmp_path):
    res = counting_toy("tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2", steps=8, lr=3e-3)
    for arm in ("finetune", "distill"):
        assert len(res[arm]["probe_loss"]) == len(res[arm]["probe_kl"]) == 9
    d = res["distill"]["probe_kl"]
    # a random tiny model barely uses its context (KL ~1e-3), but the distilled student still
    # moves towards the prompted teacher, while fine-tuning on the context moves away from it
    assert d[-1] < d[0]
    assert res["finetune"]["probe_kl"][-1] > 10 * d[-1]
    assert len(res["per_number_loss"]) == 80 and all(v > 0 for v in res["per_number_loss"])
    assert plot_toy(res, tmp_path / "toy.png").stat().st_size > 10_000
