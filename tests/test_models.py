import pytest
import torch

from hhhlab.errors import ModelLoadError
from hhhlab.models.device import resolve_dtype
from hhhlab.models.load import expand_model_list, load_model, non_embedding_params


def test_tiny_models_are_deterministic_and_count_params(tiny_llama):
    again = load_model("tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2", dtype="float32")
    for (k, a), (_, b) in zip(tiny_llama.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k
    d = tiny_llama.describe()
    assert d["layers"] == 2
    emb = tiny_llama.model.get_input_embeddings().weight.numel()
    assert d["non_embedding_params"] == d["params"] - emb  # tied head counted once, as embedding


def test_gpt2_non_embedding_excludes_positions(tiny_gpt2):
    m = tiny_gpt2.model
    expected = sum(p.numel() for p in m.parameters()) - m.transformer.wte.weight.numel() - m.transformer.wpe.weight.numel()
    assert non_embedding_params(m) == expected


def test_ladder_keeps_first_blocks_and_head():
    full = load_model("tiny:llama,layers=4", dtype="float32")
    cut = load_model("tiny:llama,layers=4@L2", dtype="float32")
    assert cut.describe()["layers"] == 2 and cut.model.config.num_hidden_layers == 2
    assert torch.equal(cut.model.model.layers[1].mlp.up_proj.weight, full.model.model.layers[1].mlp.up_proj.weight)
    assert torch.equal(cut.model.lm_head.weight, full.model.lm_head.weight)
    assert cut.non_embedding_params < full.non_embedding_params
    with pytest.raises(ModelLoadError, match="has 4 blocks"):
        load_model("tiny:llama,layers=4@L9")


def test_expand_model_list():
    assert expand_model_list("m@L2,@L4,m") == ["m@L2", "m@L4", "m"]
    # options of tiny specs contain commas too
    assert expand_model_list("tiny:llama,layers=4@L1,@L2,tiny:gpt2") == [
        "tiny:llama,layers=4@L1", "tiny:llama,layers=4@L2", "tiny:gpt2"]
    with pytest.raises(ModelLoadError):
        expand_model_list("@L2")


def test_unknown_model_names_local_alternatives(tmp_path):
    with pytest.raises(ModelLoadError, match="smollm2-135m"):
        load_model("no-such-org/no-such-model-xyz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path / "empty"))


def test_dtype_resolution():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu")) in (torch.float32, torch.bfloat16)
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        resolve_dtype("int3")


@pytest.mark.slow
def test_default_model_answers_paris():
    from hhhlab.models.engine import Engine

    lm = load_model("smollm2-135m", dtype="float32")
    assert 134_000_000 < lm.describe()["params"] < 135_000_000
    paris, berlin = Engine(lm).score([("The capital of France is", " Paris"), ("The capital of France is", " Berlin")])
    assert paris.logprob > berlin.logprob + 3


@pytest.mark.parametrize(("env", "expected"), [("0", "float32"), ("1", "bfloat16"), ("no", "float32")])
def test_native_bf16_override_decides_what_auto_means_on_cpu(monkeypatch, env, expected):
    import torch

    from hhhlab.models import device

    monkeypatch.setenv("HHHLAB_NATIVE_BF16", env)
    device.cpu_has_native_bf16.cache_clear()
    try:
        assert device.resolve_dtype("auto", torch.device("cpu")) == getattr(torch, expected)
    finally:
        monkeypatch.undo()
        device.cpu_has_native_bf16.cache_clear()
