"""`hhhlab distill` end to end on a tiny model, and its refusals of bad input before any work."""

from __future__ import annotations

import json

import pytest

from hhhlab.distill.cache import CacheMismatchError
from hhhlab.distill.config import DistillConfig
from hhhlab.distill.run import run_distill
from hhhlab.distill.teacher import DistillError
from hhhlab.errors import DataError
from hhhlab.results import read_results

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"
PROMPT = "Human: Hi, who are you?\n\nAssistant: A helpful assistant.\n\n-----\n\nHuman: What is 2+2?\n\nAssistant: 4.\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "p.txt").write_text(PROMPT)
    (tmp_path / "p2.txt").write_text(PROMPT.replace("4.", "Four."))
    with (tmp_path / "c.jsonl").open("w") as f:
        for i in range(300):
            f.write(json.dumps({"text": f"Sample {i}: the quick brown fox jumps over the lazy dog {i % 7} times."}) + "\n")
    return tmp_path


def _cfg(files, **kw):
    base = {"model": TINY, "prompt": str(files / "p.txt"), "corpus": str(files / "c.jsonl"), "tokens": 2048,
                "context_length": 32, "output": str(files / "out"), "top_k": 8, "heldout_tokens": 256, "batch_size": 4,
                "lr": 1e-3, "device": "cpu", "progress": False}
    return DistillConfig(**{**base, **kw})


def test_distill_end_to_end_closes_the_heldout_kl_and_saves_a_plain_checkpoint(files):
    doc = run_distill(_cfg(files))
    res = read_results(files / "out" / "results.json", kind="distill")
    est = res.estimates
    assert est["heldout_kl_student"].value < est["heldout_kl_plain"].value
    assert est["heldout_kl_reduction"].lo > 0  # paired CI over held-out windows excludes 0
    tc = doc["payload"]["teacher_cache"]
    assert tc["bytes_per_token"] == 8 * 8 + 4 and tc["windows"] == 64 and tc["prefix_tokens"] > 10
    from hhhlab.models.load import load_model

    lm = load_model(str(files / "out"), dtype="float32")  # what `eval --condition distilled:OUT` loads
    assert lm.model.config.num_hidden_layers == 2
    # a finished run returns its results without loading anything
    assert run_distill(_cfg(files)) == doc


def test_prompt_finetune_baseline_runs_on_the_prompt_text(files):
    doc = run_distill(_cfg(files, objective="prompt-finetune", heldout_tokens=0, output=str(files / "ft")))
    assert doc["payload"]["training"]["step"] == 16  # as many steps as distillation on --tokens
    assert "teacher_cache" not in doc["payload"]


def test_bad_input_fails_before_any_work(files):
    with pytest.raises(DistillError, match="window of 1024"):
        run_distill(_cfg(files, context_length=1000))
    with pytest.raises(DataError, match="fewer than"):
        run_distill(_cfg(files, tokens=10**6))
    with pytest.raises(DistillError, match="different tokenizers"):
        run_distill(_cfg(files, teacher=TINY + ",vocab=300"))
    with pytest.raises(DataError, match="not found"):
        run_distill(_cfg(files, prompt=str(files / "none.txt")))
    assert not (files / "out" / "checkpoints").exists()


def test_a_cache_from_another_prompt_or_corpus_is_never_reused(files):
    cache = str(files / "shared-cache")
    run_distill(_cfg(files, cache=cache, heldout_tokens=0, tokens=256))
    with pytest.raises(CacheMismatchError, match="prompt"):
        run_distill(_cfg(files, cache=cache, heldout_tokens=0, tokens=256, prompt=str(files / "p2.txt"),
                         output=str(files / "out2")))
    with pytest.raises(CacheMismatchError, match="corpus"):
        run_distill(_cfg(files, cache=cache, heldout_tokens=0, tokens=256, seed=1, output=str(files / "out3")))
    assert not (files / "out2").exists() and not (files / "out3").exists()
    # another student with the same tokenizer reuses it (no teacher pass: 0 shards computed)
    doc = run_distill(_cfg(files, cache=cache, heldout_tokens=0, tokens=256, output=str(files / "out4"),
                           model=TINY.replace("layers=2", "layers=1"), teacher=TINY))
    assert doc["payload"]["teacher_cache"]["shards_computed"] == 0


class _Killed(Exception):
    pass


def test_lora_distillation_trains_only_adapters_saves_a_merged_checkpoint_and_resumes(files, monkeypatch):
    """LoRA: the optimizer sees adapter weights only, so the merged result differs from the start
    in the adapted linear layers alone; OUTPUT is an ordinary checkpoint; a run killed after a
    checkpoint resumes to the same weights as one that was not."""
    import torch

    from hhhlab.models.load import load_model
    from hhhlab.train import trainer

    cfg = {"lora": True, "lora_r": 4, "lr": 1e-3, "heldout_tokens": 256, "checkpoint_every": 4, "tokens": 1024,
           "cache": str(files / "cache")}
    trained: list[dict[str, tuple]] = []
    real_optimizer = trainer.make_optimizer

    def spy(tcfg, pm):
        trained.append({n: tuple(p.shape) for n, p in pm.named_parameters() if p.requires_grad})
        return real_optimizer(tcfg, pm)

    monkeypatch.setattr(trainer, "make_optimizer", spy)
    doc = run_distill(_cfg(files, **cfg, output=str(files / "lora")))
    assert trained and trained[0] and all("lora_" in n for n in trained[0])
    assert {shape[0] for n, shape in trained[0].items() if "lora_A" in n} == {4}  # --lora-r reaches peft
    assert doc["payload"]["training"]["step"] == 8
    est = read_results(files / "lora" / "results.json", kind="distill").estimates
    assert est["heldout_kl_student"].value < est["heldout_kl_plain"].value  # the adapters learnt something

    start = load_model(TINY, dtype="float32", device="cpu").model.state_dict()
    got = load_model(str(files / "lora"), dtype="float32", device="cpu").model.state_dict()
    assert set(got) == set(start)  # plain weights: no lora_ or base_layer keys left
    changed = {k for k in start if not torch.equal(start[k], got[k])}
    assert changed and all(k.endswith("proj.weight") for k in changed)  # linear layers only
    assert not any("embed" in k or "norm" in k for k in changed)

    # killed after the step-4 checkpoint, then resumed: the same merged weights
    real_train = trainer.train

    def killed(*a, **kw):
        real_train(*a, **kw, stop_after=5)
        raise _Killed

    monkeypatch.setattr(trainer, "train", killed)
    with pytest.raises(_Killed):
        run_distill(_cfg(files, **cfg, output=str(files / "lora2")))
    assert (files / "lora2" / "checkpoints" / "ckpt-00000004").exists()
    assert not (files / "lora2" / "results.json").exists()
    monkeypatch.setattr(trainer, "train", real_train)
    restored: list[str] = []
    real_load = trainer.load_checkpoint
    monkeypatch.setattr(trainer, "load_checkpoint", lambda path, *a: restored.append(path.name) or real_load(path, *a))
    again = run_distill(_cfg(files, **cfg, output=str(files / "lora2")))
    assert restored == ["ckpt-00000004"]  # resumed from the checkpoint, not from the start
    assert again["payload"]["training"]["step"] == 8
    resumed = load_model(str(files / "lora2"), dtype="float32", device="cpu").model.state_dict()
    for k in got:
        torch.testing.assert_close(resumed[k], got[k], rtol=0, atol=1e-6, msg=k)


def test_pm_train_knows_the_distillation_objectives_and_names_hhhlab_distill_for_the_cache(files, monkeypatch):
    """Both objectives are registered (`PLUGIN_MODULES`), under `hhhlab distill`'s names too;
    ``distillation`` needs a teacher cache, which only `hhhlab distill` builds, so `pm train`
    refuses it before loading a model and says what to run; ``prompt_finetune`` (LM on text) runs."""
    from typer.testing import CliRunner

    from hhhlab.cli import app
    from hhhlab.train import trainer
    from hhhlab.train.objectives import get_objective, objective_names
    from hhhlab.train.objectives.distill import Distillation, PromptFinetune

    assert {"distillation", "prompt_finetune"} <= set(objective_names())
    assert get_objective("distill") is Distillation and get_objective("prompt-finetune") is PromptFinetune
    args = ["pm", "train", "--model", TINY, "--train", str(files / "c.jsonl"), "--max-steps", "2",
            "--batch-size", "4", "--device", "cpu", "--no-progress"]
    real_build = trainer.build_model
    monkeypatch.setattr(trainer, "build_model", lambda *a, **k: pytest.fail("a model was loaded"))
    for name in ("distillation", "distill"):
        res = CliRunner().invoke(app, [*args, "--objective", name, "--output", str(files / "pm-distill")])
        assert res.exit_code != 0 and "hhhlab distill --model" in str(res.exception), res.output
    monkeypatch.setattr(trainer, "build_model", real_build)
    res = CliRunner().invoke(app, [*args, "--objective", "prompt-finetune", "--output", str(files / "pm-ft")])
    assert res.exit_code == 0, res.output
    from hhhlab.store import read_json

    assert read_json(files / "pm-ft" / "metrics.json")["payload"]["objective"] == "prompt_finetune"
