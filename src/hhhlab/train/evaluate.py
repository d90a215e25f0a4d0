"""Evaluations of §3 of the paper, from scores to metrics with bootstrap CIs (`hhhlab.stats`).

* `pairwise_accuracy`: for every (better, worse) pair of a group, 1 if the model scores the
  better response higher, ½ on a tie (the expected accuracy of a random tie-break), else 0.
* `group_accuracy`: ETHICS deontology/justice/virtue — items sharing ``metadata["group_id"]``
  count as one, correct only if every pair in it is correct.
* `calibration`: expected calibration error of ``σ(r_i − r_j)`` as the predicted probability
  that i is preferred (Fig 30). Each pair enters in both orders, so the curve is symmetric.
* `acc_at_k` / `rerank_accuracy`: the re-ranking protocol for code correctness and Lambada
  (App. B.6): N samples per prompt ranked best first, ``acc@k = Σ_i acc(s_i)·C(N−i, k−1)/C(N, k)``
  — the expected correctness of the top-ranked of k samples drawn without replacement.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence

import numpy as np

from hhhlab.results import estimate_dict
from hhhlab.stats import Estimate, bootstrap, pass_at_k
from hhhlab.train.batching import EncodedGroup

RERANK_KS = (2, 8, 32, 96)


def pair_outcomes(groups: Sequence[EncodedGroup], scores: Sequence[Sequence[float]]) -> list[tuple[int, float, float]]:
    """``(group position, correctness in {0, ½, 1}, margin r_better − r_worse)`` for every pair."""
    out = []
    for gi, (g, s) in enumerate(zip(groups, scores)):
        for i, j in g.pairs():
            margin = s[i] - s[j]
            out.append((gi, 1.0 if margin > 0 else 0.5 if margin == 0 else 0.0, margin))
    return out


def pairwise_accuracy(groups: Sequence[EncodedGroup], scores: Sequence[Sequence[float]]) -> Estimate:
    return bootstrap([c for _, c, _ in pair_outcomes(groups, scores)])


def group_accuracy(groups: Sequence[EncodedGroup], scores: Sequence[Sequence[float]],
                   key: Callable[[EncodedGroup], str | None] | None = None) -> Estimate | None:
    """Accuracy over groups of items (``metadata["group_id"]``): a group counts only if all its
    pairs are right. None when no item carries a group id."""
    key = key or (lambda g: g.metadata.get("group_id"))
    ok: dict[str, bool] = {}
    for gi, correct, _ in pair_outcomes(groups, scores):
        k = key(groups[gi])
        if k is None:
            continue
        ok[str(k)] = ok.get(str(k), True) and correct == 1.0
    return bootstrap([float(v) for v in ok.values()]) if ok else None


def calibration(margins: Sequence[float], n_bins: int = 10) -> dict:
    """ECE of σ(margin) as P(better is preferred); bins for a reliability plot (Fig 30)."""
    m = np.asarray(margins, dtype=float)
    if m.size == 0:
        return {"ece": float("nan"), "bins": []}
    p = 1.0 / (1.0 + np.exp(-m))
    pred = np.concatenate([p, 1 - p])
    label = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.digitize(pred, edges[1:-1]), 0, n_bins - 1)
    ece, bins = 0.0, []
    for b in range(n_bins):
        sel = which == b
        if not sel.any():
            continue
        conf, freq = float(pred[sel].mean()), float(label[sel].mean())
        ece += sel.mean() * abs(conf - freq)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "predicted": conf, "observed": freq,
                     "n": int(sel.sum())})
    return {"ece": float(ece), "bins": bins}


def evaluation_metrics(groups: Sequence[EncodedGroup], scores: Sequence[Sequence[float]], *,
                       with_calibration: bool = True) -> dict:
    """The metrics `hhhlab pm train/eval` report: accuracy (+CI), group accuracy, calibration."""
    outcomes = pair_outcomes(groups, scores)
    acc = bootstrap([c for _, c, _ in outcomes])
    out = {"accuracy": acc.value, "accuracy_ci": [acc.lo, acc.hi], "n_eval": acc.n, "n_eval_groups": len(groups),
           # per pair, in file order: two models scored on the same file can be compared paired
           "pair_correct": [c for _, c, _ in outcomes]}
    grp = group_accuracy(groups, scores)
    if grp is not None:
        out.update(group_accuracy=grp.value, group_accuracy_ci=[grp.lo, grp.hi], n_eval_item_groups=grp.n)
    if with_calibration:
        cal = calibration([m for _, _, m in outcomes])
        out.update(ece=cal["ece"], calibration_bins=cal["bins"])
    by_kind: dict[str, list[float]] = defaultdict(list)
    for gi, c, _ in outcomes:
        by_kind[str(groups[gi].metadata.get("subset", ""))].append(c)
    # Every estimate as one record {value, lo, hi, n, method} (hhhlab.results): the results
    # document's estimates; the flat accuracy/accuracy_ci fields stay for existing readers.
    estimates = {"accuracy": acc, **({"group_accuracy": grp} if grp is not None else {})}
    if len(by_kind) > 1:
        out["accuracy_by_subset"] = {k: bootstrap(v).to_dict() for k, v in by_kind.items()}
        estimates.update({f"accuracy_by_subset/{k}": bootstrap(v) for k, v in by_kind.items()})
    out["estimates"] = {k: estimate_dict(v) for k, v in estimates.items()}
    return out


# -- re-ranking (code correctness, Lambada) ------------------------------------------------------

def acc_at_k(correct_ranked: Sequence[bool | float], k: int) -> float:
    """``Σ_{i=1..N} acc(s_i)·C(N−i, k−1)/C(N, k)`` for samples ranked best first (App. B.6)."""
    n = len(correct_ranked)
    if not 1 <= k <= n:
        raise ValueError(f"acc@{k} needs 1 <= k <= N = {n} samples")
    total = math.comb(n, k)
    return float(sum(float(c) * math.comb(n - i, k - 1) for i, c in enumerate(correct_ranked, 1)) / total)


def rank_by_scores(scores: Sequence[float], seed: int = 0) -> list[int]:
    """Indices best first; ties broken at random (seeded), not by sample order."""
    rng = np.random.default_rng(seed)
    tie = rng.random(len(scores))
    return sorted(range(len(scores)), key=lambda i: (-scores[i], tie[i]))


def rerank_accuracy(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]],
                    ks: Sequence[int] = RERANK_KS) -> dict[str, dict]:
    """Per k: top-1 accuracy of the ranker (acc@k), the oracle (pass@k) and no ranking (mean
    correctness), each a mean over prompts with a bootstrap CI."""
    out: dict[str, dict] = {}
    for k in ks:
        ranked, oracle, average = [], [], []
        for p, (s, c) in enumerate(zip(scores, correct)):
            if len(c) < k:
                raise ValueError(f"prompt {p}: acc@{k} needs {k} samples, got {len(c)}")
            order = rank_by_scores(s, seed=p)
            ranked.append(acc_at_k([c[i] for i in order], k))
            oracle.append(pass_at_k(len(c), int(sum(c)), k))
            average.append(float(np.mean(c)))
        out[str(k)] = {"ranked": bootstrap(ranked).to_dict(), "oracle": bootstrap(oracle).to_dict(),
                       "average": bootstrap(average).to_dict()}
    return out


LAMBADA_PUNCT = ".,;:!?\"'"


def lambada_answer(completion: str) -> str:
    """The word a Lambada sample answers with: its first word, surrounding punctuation stripped
    (``""`` when it has none). What the re-ranking sweep scores and trains on."""
    words = completion.strip().split()
    return words[0].strip(LAMBADA_PUNCT) if words else ""


def lambada_is_correct(completion: str, target: str) -> bool:
    """A Lambada sample is right when its first word is the target word (punctuation stripped)."""
    answer = lambada_answer(completion)
    return bool(answer) and answer == target.strip()


def sample_and_rerank(engine, scorer, prompts: Sequence[str], is_correct: Callable[[int, str], bool], *,
                      n_samples: int = 100, ks: Sequence[int] = RERANK_KS, max_new_tokens: int = 8,
                      temperature: float = 1.0, stop: Sequence[str] = ("\n",), batch_size: int = 32,
                      seed: int = 0) -> dict:
    """The paper's protocol: sample ``n_samples`` completions per prompt at T=1 from the LM
    (`hhhlab.models.engine.Engine`), rank them by ``scorer`` (a `PreferenceModel`: PM head or IL
    mean log-prob) and report acc@k for each k <= n_samples."""
    from hhhlab.models.engine import GenerationConfig

    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, num_samples=n_samples,
                           stop=tuple(stop), seed=seed)
    samples = engine.generate(list(prompts), cfg)
    groups = []
    for p, comps in zip(prompts, samples):
        groups.append((p, [c if c.strip() else " " + engine.tokenizer.eos_token for c in comps]))
    scores = scorer.score_groups(groups, batch_size=batch_size)
    correct = [[is_correct(i, c) for c in comps] for i, comps in enumerate(samples)]
    return {"acc_at_k": rerank_accuracy(scores, correct, [k for k in ks if k <= n_samples]),
            "n_prompts": len(prompts), "n_samples": n_samples}


def text_lm_metrics(model, path: str, *, batch_size: int = 32, limit: int | None = None,
                    max_length: int | None = None) -> dict:
    """Language-modelling metrics of ``model`` on a text corpus (JSONL ``{"text"}`` or ``.txt``):
    mean token NLL (a bootstrap over texts of their summed NLL / their tokens) and perplexity."""
    import torch

    from hhhlab.train.batching import build_batch
    from hhhlab.train.data import DataStats, encode_groups, read_records

    stats = DataStats()
    items = encode_groups(read_records(path, "text", limit=limit, stats=stats), model.tokenizer,
                          max_length=max_length or model.max_length, stats=stats)
    nll, ntok = [], []
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for s in range(0, len(items), batch_size):
            chunk = items[s : s + batch_size]
            batch = build_batch(chunk, eoc_id=None, pad_id=model.tokenizer.pad_token_id, lm="all").to(model.device)
            _, lp = model(batch, head=False, lm=True)
            per = torch.zeros(len(chunk), dtype=torch.float64).index_add_(0, batch.lm_owner.cpu(), -lp.double().cpu())
            nll += per.tolist()
            ntok += torch.bincount(batch.lm_owner.cpu(), minlength=len(chunk)).tolist()
    model.train(was_training)
    x = np.array([nll, ntok], dtype=float).T  # [texts, 2]
    est = bootstrap(x, lambda a: float(a[:, 0].sum() / a[:, 1].sum()))
    return {"lm_loss": est.to_dict(), "perplexity": math.exp(est.value), "n_eval_texts": len(items),
            "n_eval_tokens": int(sum(ntok)), "eval_data": stats.to_dict()}
