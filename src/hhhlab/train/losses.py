"""The training objectives of the paper's §3–4, each a few lines with its formula.

Shapes are in the names' comments: ``scores: [n_responses]`` are scalar PM scores, ``good`` and
``bad`` index into them (one entry per pair), ``token_logprobs: [n_tokens]`` are the log-probs of
the response tokens of the good sequences.

* Imitation learning (IL): language modelling on the good sequence, masked to its response
  tokens. The paper sums token NLLs; we take the mean over the batch's response tokens, which
  differs only by a per-batch constant and keeps the learning rate independent of response
  length. At evaluation an IL model scores a response by its mean per-token log-prob.
* Preference modelling (PM, eq. 3.1): ``L = mean_pairs log(1 + exp(r_bad - r_good))``,
  computed as ``softplus(r_bad - r_good)`` (no overflow for large gaps), plus ``mu`` times the
  LM loss on the good sequence (eq. C.1; ``mu = 0`` by default, 1 for PMP) and ``lambda`` times
  the PM term (``pm_weight``, default 1).
* Pointwise classifier (beyond the paper): binary cross-entropy of ``sigmoid(r)`` against
  good = 1 / bad = 0, averaged over the two responses of every pair.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def imitation_loss(token_logprobs: torch.Tensor) -> torch.Tensor:
    """``L_IL = -mean_t log p(y_t | context, y_<t)`` over the good responses' tokens ``[n_tokens]``."""
    if token_logprobs.numel() == 0:
        raise ValueError("imitation loss needs at least one response token")
    return -token_logprobs.mean()


def preference_loss(scores: torch.Tensor, good: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """``L_PM = mean_pairs log(1 + exp(r_bad - r_good))`` (eq. 3.1) = ``mean softplus(r_bad - r_good)``.

    ``scores: [n_responses]``; ``good, bad: [n_pairs]`` indices of each pair's better and worse
    response."""
    if good.numel() == 0:
        raise ValueError("preference loss needs at least one pair")
    return F.softplus(scores[bad] - scores[good]).mean()


def preference_lm_loss(
    scores: torch.Tensor, good: torch.Tensor, bad: torch.Tensor, token_logprobs: torch.Tensor | None,
    *, pm_weight: float = 1.0, lm_weight: float = 0.0,
) -> torch.Tensor:
    """``L = λ·L_PM + μ·L_LM,good`` (eq. C.1). With ``μ = 0`` the LM term is not computed at all.

    The preference objective (`hhhlab.train.objectives.preference`) returns the two terms
    separately, because the loop normalises each over the global batch's own unit (pairs,
    tokens); on a batch that is the whole global batch they equal this (tests/test_losses.py)."""
    loss = pm_weight * preference_loss(scores, good, bad)
    if lm_weight:
        if token_logprobs is None:
            raise ValueError("lm_weight > 0 needs the good sequences' token log-probs")
        loss = loss + lm_weight * imitation_loss(token_logprobs)
    return loss


def classifier_loss(scores: torch.Tensor, good: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
    """``L = mean_pairs [BCE(σ(r_good), 1) + BCE(σ(r_bad), 0)] / 2``: a pointwise good/bad classifier."""
    if good.numel() == 0:
        raise ValueError("classifier loss needs at least one pair")
    logits = torch.cat([scores[good], scores[bad]])
    labels = torch.cat([torch.ones_like(scores[good]), torch.zeros_like(scores[bad])])
    return F.binary_cross_entropy_with_logits(logits, labels)


def mean_logprob_scores(token_logprobs: torch.Tensor, owner: torch.Tensor, n_responses: int) -> torch.Tensor:
    """IL's evaluation score: mean per-token log-prob of each response.

    ``token_logprobs: [n_tokens]``, ``owner: [n_tokens]`` the response each token belongs to;
    returns ``[n_responses]``."""
    total = torch.zeros(n_responses, dtype=token_logprobs.dtype, device=token_logprobs.device)
    count = torch.zeros_like(total)
    total.index_add_(0, owner, token_logprobs)
    count.index_add_(0, owner, torch.ones_like(token_logprobs))
    return total / count.clamp(min=1)


# ---------------------------------------------------------------------------------------------
# Context distillation (§3, App. B.5): a (k+1)-way KL against a cached top-k teacher.


def _fp32_or_wider(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (the KL needs the precision); float64 stays (tests)."""
    return x if x.dtype == torch.float64 else x.float()


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable at both ends (Mächler 2012): ``log(-expm1(x))``
    near 0 (where ``1 - exp(x)`` would cancel) and ``log1p(-exp(x))`` below ``-ln 2``."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def teacher_bucket_logprobs(topk_logprobs: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The teacher's k+1 bucket log-probs ``[n, k+1]`` from its top-k log-probs ``[n, k]``.

    ``tail = log(1 - Σ_topk p) = log1mexp(logsumexp(topk_logprobs))``. Stored log-probs (float16
    storage, or k = V) can sum to a hair over 1: the top-k are then renormalised and the tail is
    exactly 0 (log-prob ``-inf``), never NaN. With ``k == vocab_size`` there is no tail bucket:
    the result is ``[n, k]``, the full distribution."""
    top = _fp32_or_wider(topk_logprobs)
    mass = torch.logsumexp(top, dim=-1, keepdim=True)  # [n, 1] log Σ_topk p
    top = top - mass.clamp(min=0)  # renormalise only where the mass exceeds 1
    if top.shape[-1] == vocab_size:
        return top
    has_tail = mass < 0
    tail = torch.where(has_tail, log1mexp(torch.where(has_tail, mass, -1.0)), float("-inf"))
    return torch.cat([top, tail], dim=-1)


def student_bucket_logprobs(student_logits: torch.Tensor, topk_ids: torch.Tensor) -> torch.Tensor:
    """The student's log-probs ``[n, k+1]`` of the teacher's top-k tokens and of everything else.

    ``student_logits: [n, V]``, ``topk_ids: [n, k]`` (the teacher's tokens). The tail is the
    logsumexp of the student's logits *outside* the teacher's top-k minus the log-partition —
    computed directly, not as ``1 - Σ p`` (which cancels when the student is confident) nor as a
    difference of raw logits (trlx's bug). ``k == V``: no tail, ``[n, V]``."""
    logits = _fp32_or_wider(student_logits)
    log_z = torch.logsumexp(logits, dim=-1, keepdim=True)  # [n, 1]
    top = logits.gather(-1, topk_ids.long()) - log_z  # [n, k]
    if topk_ids.shape[-1] == logits.shape[-1]:
        return top
    outside = logits.scatter(-1, topk_ids.long(), float("-inf"))  # [n, V], top-k masked out
    tail = torch.logsumexp(outside, dim=-1, keepdim=True) - log_z  # [n, 1]
    return torch.cat([top, tail], dim=-1)


def topk_kl(
    student_logits: torch.Tensor, topk_logprobs: torch.Tensor, topk_ids: torch.Tensor
) -> torch.Tensor:
    """Per-position ``KL(p_teacher ‖ p_student)`` over the k+1 buckets, ``[n]``.

    ``KL = Σ_{b ∈ topk ∪ {tail}} p_t(b) (log p_t(b) - log p_s(b))`` with ``p_t(tail) = 1 - Σ_topk p_t``
    and ``p_s(tail)`` the student's mass outside the teacher's top-k (the paper's 51-way
    categorical for k = 50). A bucket with ``p_t = 0`` contributes exactly 0 (and 0 gradient).
    ``student_logits: [n, V]``, ``topk_logprobs, topk_ids: [n, k]`` from the teacher cache."""
    t = teacher_bucket_logprobs(topk_logprobs, student_logits.shape[-1])  # [n, k+1]
    s = student_bucket_logprobs(student_logits, topk_ids)  # [n, k+1]
    t = t.to(s.dtype)
    present = torch.isfinite(t)
    p = torch.where(present, t.exp(), 0.0)
    return (p * (torch.where(present, t, 0.0) - s)).sum(-1)


def distillation_loss(
    student_logits: torch.Tensor, topk_logprobs: torch.Tensor, topk_ids: torch.Tensor
) -> torch.Tensor:
    """``L_CD = mean_positions KL_{k+1}(p0(x_t | C, x_<t) ‖ pθ(x_t | x_<t))`` (eq. 2.1 with App.
    B.5's top-k teacher), over every position given ``[n, ·]`` (the caller picks them)."""
    if student_logits.shape[0] == 0:
        raise ValueError("distillation loss needs at least one position")
    return topk_kl(student_logits, topk_logprobs, topk_ids).mean()
