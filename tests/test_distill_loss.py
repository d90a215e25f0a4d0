"""The (k+1)-way distillation KL (train/losses.py): buckets, the k = V limit, a zero tail, gradients."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hhhlab.train.losses import (
    distillation_loss,
    student_bucket_logprobs,
    teacher_bucket_logprobs,
    topk_kl,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _teacher(n: int, v: int, k: int, seed: int = 0, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    logp = F.log_softmax(logits, -1)
    top, ids = logp.topk(k, dim=-1)
    return logp, top, ids


@pytest.mark.parametrize("k", [1, 5, 50])
def test_teacher_buckets_sum_to_one(k):
    _, top, _ = _teacher(64, 300, k)
    buckets = teacher_bucket_logprobs(top, 300)  # [n, k+1]
    assert buckets.shape == (64, k + 1)
    assert torch.allclose(buckets.double().exp().sum(-1), torch.ones(64, dtype=torch.float64), atol=1e-6)


def test_teacher_buckets_from_float16_storage_sum_to_one():
    _, top, _ = _teacher(64, 300, 50, scale=8.0)  # peaked: the top-50 hold almost all the mass
    buckets = teacher_bucket_logprobs(top.half(), 300)
    assert not torch.isnan(buckets).any()
    assert torch.allclose(buckets.double().exp().sum(-1), torch.ones(64, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("v", [7, 64])
def test_k_equal_to_vocab_is_full_kl(v):
    logp_t, top, ids = _teacher(32, v, v, seed=1)
    student = torch.randn(32, v, generator=torch.Generator().manual_seed(2)) * 2
    full = (logp_t.exp() * (logp_t - F.log_softmax(student.double(), -1))).sum(-1)
    ours = topk_kl(student, top.float(), ids)
    assert torch.allclose(ours.double(), full, atol=1e-5)


def test_kl_equals_bucketed_kl_computed_by_hand():
    """k < V: the same number as collapsing both full distributions onto the k+1 buckets."""
    logp_t, top, ids = _teacher(16, 40, 5, seed=3)
    student = torch.randn(16, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    logp_s = F.log_softmax(student, -1)
    in_top = torch.zeros_like(logp_t, dtype=torch.bool).scatter(-1, ids, True)
    def collapse(lp):
        return torch.cat([lp.gather(-1, ids), torch.logsumexp(lp.masked_fill(in_top, -torch.inf), -1, keepdim=True)], -1)
    pt, ps = collapse(logp_t), collapse(logp_s)
    expected = (pt.exp() * (pt - ps)).sum(-1)
    assert torch.allclose(topk_kl(student, top, ids).double(), expected, atol=1e-10)
    assert torch.allclose(student_bucket_logprobs(student, ids), ps, atol=1e-12)


def test_teacher_mass_entirely_in_topk_gives_zero_tail_without_nan():
    v = 20
    top = torch.log(torch.tensor([[0.5, 0.3, 0.2], [1.0, 0.0, 0.0]]))  # second row: one-hot
    top[1, 1:] = -1e4
    ids = torch.tensor([[0, 1, 2], [5, 6, 7]])
    buckets = teacher_bucket_logprobs(top, v)
    assert buckets[:, -1].exp().tolist() == [0.0, 0.0]
    student = torch.randn(2, v, requires_grad=True)
    loss = distillation_loss(student, top, ids)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()
    # Hand value: only the top-k buckets contribute.
    ls = F.log_softmax(student.detach(), -1)
    p = top.exp()
    expected = (p * (top - ls.gather(-1, ids))).where(p > 0, 0.0).sum(-1).mean()
    assert torch.allclose(loss, expected, atol=1e-5)


def test_kl_is_zero_when_student_matches_and_positive_otherwise():
    logp_t, top, ids = _teacher(8, 50, 10, seed=5)
    assert topk_kl(logp_t, top, ids).abs().max() < 1e-9
    other = torch.randn(8, 50, dtype=torch.float64)
    assert (topk_kl(other, top, ids) > 0).all()


def test_gradients_match_finite_differences_on_a_tiny_model(tiny_gpt2):
    # GPT-2, not Llama: Llama's RMSNorm computes in float32 even in a float64 model, which would
    # drown a small finite difference in rounding.
    model = copy.deepcopy(tiny_gpt2.model).double().eval()
    ids_in = torch.randint(0, model.config.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    v = model.config.vocab_size
    _, top, top_ids = _teacher(12, v, 8, seed=6)
    param = model.transformer.h[0].mlp.c_fc.weight

    def loss_fn():
        logits = model(input_ids=ids_in).logits.reshape(-1, v)  # [12, V]
        return distillation_loss(logits, top, top_ids)

    model.zero_grad()
    loss_fn().backward()
    analytic = param.grad.clone()
    eps = 1e-6
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        i, j = (int(torch.randint(0, s, (1,), generator=g)) for s in param.shape)
        with torch.no_grad():
            old = param[i, j].item()
            param[i, j] = old + eps
            up = loss_fn().item()
            param[i, j] = old - eps
            down = loss_fn().item()
            param[i, j] = old
        numeric = (up - down) / (2 * eps)
        assert abs(numeric - analytic[i, j].item()) <= 1e-6 + 1e-4 * abs(numeric)


def test_empty_positions_are_an_error():
    with pytest.raises(ValueError):
        distillation_loss(torch.zeros(0, 5), torch.zeros(0, 2), torch.zeros(0, 2, dtype=torch.long))
