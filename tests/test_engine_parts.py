"""The engine's parts: attention kernels with log-sum-exp, the exact merge, and prefix planning."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hhhlab.models.attention import (
    attention_reference,
    attention_with_lse,
    merge_attention,
    shared_prefix_attention,
    tree_attention_mask,
)
from hhhlab.models.prefix import plan_prefix_groups

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")


DTYPES = [(torch.float32, 1e-5)] + [(torch.bfloat16, 2e-2)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_kernel_matches_reference(device, dtype, tol, causal):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 6, 9, 16, generator=g).to(device, dtype)
    k = torch.randn(3, 2, 9, 16, generator=g).to(device, dtype)
    v = torch.randn(3, 2, 9, 16, generator=g).to(device, dtype)
    out, lse = attention_with_lse(q, k, v, scale=0.25, causal=causal)
    ref_out, ref_lse = attention_reference(q, k, v, scale=0.25, causal=causal)
    assert lse.dtype == torch.float32 and lse.shape == (3, 6, 9)
    assert (out.float() - ref_out.float()).abs().max() < tol
    assert (lse - ref_lse).abs().max() < tol * 4


@pytest.mark.parametrize("device", DEVICES)
def test_masked_kernel_matches_reference(device):
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 3, 8, generator=g).to(device) for _ in range(3))
    k, v = (
        torch.randn(2, 2, 7, 8, generator=g).to(device),
        torch.randn(2, 2, 7, 8, generator=g).to(device),
    )
    mask = torch.rand(2, 1, 1, 7, generator=g).to(device) > 0.4
    mask[..., 0] = True
    out, lse = attention_with_lse(q, k, v, scale=0.3, mask=mask)
    ref_out, ref_lse = attention_reference(q, k, v, scale=0.3, mask=mask)
    assert (out - ref_out).abs().max() < 1e-5 and (lse - ref_lse).abs().max() < 1e-5


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_shared_prefix_plus_merge_equals_full_attention(device, dtype, tol):
    """Hydragen: [shared prefix | own causal keys] attention == one causal pass over the concat."""
    g = torch.Generator().manual_seed(2)
    b, h, hkv, p, s, d = 4, 6, 2, 11, 5, 16
    qs = torch.randn(b, h, s, d, generator=g).to(device, dtype)
    kp, vp = (torch.randn(hkv, p, d, generator=g).to(device, dtype) for _ in range(2))
    ks, vs = (torch.randn(b, hkv, s, d, generator=g).to(device, dtype) for _ in range(2))
    o1, l1 = shared_prefix_attention(qs, kp, vp, scale=0.25)
    o2, l2 = attention_with_lse(qs, ks, vs, scale=0.25, causal=True)
    merged = merge_attention(o1, l1, o2, l2)
    k_all = torch.cat([kp[None].expand(b, -1, -1, -1), ks], dim=2)
    v_all = torch.cat([vp[None].expand(b, -1, -1, -1), vs], dim=2)
    ref, _ = attention_reference(qs, k_all, v_all, scale=0.25, causal=True)
    assert (merged.float() - ref.float()).abs().max() < tol


def test_tree_attention_mask():
    """[context context | branch 1 x2 | branch 2 | pad]: a branch sees the context and itself."""
    mask = tree_attention_mask(torch.tensor([[0, 0, 1, 1, 2, -1]]))
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 0, 0, 1, 0],
            [0, 0, 0, 0, 0, 1],  # padding sees only itself: no empty row
        ],
        dtype=torch.bool,
    )
    assert mask.shape == (1, 1, 6, 6) and torch.equal(mask[0, 0], expected)


def test_plan_groups_hhh_shaped_workload():
    hhh = list(range(1000, 1400))
    seqs = []
    for q in range(20):
        question = hhh + [q] * 30
        for a in range(3):
            seqs.append(question + [a] * 5)
    seqs += [[7] * 50, [8] * 60]
    plan = plan_prefix_groups(
        [s[:-1] for s in seqs], [len(s) for s in seqs], min_prefix=16, group_overhead=256
    )
    by_len = {g.prefix_len: sorted(g.members) for g in plan}
    assert by_len[400] == list(range(60))  # the long prompt is shared by all 60, encoded once
    assert by_len[0] == [60, 61]


def test_plan_prefers_inner_prefix_when_it_pays():
    # Two families with long private prefixes and a short common one: split into two groups.
    a, b = [1] * 20 + [2] * 500, [1] * 20 + [3] * 500
    seqs = [a + [i] for i in range(5)] + [b + [i] for i in range(5)]
    plan = plan_prefix_groups(seqs, [len(s) + 1 for s in seqs], min_prefix=16, group_overhead=256)
    assert sorted(g.prefix_len for g in plan) == [520, 520]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 3), max_size=30), min_size=1, max_size=25),
    st.integers(1, 8),
    st.integers(0, 40),
)
def test_plan_partitions_and_prefixes_are_common(seqs, min_prefix, overhead):
    plan = plan_prefix_groups(
        seqs, [len(s) + 1 for s in seqs], min_prefix=min_prefix, group_overhead=overhead
    )
    assert sorted(i for g in plan for i in g.members) == list(range(len(seqs)))
    assert sum(1 for g in plan if g.prefix_len == 0) <= 1
    for g in plan:
        if g.prefix_len:
            assert g.prefix_len >= min_prefix and len(g.members) >= 2
            first = seqs[g.members[0]][: g.prefix_len]
            assert len(first) == g.prefix_len
            assert all(seqs[i][: g.prefix_len] == first for i in g.members)
