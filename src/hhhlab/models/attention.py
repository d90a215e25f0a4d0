"""Attention that also returns its log-sum-exp, and the exact merge of attention over key sets.

Why: shared-prefix attention (Hydragen, arXiv 2402.05099) splits one softmax over
[prefix keys | own keys] into two softmaxes and merges them exactly. If each part returns its
output ``o_i`` and the log-sum-exp ``lse_i`` of its scores, the full attention is
``(o_1 e^{lse_1} + o_2 e^{lse_2}) / (e^{lse_1} + e^{lse_2})``. The prefix part then needs no
per-request copy of the prefix: the queries of every request in a batch are stacked into one
long query block against the single prefix K/V (one big, efficient product).

Kernels that return the log-sum-exp: PyTorch's CPU flash kernel
(``_scaled_dot_product_flash_attention_for_cpu``), on CUDA the flash kernel
(fp16/bf16) or the memory-efficient kernel (any float dtype). ``attention_reference`` is plain math, used as the
fallback and by the tests to check the kernels.

All tensors are (batch, heads, length, head_dim); log-sum-exps are float32 (batch, heads, length).
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


def attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    causal: bool = False,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Plain-math attention with log-sum-exp (float32 inside); ``mask`` is boolean, True = attend."""
    k, v = _expand_kv(q, k, v)
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale
    if causal:
        s, t = scores.shape[-2:]
        keep = torch.ones(s, t, dtype=torch.bool, device=q.device).tril(t - s)
        scores = scores.masked_fill(~keep, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = scores.logsumexp(-1)
    out = torch.softmax(scores, -1) @ v.float()
    return out.to(q.dtype), lse


def _expand_kv(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Repeat grouped K/V heads to the query heads (GQA: query head h uses kv head h // group)."""
    group = q.shape[1] // k.shape[1]
    if group == 1:
        return k, v
    return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)


def attention_with_lse(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    scale: float,
    causal: bool = False,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Attention output and float32 log-sum-exp, from the fastest kernel that returns both.

    ``causal`` aligns the last query with the last key (queries are the tail of the keys);
    ``mask`` (boolean, broadcastable to (B, H, S, T), True = attend) is applied on top.
    """
    if q.device.type == "cpu":
        float_mask = None
        if mask is not None:
            float_mask = torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(
                ~mask, float("-inf")
            )
        if causal and q.shape[-2] != k.shape[-2]:
            return attention_reference(q, k, v, scale=scale, causal=causal, mask=mask)
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=float_mask, scale=scale
        )
        return out, lse.float()
    if q.device.type == "cuda":
        return _cuda_attention(q, k, v, scale=scale, causal=causal, mask=mask)
    return attention_reference(q, k, v, scale=scale, causal=causal, mask=mask)


def _flash(q: Tensor, k: Tensor, v: Tensor, scale: float, causal: bool) -> tuple[Tensor, Tensor]:
    # Tried cuDNN's fused attention too (H100, torch 2.11): 7% faster once warm, but it builds a
    # plan per new shape (each batch width), which cost more than it saved. Flash it is.
    out, lse, *_ = torch.ops.aten._scaled_dot_product_flash_attention(
        q, k, v, 0.0, causal, False, scale=scale
    )
    return out, lse.float()


def _cuda_attention(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float, causal: bool, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    # Masks only occur in decoding and prompt prefill (short key sets): plain math is cheap
    # there and avoids the memory-efficient kernel's bias-alignment rules.
    if mask is not None or (causal and q.shape[-2] != k.shape[-2]):
        return attention_reference(q, k, v, scale=scale, causal=causal, mask=mask)
    k, v = _expand_kv(q, k, v)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    if q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] % 8 == 0 and q.shape[-1] <= 256:
        return _flash(q, k, v, scale, causal)
    out, lse, *_ = torch.ops.aten._scaled_dot_product_efficient_attention(
        q, k, v, None, True, 0.0, causal, scale=scale
    )
    return out, lse[..., : q.shape[-2]].float()


def shared_prefix_attention(
    q: Tensor, k: Tensor, v: Tensor, *, scale: float
) -> tuple[Tensor, Tensor]:
    """Every query of every request attends to one shared prefix K/V (Hkv, P, D), no mask.

    The batch and the query heads of each KV group are folded into the query length, so the
    whole batch is a single (1, Hkv, group*B*S, D) x (1, Hkv, P, D) product: no copy of the
    prefix per request or per query head.
    """
    b, h, s, d = q.shape
    hkv = k.shape[0]
    g = h // hkv
    folded = q.view(b, hkv, g, s, d).permute(1, 2, 0, 3, 4).reshape(1, hkv, g * b * s, d)
    out, lse = attention_with_lse(folded, k[None], v[None], scale=scale)
    out = out.reshape(hkv, g, b, s, d).permute(2, 0, 1, 3, 4).reshape(b, h, s, d)
    lse = lse.reshape(hkv, g, b, s).permute(2, 0, 1, 3).reshape(b, h, s)
    return out, lse


def tree_attention_mask(segments: Tensor, blocks: Tensor | None = None) -> Tensor:
    """``[B, T]`` segment ids (0 = shared context, k = branch k, -1 = padding) -> ``[B, 1, T, T]``
    bool, True = may attend: for a tree row ``[context | branch_1 | branch_2 | ...]``.

    Query q may attend to key k iff k comes no later than q and k is context or in q's own
    branch. Padding positions attend only to themselves, so no row of the mask is empty (an
    empty row gives NaN in some attention kernels).

    ``blocks`` (``[B, T]``, optional): several tree rows packed one after another into one row
    (`hhhlab.train.batching` packs short rows to save padding); a token then also sees only keys
    of its own block, so each packed tree is computed exactly as if it were alone."""
    t = segments.shape[1]
    q = segments[:, :, None]
    k = segments[:, None, :]
    causal = torch.ones(t, t, dtype=torch.bool, device=segments.device).tril()
    mask = causal & (k >= 0) & (q >= 0) & ((k == 0) | (k == q))
    if blocks is not None:
        mask &= blocks[:, :, None] == blocks[:, None, :]
    mask |= torch.eye(t, dtype=torch.bool, device=segments.device) & (q < 0)
    return mask[:, None]


def merge_attention(o1: Tensor, lse1: Tensor, o2: Tensor, lse2: Tensor) -> Tensor:
    """Exact softmax over the union of two key sets from the parts' outputs and log-sum-exps."""
    w1 = torch.sigmoid(lse1 - lse2)[..., None]  # e^lse1 / (e^lse1 + e^lse2), stable
    return torch.lerp(o2, o1, w1.to(o1.dtype))  # one fused kernel: o2 + w1 (o1 - o2)
