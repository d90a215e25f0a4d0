"""Warm starts: ``init`` continues a saved model (its head and EOC token for head objectives),
saved models of every objective load as ordinary causal LMs, and a wrong init is named."""

import pytest
import torch

from hhhlab.errors import ModelLoadError
from hhhlab.train.config import TrainConfig
from hhhlab.train.objectives import get_objective
from hhhlab.train.preference_model import PreferenceModel
from hhhlab.train.toy import write_toy
from hhhlab.train.trainer import build_model, train, train_and_evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

LLAMA = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A trained PM and a trained IL model (3 steps each) and their data."""
    d = tmp_path_factory.mktemp("init")
    data = str(write_toy(d / "train.jsonl", 48, seed=0))
    out = {"data": data, "dir": d}
    for objective in ("preference", "imitation"):
        cfg = TrainConfig(model=LLAMA, objective=objective, train=data, output=str(d / objective), max_steps=3,
                          lr=3e-3, device="cpu", progress=False, record_run=False)
        train_and_evaluate(cfg)
        out[objective] = d / objective
    return out


def cfg(runs, tmp_path, **kw):
    return TrainConfig(**{"model": LLAMA, "train": runs["data"], "output": str(tmp_path / "run"), "max_steps": 2,
                          "lr": 3e-3, "device": "cpu", "progress": False, "record_run": False, **kw})


def test_fine_tuning_a_pm_continues_its_head_and_eoc_token(runs, tmp_path):
    saved = PreferenceModel.from_pretrained(runs["preference"] / "model", device="cpu")
    c = cfg(runs, tmp_path, init=str(runs["preference"]))  # a run's OUTPUT or OUTPUT/model
    pm = build_model(c, get_objective("preference")(c), torch.device("cpu"))
    assert torch.equal(pm.head.weight, saved.head.weight) and torch.equal(pm.head.bias, saved.head.bias)
    assert pm.eoc_id == saved.eoc_id and len(pm.tokenizer) == len(saved.tokenizer)  # no second EOC token
    emb = pm.lm.get_input_embeddings().weight
    assert torch.equal(emb, saved.lm.get_input_embeddings().weight)
    # ... and then trains from there: the first loss is the saved model's, not a fresh head's
    _, warm = train(c.model_copy(update={"log_every": 1}))
    _, cold = train(cfg(runs, tmp_path / "cold", log_every=1))
    assert warm["history"][0][0] == cold["history"][0][0] == 1
    assert warm["history"][0][1] < cold["history"][0][1]


def test_head_objective_from_a_headless_model_gets_a_fresh_head(runs, tmp_path):
    c = cfg(runs, tmp_path, init=str(runs["imitation"] / "model"))
    pm = build_model(c, get_objective("preference")(c), torch.device("cpu"))
    assert pm.head is not None and pm.eoc_id is not None
    c = cfg(runs, tmp_path, objective="imitation", init=str(runs["preference"]))
    il = build_model(c, get_objective("imitation")(c), torch.device("cpu"))
    assert il.head is None and il.eoc_id is None


@pytest.mark.parametrize("objective", ["preference", "imitation"])
def test_saved_models_of_every_objective_load_as_causal_lms(runs, objective):
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model

    lm = load_model(str(runs[objective] / "model"), device="cpu", dtype="float32")
    (r,) = Engine(lm).score([("Human: apple river?\n\nAssistant:", " stone good")])
    assert r.n_tokens > 0 and r.logprob < 0


def test_bad_inits_are_named_before_training(runs, tmp_path, monkeypatch):
    from hhhlab.train import trainer

    monkeypatch.setattr(trainer, "make_optimizer", lambda *a: pytest.fail("training started"))
    with pytest.raises(ModelLoadError, match="nowhere: no such directory"):
        train(cfg(runs, tmp_path, init=str(tmp_path / "nowhere")))
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "x.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="notamodel: not a saved model"):
        train(cfg(runs, tmp_path, init=str(tmp_path / "notamodel")))
    with pytest.raises(ModelLoadError, match="another architecture.*hidden_size 64 vs 32"):
        train(cfg(runs, tmp_path, model="tiny:llama,layers=2,hidden=32,heads=4,kv_heads=2",
                  init=str(runs["preference"])))
    with pytest.raises(ModelLoadError, match="another architecture.*model_type llama vs gpt2"):
        train(cfg(runs, tmp_path, model="tiny:gpt2,layers=2,hidden=64,heads=4", init=str(runs["preference"])))
    import shutil

    from hhhlab.models.tiny import tiny_tokenizer

    other = tmp_path / "other_tokenizer"  # the same weights with another (smaller) BPE vocabulary
    shutil.copytree(runs["preference"] / "model", other)
    for f in other.glob("tokenizer*"):
        f.unlink()
    tiny_tokenizer(300).save_pretrained(other)
    with pytest.raises(ModelLoadError, match="other_tokenizer has another tokenizer.*tokens differ"):
        train(cfg(runs, tmp_path, init=str(other)))
