"""Engine.topk_logprobs (the distillation teacher) against a naive full forward per sequence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hhhlab.errors import RequestError
from hhhlab.models.engine import Engine

pytestmark = pytest.mark.usefixtures("one_thread")


def _naive(lm, prefix, seq, k):
    ids = torch.tensor([prefix + seq])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0, len(prefix) - 1 : len(prefix) - 1 + len(seq)]
    return F.log_softmax(logits.float(), -1).topk(k, -1)


def _data(vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    prefix = torch.randint(3, vocab, (40,), generator=g).tolist()
    seqs = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (9, 1, 17, 5, 12)]
    return prefix, seqs


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("prefix_reuse,fast_path", [(True, True), (False, True), (True, False)])
def test_topk_matches_naive_forward(request, fixture, batch_size, prefix_reuse, fast_path):
    lm = request.getfixturevalue(fixture)
    engine = Engine(lm, batch_size=batch_size, prefix_reuse=prefix_reuse, fast_path=fast_path)
    prefix, seqs = _data(lm.model.config.vocab_size)
    got = engine.topk_logprobs(prefix, seqs, k=7)
    for seq, (lp, ids) in zip(seqs, got):
        ref_lp, ref_ids = _naive(lm, prefix, seq, 7)
        assert lp.shape == ids.shape == (len(seq), 7)
        assert torch.allclose(lp, ref_lp, atol=1e-4)
        assert torch.equal(ids, ref_ids) or torch.allclose(lp.gather(-1, torch.argsort(ids)), ref_lp.gather(-1, torch.argsort(ref_ids)), atol=1e-4)


def test_prefix_is_encoded_once_across_calls(tiny_llama):
    engine = Engine(tiny_llama, batch_size=2)
    prefix, seqs = _data(tiny_llama.model.config.vocab_size, seed=1)
    a = engine.topk_logprobs(prefix, seqs, k=4)
    b = engine.topk_logprobs(prefix, seqs[::-1], k=4)
    assert engine.prefix_encodings == 1
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b[::-1]))
    engine.topk_logprobs(prefix[:-3], seqs[:1], k=4)
    assert engine.prefix_encodings == 2


def test_full_vocabulary_and_one_token_prefix(tiny_gpt2):
    v = tiny_gpt2.model.config.vocab_size
    engine = Engine(tiny_gpt2, batch_size=4)
    prefix, seqs = [5], [[7, 8, 9]]
    ((lp, _ids),) = engine.topk_logprobs(prefix, seqs, k=v)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(3), atol=1e-5)
    ref, _ = _naive(tiny_gpt2, prefix, seqs[0], v)
    assert torch.allclose(lp, ref, atol=1e-4)


def test_bad_requests_fail_before_compute(tiny_llama):
    engine = Engine(tiny_llama, max_length=32)
    with pytest.raises(RequestError, match="sequence 1: 31 prefix"):
        engine.topk_logprobs(list(range(3, 34)), [[5], [6, 7]], k=3)
    with pytest.raises(RequestError, match="k = 0"):
        engine.topk_logprobs([5], [[6]], k=0)
    with pytest.raises(RequestError, match="sequence 0: no tokens"):
        engine.topk_logprobs([5], [[]], k=2)
