"""PreferenceModel: scores read at each sequence's EOC token, invariant to batching and padding."""

import pytest
import torch

import hhhlab
from hhhlab.errors import StoreError
from hhhlab.train.batching import EOC_TOKEN, ResponseTooLong, encode_group
from hhhlab.train.preference_model import PreferenceModel

LLAMA = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"
GPT2 = "tiny:gpt2,layers=2,hidden=64,heads=4"

GROUPS = [
    ("Human: What is the capital of France?\n\nAssistant:", [" Paris.", " It is Berlin, I think.", " Madrid"]),
    ("Hi", [" there", " you", " a much longer answer that goes on and on about nothing at all", " x"]),
    ("Question: Why is the sky blue?\nAnswer:", [" Rayleigh scattering.", " Because it is."]),
    ("", [" an empty context", " still works"]),
    ("The quick brown fox jumps over the lazy dog. " * 5, [" yes", " no", " maybe", " later", " never"]),
] * 2  # 10 groups, 32 responses: batch sizes 1, 7 and 32 all split groups differently


@pytest.fixture(scope="module", params=[LLAMA, GPT2], ids=["llama", "gpt2"])
def pm(request):
    torch.manual_seed(0)
    return PreferenceModel.from_lm(request.param, device="cpu")


def plain_scores(pm, context, responses):
    """Reference: each ``context + response + EOC`` through the trunk alone, score at the last token."""
    out = []
    for r in responses:
        g = pm.encode(context, [r])
        ids = torch.tensor([g.context + g.responses[0] + [pm.eoc_id]])
        with torch.no_grad():
            h = pm.trunk(input_ids=ids).last_hidden_state
            out.append(float(pm.head(h[0, -1])))
    return out


def test_eoc_is_a_dedicated_special_token(pm):
    tok = pm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # like SmolLM2 and Llama: the case that breaks others
    assert pm.eoc_id == tok.convert_tokens_to_ids(EOC_TOKEN)
    assert pm.eoc_id not in (tok.pad_token_id, tok.eos_token_id, tok.bos_token_id)
    assert pm.lm.get_input_embeddings().weight.shape[0] > pm.eoc_id


def test_tree_rows_match_separate_sequences(pm):
    for context, responses in GROUPS[:5]:
        got = pm.score(context, responses, batch_size=32)
        assert got == pytest.approx(plain_scores(pm, context, responses), abs=1e-5)


SHARED_START = ("Q: What is the capital of Kenya?\nA:", [" The capital of Kenya is Nairobi.", " The capital of Kenya is Kyiv.",
                                                       " The capital", " The capital of Kenya is Nairobi."])


def test_responses_sharing_their_first_tokens_share_them_exactly(pm):
    from hhhlab.train.batching import build_batch

    context, responses = SHARED_START
    g = pm.encode(context, responses)
    batch = build_batch([g], eoc_id=pm.eoc_id, pad_id=0, lm="all")
    separate = len(g.context) + sum(len(r) + 1 for r in g.responses)
    assert batch.n_real_tokens < separate  # the common " The capital" ran once
    assert batch.lm_target.tolist() == sum(g.responses, [])  # every token of every response is still a target
    assert pm.score(context, responses, batch_size=32) == pytest.approx(plain_scores(pm, context, responses), abs=1e-5)
    pm.scoring = "mean_logprob"
    try:
        ref = pm.score(context, responses, batch_size=1)  # one response per row: nothing shared
        assert pm.score(context, responses, batch_size=32) == pytest.approx(ref, abs=1e-5)
    finally:
        pm.scoring = "head"


def test_pack_rows_first_fit_decreasing():
    from hhhlab.train.batching import pack_rows

    # longest first: the two 9s fill rows 0 and 1; 5 opens row 2, 4 fills it up, 3 opens row 3
    assert pack_rows([5, 9, 3, 4, 9], 9) == [(2, 0), (0, 0), (3, 0), (2, 5), (1, 0)]
    assert pack_rows([4, 4, 4], 12) == [(0, 0), (0, 4), (0, 8)]
    assert pack_rows([20, 3], 10) == [(0, 0), (1, 0)]  # too long for the capacity: a row of its own


@pytest.mark.parametrize("side", ["right", "left"])
def test_packed_rows_compute_each_tree_as_if_alone(pm, side):
    """Training packs short tree rows into shared rows: fewer, fuller rows, identical results."""
    from hhhlab.train.batching import build_batch

    groups = []
    for i, (c, r) in enumerate(GROUPS[:5]):
        g = pm.encode(c, r, index=i)
        g.scores = [float(-k) for k in range(len(g.responses))]
        groups.append(g)
    plain = build_batch(groups, eoc_id=pm.eoc_id, pad_id=0, lm="all", padding_side=side)
    packed = build_batch(groups, eoc_id=pm.eoc_id, pad_id=0, lm="all", padding_side=side, pack=True)
    assert packed.input_ids.shape[0] < plain.input_ids.shape[0]
    assert packed.input_ids.shape[1] == plain.input_ids.shape[1]
    assert packed.n_real_tokens == plain.n_real_tokens
    assert packed.lm_target.tolist() == plain.lm_target.tolist() and packed.response_keys == plain.response_keys
    assert packed.pair_good.tolist() == plain.pair_good.tolist()
    with torch.no_grad():
        sa, la = pm(plain, head=True, lm=True)
        sb, lb = pm(packed, head=True, lm=True)
    assert sb.tolist() == pytest.approx(sa.tolist(), abs=1e-5)
    assert lb.tolist() == pytest.approx(la.tolist(), abs=1e-5)


@pytest.mark.parametrize("scoring", ["head", "mean_logprob"])
def test_scores_do_not_depend_on_batch_size_or_padding_side(pm, scoring):
    pm.scoring = scoring
    try:
        pm.tokenizer.padding_side = "right"
        ref = pm.score_groups(GROUPS, batch_size=1)
        for side in ("right", "left"):
            pm.tokenizer.padding_side = side
            for bs in (7, 32):
                got = pm.score_groups(GROUPS, batch_size=bs)
                diff = max(abs(a - b) for ga, gb in zip(got, ref) for a, b in zip(ga, gb))
                assert diff < 1e-4, (side, bs, diff)
    finally:
        pm.scoring = "head"
        pm.tokenizer.padding_side = "right"


def test_pad_token_choice_does_not_change_scores(pm):
    ref = pm.score_groups(GROUPS[:5], batch_size=32)
    old = pm.tokenizer.pad_token
    try:
        pm.tokenizer.pad_token = pm.tokenizer.unk_token  # pad != eos now
        assert sum(pm.score_groups(GROUPS[:5], batch_size=32), []) == pytest.approx(sum(ref, []), abs=1e-5)
    finally:
        pm.tokenizer.pad_token = old


def test_eos_text_inside_a_response_is_not_mistaken_for_the_score_position(pm):
    eos = pm.tokenizer.eos_token
    context, responses = "Hello", [f" one{eos} two", f" three{eos}"]
    assert pm.score(context, responses, batch_size=2) == pytest.approx(plain_scores(pm, context, responses), abs=1e-5)


def fresh_llama():
    """Not the shared ``tiny_llama`` fixture: a PreferenceModel adds the EOC token to its model."""
    from hhhlab.models.load import load_model

    return load_model(LLAMA, dtype="float32")


def test_mean_logprob_scoring_matches_the_engine():
    from hhhlab.models.engine import Engine

    lm = fresh_llama()
    pm = PreferenceModel(lm.model, lm.tokenizer, scoring="mean_logprob")
    context, responses = GROUPS[0]
    engine = Engine(lm)
    ref = [r.logprob / r.n_tokens for r in engine.score([(context, r) for r in responses])]
    assert pm.score(context, responses) == pytest.approx(ref, abs=1e-4)


def test_bfloat16_scores_within_stated_bound():
    torch.manual_seed(0)
    pm = PreferenceModel.from_lm(LLAMA, device="cpu")
    ref = pm.score_groups(GROUPS[:5], batch_size=32)
    pm.lm.to(torch.bfloat16)
    got = pm.score_groups(GROUPS[:5], batch_size=32)
    got1 = pm.score_groups(GROUPS[:5], batch_size=1)
    # bf16 keeps 8 mantissa bits: documented bound 0.05 absolute for these O(1) scores
    for a, b, c in zip(sum(ref, []), sum(got, []), sum(got1, [])):
        assert abs(a - b) < 0.05 and abs(b - c) < 0.05


def test_save_and_load_round_trip(pm, tmp_path):
    path = pm.save_pretrained(tmp_path / "pm")
    for f in ("config.json", "model.safetensors", "head.safetensors", "pm_config.json", "tokenizer.json"):
        assert (path / f).exists(), f
    loaded = hhhlab.PreferenceModel.from_pretrained(path, device="cpu")
    assert loaded.eoc_id == pm.eoc_id
    assert sum(loaded.score_groups(GROUPS[:5]), []) == pytest.approx(sum(pm.score_groups(GROUPS[:5]), []), abs=1e-6)


def test_corrupt_or_truncated_files_name_the_file(tmp_path):
    pm = PreferenceModel.from_lm(LLAMA, device="cpu")
    path = pm.save_pretrained(tmp_path / "pm")
    (path / "head.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(StoreError, match="head.safetensors"):
        PreferenceModel.from_pretrained(path, device="cpu")
    path = pm.save_pretrained(tmp_path / "pm2")
    (path / "pm_config.json").write_text('{"format_version": 1, "scor')
    with pytest.raises(StoreError, match="pm_config.json"):
        PreferenceModel.from_pretrained(path, device="cpu")
    path = pm.save_pretrained(tmp_path / "pm3")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="model"):
        PreferenceModel.from_pretrained(path, device="cpu")


def test_long_context_is_cut_from_the_left_never_the_response():
    tok = fresh_llama().tokenizer
    tok.add_special_tokens({"additional_special_tokens": [EOC_TOKEN]})
    context = "start " + "apple river stone " * 40 + "end"
    g = encode_group(tok, context, [" good answer", " bad"], [1, 0], max_length=32)
    full = tok(context, add_special_tokens=False)["input_ids"]
    assert g.truncated > 0 and g.context == full[g.truncated:]
    assert len(g.context) + len(g.responses[0]) + 1 == 32  # the longest response fills the window exactly
    assert tok.decode(g.responses[0]) == " good answer"
    with pytest.raises(ResponseTooLong, match="group 7"):
        encode_group(tok, "hi", [" apple" * 40, " no"], [1, 0], max_length=16, index=7)
    with pytest.raises(ValueError, match="response 1 of group g"):
        encode_group(tok, "hi", [" ok", "  "], [1, 0], max_length=16, group_id="g")
