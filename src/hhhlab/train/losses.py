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
  LM loss on the good sequence (eq. C.1; ``mu = 0`` here, 1 for PMP).
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
    """``L = λ·L_PM + μ·L_LM,good`` (eq. C.1). With ``μ = 0`` the LM term is not computed at all."""
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
