"""The scoring and generation engine every eval and experiment runs on.

Evals build requests (context, continuation) and hand them to one engine. Tokenisation follows
lm-evaluation-harness: trailing spaces of the context move to the continuation, the pair is
encoded whole, and the continuation's tokens are those past the context's encoding; an empty
context is replaced by the BOS/EOS token.

How it is fast (see ``prefix.py``, ``runner.py``, ``attention.py``):
- Requests sharing a long token prefix (a 4,000-token HHH prompt before every question) are
  grouped; the prefix is encoded once, and only the suffixes run, attending to the one prefix
  K/V through shared-prefix attention (Hydragen) merged exactly with their own causal attention.
- Within a group, continuations that share their whole context (after the prefix) share a tree
  row: ``[context | continuation_1 | continuation_2 | ...]``, the context run once, each
  continuation attending to it and to itself only, at the positions it has alone (an HHH
  question and its answers; a TruthfulQA question and its 4-13 answers). So an HHH prompt, a
  question and each answer each run once.
- Rows are batched longest first with right padding (dynamic: each batch is as wide as its
  longest row, and holds up to ``batch_size`` continuations), and only the continuation
  positions go through the LM head.
- Generation encodes the shared prefix once, runs each prompt's remaining tokens once, then
  decodes all samples of a prompt together against that one cache, dropping samples as they
  hit a stop sequence. Banned strings cost one text decode per sample and step (shared with the
  stop check); only a sample whose token completes one is resampled, alone (``Engine._sample``).

Architectures without a block runner (anything not Llama-family or GPT-2) use a generic path:
a plain transformers forward per batch (no prefix reuse, no tree rows) and transformers' KV cache
for sampling.

Accuracy (tests/test_engine.py): in fp32 the engine equals naive one-request-at-a-time scoring
within 1e-4 (measured ~1e-5), whatever the batch size (1, 7, 32), prefix sharing or tree rows.
In bf16 the engine and a naive bf16 forward each round differently: within 0.05 nats per request
on tiny models; on random-weight 1B/8B shapes (H100) up to 0.2-0.6 nats per ~10-token request, the
size of bf16 noise itself, so use fp32 where differences that small matter.

All requests are validated before any compute, so a bad item costs nothing already computed;
the error names every bad item (up to five) by index.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hhhlab.errors import RequestError
from hhhlab.models import tokenize
from hhhlab.models.attention import tree_attention_mask
from hhhlab.models.load import LoadedModel
from hhhlab.models.prefix import PrefixGroup, plan_prefix_groups
from hhhlab.models.runner import BlockRunner, PrefixKV, runner_for
from hhhlab.models.sampling import (
    completes_ban,
    cut_at_stop,
    hits_stop,
    make_generators,
    next_tokens,
)

__all__ = ["Engine", "GenerationConfig", "ScoreRequest", "ScoreResult", "cut_at_stop"]


@dataclass(frozen=True)
class ScoreRequest:
    context: str
    continuation: str


@dataclass
class ScoreResult:
    logprob: float  # summed log-prob of the continuation tokens given the context
    token_logprobs: list[float]
    n_tokens: int
    is_greedy: bool  # every continuation token is the argmax
    truncated: int = 0  # context tokens dropped from the left to fit the window


# A sampled token that completes a banned string is excluded and its sample resampled at most
# this many times per step; a sample whose every try fails ends there, as at end-of-text.
BAN_TRIES = 64


@dataclass
class GenerationConfig:
    """``stop``: a sample ends once its text contains one, and is returned cut before it.
    ``ban``: strings a sample's generated text never contains (the prompt may); a token that
    would complete one is replaced by a fresh draw without it (see ``Engine._sample``)."""

    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    num_samples: int = 1
    stop: Sequence[str] = field(default_factory=tuple)
    seed: int = 0
    ban: Sequence[str] = ()


def _as_request(r: object, index: int) -> ScoreRequest:
    if isinstance(r, ScoreRequest):
        return r
    if isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(x, str) for x in r):
        return ScoreRequest(*r)
    raise RequestError(
        f"request {index}: expected a ScoreRequest or a (context, continuation) pair of "
        f"strings, got {type(r).__name__} {str(r)[:80]!r}"
    )


def _raise_collected(errors: list[str], total: int, what: str) -> None:
    if errors:
        shown = "; ".join(errors[:5]) + (
            f"; ... and {len(errors) - 5} more" if len(errors) > 5 else ""
        )
        raise RequestError(f"{len(errors)} of {total} {what} invalid, nothing was run: {shown}")


class Engine:
    """Batched log-likelihood scoring and sampling for one loaded model.

    ``prefix_reuse``: share long common prefixes (needs a block runner, see ``runner.py``).
    ``pack_shared_contexts``: run a context shared by several continuations once per tree row
    (needs a block runner; see ``_batches``). False runs every request's context separately.
    ``fast_path``: use the block runner where the architecture has one; False forces the generic
    transformers path (for comparison and tests). ``min_prefix`` / ``prefix_overhead``: a prefix
    is reused only if at least ``min_prefix`` tokens long and saving more than
    ``prefix_overhead`` tokens of compute overall (see ``prefix.py``).
    """

    def __init__(
        self,
        lm: LoadedModel,
        *,
        batch_size: int = 16,
        max_length: int | None = None,
        truncation: str = "error",
        progress: bool = False,
        prefix_reuse: bool = True,
        fast_path: bool = True,
        min_prefix: int = 16,
        prefix_overhead: int = 256,
        pack_shared_contexts: bool = True,
    ):
        if truncation not in ("error", "left"):
            raise ValueError("truncation must be 'error' or 'left'")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or lm.max_length
        self.truncation = truncation
        self.progress = progress
        self.prefix_reuse = prefix_reuse
        self.min_prefix = min_prefix
        self.prefix_overhead = prefix_overhead
        self.runner: BlockRunner | None = runner_for(self.model) if fast_path else None
        self.pack_shared_contexts = pack_shared_contexts and self.runner is not None

    @property
    def device(self) -> torch.device:
        return self.lm.device

    # -- tokenisation ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def prefix_token_id(self) -> int:
        return tokenize.prefix_token_id(self.tokenizer)

    def encode_pair(
        self, context: str, continuation: str, index: int = 0
    ) -> tuple[list[int], list[int]]:
        """Context and continuation token ids, split the way lm-evaluation-harness splits them."""
        context, continuation = self._normalize(context, continuation, index)
        enc = tokenize.encode_texts(self.tokenizer, tokenize.texts_to_encode(context, continuation))
        return self._split(context, continuation, enc, index)

    @staticmethod
    def _normalize(context: str, continuation: str, index: int) -> tuple[str, str]:
        """`hhhlab.models.tokenize.normalize_pair` (the one rule training uses too)."""
        try:
            return tokenize.normalize_pair(context, continuation)
        except tokenize.TokenizationError as exc:
            raise RequestError(f"request {index}: {exc}") from None

    def _split(self, context: str, continuation: str, enc: dict[str, list[int]], index: int):
        """`hhhlab.models.tokenize.split_encoded`: lm-eval's boundary (the pair encoded whole,
        the continuation = what lies past the context's own encoding; an empty context is the
        BOS or EOS token). Identical contexts share one token list: do not mutate it."""
        try:
            return tokenize.split_encoded(context, continuation, enc, self.prefix_token_id)
        except tokenize.TokenizationError as exc:
            raise RequestError(f"request {index}: {exc}") from None

    def _fit(self, ctx: list[int], cont: list[int], index: int) -> tuple[list[int], int]:
        total = len(ctx) + len(cont)
        if total <= self.max_length:
            return ctx, 0
        if self.truncation == "error" or len(cont) >= self.max_length:
            raise RequestError(
                f"request {index}: {total} tokens exceed the model's window of {self.max_length} "
                f"(continuation {len(cont)}); pass truncation='left' to drop context from the left"
            )
        drop = total - self.max_length
        return ctx[drop:], drop

    # -- scoring -------------------------------------------------------------------------------
    @torch.inference_mode()
    def score(
        self, requests: Sequence[ScoreRequest | tuple[str, str]], desc: str = "scoring"
    ) -> list[ScoreResult]:
        """Score every request; all are tokenised and checked first, so one bad request raises a
        RequestError naming it before any compute is spent."""
        normalized: list[tuple[int, str, str]] = []
        errors: list[tuple[int, str]] = []
        for i, raw in enumerate(requests):
            try:
                r = _as_request(raw, i)
                normalized.append((i, *self._normalize(r.context, r.continuation, i)))
            except RequestError as exc:
                errors.append((i, str(exc)))
        enc = tokenize.encode_texts(
            self.tokenizer, [t for _, c, k in normalized for t in tokenize.texts_to_encode(c, k)]
        )
        encoded: list[tuple[list[int], list[int], int]] = []
        for i, context, continuation in normalized:
            try:
                ctx, cont = self._split(context, continuation, enc, i)
                ctx, dropped = self._fit(ctx, cont, i)
                encoded.append((ctx, cont, dropped))
            except RequestError as exc:
                errors.append((i, str(exc)))
        _raise_collected([msg for _, msg in sorted(errors)], len(requests), "requests are")
        return self.score_tokens(
            [(c, k) for c, k, _ in encoded], truncated=[d for *_, d in encoded], desc=desc
        )

    @torch.inference_mode()
    def score_tokens(
        self,
        pairs: Sequence[tuple[list[int], list[int]]],
        *,
        truncated: Sequence[int] | None = None,
        desc: str = "scoring",
    ) -> list[ScoreResult]:
        """Score (context ids, continuation ids) pairs; results come back in input order."""
        errors = []
        for i, (ctx, cont) in enumerate(pairs):
            if not ctx:
                errors.append(f"request {i}: the context has no tokens (use the BOS token)")
            elif not cont:
                errors.append(f"request {i}: the continuation has no tokens")
            elif len(ctx) + len(cont) > self.max_length:
                errors.append(
                    f"request {i}: {len(ctx) + len(cont)} tokens exceed the window of {self.max_length}"
                )
        _raise_collected(errors, len(pairs), "requests are")
        truncated = list(truncated) if truncated is not None else [0] * len(pairs)
        results: list[ScoreResult | None] = [None] * len(pairs)
        from tqdm.auto import tqdm

        pending = []  # device tensors: no host sync per batch, so the GPU never waits for Python
        with tqdm(total=len(pairs), desc=desc, disable=not self.progress, leave=False) as bar:
            for group, batch in self._score_batches(pairs):
                logits, targets = self._continuation_logits(pairs, group, batch)
                token_lp = F.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
                members = [i for row in batch for i in row]  # the order of the targets
                pending.append((members, token_lp, logits.argmax(-1) == targets))
                bar.update(len(members))
        for batch, token_lp, greedy in pending:
            self._collect(pairs, batch, token_lp.cpu(), greedy.cpu(), truncated, results)
        return results  # type: ignore[return-value]

    def plan(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[PrefixGroup]:
        """Which requests share which prefix (exposed for benchmarks and tests)."""
        if self.runner is None or not self.prefix_reuse:
            return [PrefixGroup(0, list(range(len(pairs))))] if pairs else []
        return plan_prefix_groups(
            [ctx for ctx, _ in pairs],
            [len(ctx) + len(cont) for ctx, cont in pairs],
            limits=[
                len(ctx) - 1 for ctx, _ in pairs
            ],  # the last context token must run: it predicts
            min_prefix=self.min_prefix,
            group_overhead=self.prefix_overhead,
        )

    def _score_batches(self, pairs):
        """((prefix length, PrefixKV or None), batch of tree rows), group by group."""
        for group in self.plan(pairs):
            p = group.prefix_len
            prefix = None
            if p:
                ctx = pairs[group.members[0]][0]
                prefix = self.runner.encode_prefix(ctx[:p], self.device)
            for batch in self._batches(pairs, group):
                yield (p, prefix), batch

    def _batches(self, pairs, group: PrefixGroup) -> list[list[list[int]]]:
        """A group's requests as batches of tree rows (lists of request indices), longest first.

        A row holds requests whose context after the group's prefix is identical: it runs that
        context once, then each continuation (``_continuation_logits``). A row holds at most
        ``batch_size`` continuations and at most ``max_length`` tokens (no longer than a request
        the model could be given whole); a batch holds rows up to ``batch_size`` continuations.
        Without packing every row is one request, as before.
        """
        p, cap = group.prefix_len, self.batch_size
        if not self.pack_shared_contexts:
            rows = [[i] for i in group.members]
        else:
            families: dict[tuple[int, ...], list[int]] = {}
            for i in group.members:
                families.setdefault(tuple(pairs[i][0][p:]), []).append(i)
            rows = []
            for rest, family in families.items():
                row: list[int] = []
                n_tokens = len(rest)
                for i in family:
                    n = len(pairs[i][1])
                    if row and (len(row) == cap or n_tokens + n > self.max_length):
                        rows.append(row)
                        row, n_tokens = [], len(rest)
                    row.append(i)
                    n_tokens += n
                rows.append(row)

        def row_tokens(row: list[int]) -> int:
            return len(pairs[row[0]][0]) - p + sum(len(pairs[i][1]) for i in row)

        rows.sort(key=lambda row: -row_tokens(row))
        batches: list[list[list[int]]] = [[]]
        used = 0
        for row in rows:
            if used + len(row) > cap:
                batches.append([])
                used = 0
            batches[-1].append(row)
            used += len(row)
        return batches if rows else []

    def _continuation_logits(
        self, pairs, group: tuple[int, PrefixKV | None], batch: list[list[int]]
    ):
        """Float32 logits at every continuation position of the batch, flattened, and targets.

        Each row of ``batch`` is laid out as a tree (as in ``train/batching.py``)::

            [ context after the prefix | continuation_1 | continuation_2 | ... ]

        each continuation attending to the context and causally to itself, never to its
        siblings, with positions restarting after the context: every continuation is computed as
        if it ran alone. Its first token is predicted by the context's last token (shared by the
        row), the others by their predecessors in the branch.
        """
        p, prefix = group
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        seqs, positions, segments = [], [], []
        rows, cols, targets = [], [], []
        for r, members in enumerate(batch):
            rest = pairs[members[0]][0][p:]
            tokens, pos, seg = list(rest), list(range(p, p + len(rest))), [0] * len(rest)
            for branch, i in enumerate(members, 1):
                cont = pairs[i][1]
                rows += [r] * len(cont)
                cols += [len(rest) - 1, *range(len(tokens), len(tokens) + len(cont) - 1)]
                targets += cont
                tokens += cont
                pos += range(p + len(rest), p + len(rest) + len(cont))
                seg += [branch] * len(cont)
            seqs.append(tokens)
            positions.append(pos)
            segments.append(seg)
        width = max(len(s) for s in seqs)

        def padded(lists: list[list[int]], fill: int) -> list[int]:
            return [t for s in lists for t in s + [fill] * (width - len(s))]

        # Segments: 0 the context, k continuation k, -1 padding (see ``tree_attention_mask``).
        flat = padded(seqs, pad) + padded(positions, p) + padded(segments, -1)
        # One host-to-device copy, asynchronous from pinned memory: a pageable copy would wait for
        # the GPU to finish the previous batch, and the CPU could not queue this one meanwhile.
        host = torch.tensor(flat + rows + cols + targets, dtype=torch.long)
        dev = self.device
        if dev.type == "cuda":
            host = host.pin_memory().to(dev, non_blocking=True)
        shape, n_ids, n = (len(seqs), width), len(seqs) * width, len(rows)
        ids_t, pos_t, seg_t = (host[k * n_ids : (k + 1) * n_ids].view(shape) for k in range(3))
        rows_t, cols_t, targets_t = (
            host[3 * n_ids + k * n : 3 * n_ids + (k + 1) * n] for k in range(3)
        )
        if self.runner is not None:
            # Rows of one continuation need no tree: plain causal attention (the fast kernels).
            mask = tree_attention_mask(seg_t) if any(len(row) > 1 for row in batch) else None
            hidden, _ = self.runner.forward(ids_t, pos_t, prefix=prefix, mask=mask)
            logits = self.runner.lm_head(hidden[rows_t, cols_t]).float()
        else:  # the generic path: one request per row (packing needs the runner)
            logits = self.model(input_ids=ids_t, attention_mask=(seg_t >= 0).long()).logits
            logits = logits[rows_t, cols_t].float()
        return logits, targets_t

    @staticmethod
    def _collect(pairs, batch, token_lp, greedy, truncated, results) -> None:
        start = 0
        for i in batch:
            n = len(pairs[i][1])
            lp = token_lp[start : start + n]
            results[i] = ScoreResult(
                logprob=float(lp.double().sum()),
                token_logprobs=lp.tolist(),
                n_tokens=n,
                is_greedy=bool(greedy[start : start + n].all()),
                truncated=truncated[i],
            )
            start += n

    # -- top-k next-token distributions (the context-distillation teacher) ----------------------
    @torch.inference_mode()
    def topk_logprobs(
        self, prefix: Sequence[int], sequences: Sequence[Sequence[int]], k: int
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The model's top-k next-token log-probs and ids at every position of each sequence,
        all conditioned on one shared ``prefix`` (token ids; the HHH prompt + "Human:").

        For a sequence ``s`` of T tokens, row t of ``(logprobs [T, k] float32, ids [T, k]
        int64)`` is ``p(· | prefix, s[:t])``: row 0 is predicted by the prefix alone, row t
        scores ``s[t]``. With a block runner and ``prefix_reuse``, ``prefix[:-1]`` is encoded
        **once** per engine (kept for later calls with the same prefix; ``prefix_encodings``
        counts the encodings) and every batch runs only ``[prefix[-1], s[0], ..., s[T-2]]``
        against that K/V; ``prefix_reuse=False`` (or a model without a runner) re-encodes the
        prefix with every sequence, the way a per-sample teacher does. Sequences are batched
        longest first, ``batch_size`` at a time; results come back in input order.
        """
        vocab = self.runner.lm_head.out_features if self.runner is not None else None
        vocab = vocab or self.model.get_output_embeddings().weight.shape[0]  # type: ignore[operator]  # a transformers model, typed nn.Module
        errors = []
        if not prefix:
            errors.append("the prefix has no tokens (use the BOS token)")
        if not 1 <= k <= vocab:
            errors.append(f"k = {k} must lie in 1..{vocab} (the vocabulary)")
        for i, seq in enumerate(sequences):
            if not seq:
                errors.append(f"sequence {i}: no tokens")
            elif len(prefix) + len(seq) > self.max_length:
                errors.append(
                    f"sequence {i}: {len(prefix)} prefix + {len(seq)} tokens exceed the window of "
                    f"{self.max_length}"
                )
        _raise_collected(errors, len(sequences), "top-k requests are")
        prefix, p = list(prefix), len(prefix)
        reuse = self.runner is not None and self.prefix_reuse and p > 1
        kv = self._topk_prefix_kv(prefix[:-1]) if reuse else None
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(sequences)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if reuse:  # run [prefix[-1], s[:-1]] at positions p-1 .. against the prefix K/V
                rows = [[prefix[-1], *sequences[i][:-1]] for i in batch]
                first = p - 1
            else:  # the whole prefix again with every sequence
                rows = [[*prefix, *sequences[i][:-1]] for i in batch]
                first = 0
            width = max(len(r) for r in rows)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
            positions = (first + torch.arange(width, device=self.device))[None].expand(len(rows), -1)
            if self.runner is not None:
                hidden, _ = self.runner.forward(ids, positions, prefix=kv)
            else:  # generic path: a plain forward (right padding is harmless under causal attention)
                hidden = None
                logits_all = self.model(input_ids=ids).logits
            for row, i in enumerate(batch):
                lo = 0 if reuse else p - 1
                span = slice(lo, lo + len(sequences[i]))  # the positions predicting s[0..T-1]
                if hidden is not None:
                    assert self.runner is not None  # hidden comes from the runner
                    logits = self.runner.lm_head(hidden[row, span]).float()  # [T, V]
                else:
                    logits = logits_all[row, span].float()
                top, top_ids = F.log_softmax(logits, dim=-1).topk(k, dim=-1)
                out[i] = (top.cpu(), top_ids.cpu())
        return out  # type: ignore[return-value]

    def _topk_prefix_kv(self, tokens: list[int]) -> PrefixKV:
        """The shared prefix's K/V, encoded once and kept for the next call with the same tokens."""
        held = getattr(self, "_held_prefix", None)
        assert self.runner is not None  # called only when prefix reuse is on, which needs a runner
        if held is None or held.tokens != tokens:
            held = self.runner.encode_prefix(tokens, self.device)
            self._held_prefix = held
            self.prefix_encodings = getattr(self, "prefix_encodings", 0) + 1
        return held

    # -- generation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], config: GenerationConfig | None = None
    ) -> list[list[str]]:
        """Sample ``num_samples`` completions per prompt, each cut before its first stop sequence
        and never containing a banned string (``config.ban``).

        A sample stops at the end-of-text token, once its text contains a stop sequence, after
        ``max_new_tokens``, or when ``BAN_TRIES`` draws in a row each complete a banned string. Sample j of a prompt depends only on (seed, prompt, j): the same whatever the
        batch size or the other prompts in the call.
        """
        cfg = config or GenerationConfig()
        if cfg.num_samples < 1 or cfg.max_new_tokens < 0:
            raise RequestError(
                f"generation needs num_samples >= 1 and max_new_tokens >= 0, got {cfg}"
            )
        if isinstance(cfg.ban, str) or not all(isinstance(b, str) and b for b in cfg.ban):
            # A bare string would ban each of its characters; "" is in every text.
            raise RequestError(f"ban must be a sequence of non-empty strings, got {cfg.ban!r}")
        encoded, errors = [], []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                errors.append(f"prompt {i}: expected a string, got {type(prompt).__name__}")
                continue
            ids = self.encode(prompt) or [self.prefix_token_id]
            if len(ids) + cfg.max_new_tokens > self.max_length:
                errors.append(
                    f"prompt {i}: {len(ids)} tokens + {cfg.max_new_tokens} new exceed the "
                    f"window of {self.max_length}"
                )
            encoded.append(ids)
        _raise_collected(errors, len(prompts), "prompts are")
        out: list[list[str]] = [[] for _ in prompts]
        if cfg.max_new_tokens == 0:
            return [[""] * cfg.num_samples for _ in prompts]
        if self.runner is None:
            for i, ids in enumerate(encoded):
                out[i] = self._generate_generic(prompts[i], ids, cfg)
            return out
        per_chunk = max(1, max(self.batch_size, cfg.num_samples) // cfg.num_samples)
        groups = [PrefixGroup(0, list(range(len(prompts))))]
        if self.prefix_reuse:
            lengths = [len(ids) for ids in encoded]
            groups = plan_prefix_groups(
                encoded,
                lengths,
                limits=[n - 1 for n in lengths],
                min_prefix=self.min_prefix,
                group_overhead=self.prefix_overhead,
            )
        for group in groups:
            p = group.prefix_len
            prefix = (
                self.runner.encode_prefix(encoded[group.members[0]][:p], self.device) if p else None
            )
            members = sorted(group.members, key=lambda i: -len(encoded[i]))
            for start in range(0, len(members), per_chunk):
                chunk = members[start : start + per_chunk]
                texts = self._generate_blocks(
                    [prompts[i] for i in chunk], [encoded[i] for i in chunk], p, prefix, cfg
                )
                for i, t in zip(chunk, texts):
                    out[i] = t
        return out

    def _eos_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        cfg_eos = getattr(self.model.config, "eos_token_id", None)
        ids |= set(cfg_eos) if isinstance(cfg_eos, (list, tuple)) else {cfg_eos}
        return {i for i in ids if i is not None}

    def _generate_blocks(
        self,
        prompts: list[str],
        encoded: list[list[int]],
        p: int,
        prefix: PrefixKV | None,
        cfg: GenerationConfig,
    ) -> list[list[str]]:
        """Decode ``num_samples`` samples of each prompt against one prefix and one prompt cache."""
        runner, dev, n = self.runner, self.device, cfg.num_samples
        assert runner is not None  # the cached decoding path is chosen only with a runner
        rests = [ids[p:] for ids in encoded]
        k, width = len(rests), max(len(r) for r in rests)
        lens = torch.tensor([len(r) for r in rests], device=dev)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((k, width), pad, dtype=torch.long)
        for row, r in enumerate(rests):
            ids[row, : len(r)] = torch.tensor(r)
        cache = runner.new_cache(k, width + cfg.max_new_tokens, dev, self.lm.dtype)
        cache.valid[:, :width] = torch.arange(width, device=dev)[None] < lens[:, None]
        causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()[None, None]
        positions = (p + torch.arange(width, device=dev))[None].expand(k, width)
        hidden, _ = runner.forward(ids.to(dev), positions, prefix=prefix, cache=cache, mask=causal)
        logits = runner.lm_head(hidden[torch.arange(k, device=dev), lens - 1]).float()
        # Every sample of a prompt starts from the same prompt cache: repeat rows, not compute.
        rows = torch.arange(k, device=dev).repeat_interleave(n)
        cache, logits, lens = cache.select(rows), logits[rows], lens[rows]
        gens = [g for prompt in prompts for g in make_generators(cfg.seed, prompt, n, dev)]
        tracker = _Samples(self.tokenizer, k * n, cfg.stop, self._eos_ids(), cfg.ban)
        active = list(range(k * n))
        for step in range(cfg.max_new_tokens):
            tok, keep = self._sample(tracker, active, logits, gens, cfg)
            if step == cfg.max_new_tokens - 1 or not keep:
                break
            if len(keep) < len(active):
                sel = torch.tensor(keep, device=dev)
                cache, tok, lens = cache.select(sel), tok[sel], lens[sel]
                gens = [gens[j] for j in keep]
                active = [active[j] for j in keep]
            slot = cache.length
            cache.valid[:, slot] = True
            positions = (p + lens + step)[:, None]
            hidden, _ = runner.forward(
                tok[:, None],
                positions,
                prefix=prefix,
                cache=cache,
                mask=cache.valid[:, None, None, : slot + 1],
            )
            logits = runner.lm_head(hidden[:, -1]).float()
        texts = tracker.texts()
        return [texts[i * n : (i + 1) * n] for i in range(k)]

    def _generate_generic(self, prompt: str, ids: list[int], cfg: GenerationConfig) -> list[str]:
        """Fallback for architectures without a block runner: transformers' own KV cache."""
        n = cfg.num_samples
        x = torch.tensor([ids] * n, device=self.device)
        # transformers >= 5.2x renamed past_key_values to cache; accept either.
        cache_kw = (
            "cache"
            if "cache" in inspect.signature(self.model.forward).parameters
            else "past_key_values"
        )
        out = self.model(input_ids=x, use_cache=True)
        past, logits = out.get(cache_kw), out.logits[:, -1].float()
        gens = make_generators(cfg.seed, prompt, n, self.device)
        tracker = _Samples(self.tokenizer, n, cfg.stop, self._eos_ids(), cfg.ban)
        for step in range(cfg.max_new_tokens):
            tok, keep = self._sample(tracker, list(range(n)), logits, gens, cfg)
            if not keep or step == cfg.max_new_tokens - 1:
                break
            out = self.model(input_ids=tok[:, None], use_cache=True, **{cache_kw: past})
            past, logits = out.get(cache_kw), out.logits[:, -1].float()
        return tracker.texts()

    @staticmethod
    def _sample(
        tracker: _Samples,
        rows: list[int],
        logits: torch.Tensor,
        gens: Sequence[torch.Generator],
        cfg: GenerationConfig,
    ) -> tuple[torch.Tensor, list[int]]:
        """Draw and record one token for each of ``rows`` (``logits[j]``: sample ``rows[j]``'s
        next-token logits, drawn with ``gens[j]``); return the tokens and the positions (in
        ``rows``) still going.

        A token that would complete a banned string is not recorded: its logit is set to -inf in
        a copy of that one row, which is drawn again from its own generator (top-p over what is
        left; greedy: the next-best token), up to ``BAN_TRIES`` times. Other rows draw nothing
        more, so a sample's tokens still depend only on its own logits and generator, never on
        its batch. A row whose every try fails (or with no token left) ends where it is, as at
        end-of-text: its text stays free of banned strings, only shorter.
        """
        tok = next_tokens(logits, temperature=cfg.temperature, top_p=cfg.top_p, generators=gens)
        keep, banned = tracker.add(rows, tok.tolist())
        for j in banned:
            row, t, ended = logits[j].clone(), int(tok[j]), True
            for _ in range(BAN_TRIES):
                row[t] = float("-inf")
                if bool(torch.isneginf(row).all()):
                    break
                t = int(
                    next_tokens(
                        row[None],
                        temperature=cfg.temperature,
                        top_p=cfg.top_p,
                        generators=[gens[j]],
                    )[0]
                )
                still, again = tracker.add([rows[j]], [t])
                if not again:
                    tok[j], ended = t, False
                    keep += [j] if still else []
                    break
            if ended:
                tracker.end(rows[j])
        return tok, sorted(keep)


class _Samples:
    """Per-sample generated tokens, text and stop state.

    With stop sequences or banned strings, ``add`` decodes a sample's text once per candidate
    token and uses that one decode for both checks; without either it decodes nothing."""

    def __init__(
        self, tokenizer, n: int, stop: Sequence[str], eos: set[int], ban: Sequence[str] = ()
    ):
        self.tokenizer, self.stop, self.eos, self.ban = tokenizer, tuple(stop), eos, tuple(ban)
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.text = [""] * n  # decoded tokens (kept up to date only with stops or bans)
        self.done = [False] * n

    def add(self, rows: list[int], toks: list[int]) -> tuple[list[int], list[int]]:
        """Record one token for each of ``rows``. Return the positions (in ``rows``) still going,
        and those whose token would complete a banned string: not recorded, to be redrawn."""
        keep, banned = [], []
        for j, (r, t) in enumerate(zip(rows, toks)):
            if self.done[r]:
                continue
            if t in self.eos:
                self.done[r] = True
                continue
            if self.stop or self.ban:
                text = self._decode(self.tokens[r] + [t])
                if completes_ban(self.text[r], text, self.ban):
                    banned.append(j)
                    continue
                self.text[r] = text
            self.tokens[r].append(t)
            if self.stop and hits_stop(self.text[r], self.stop):
                self.done[r] = True
                continue
            keep.append(j)
        return keep, banned

    def end(self, r: int) -> None:
        """Stop sample ``r`` without a further token (no draw avoided a banned string)."""
        self.done[r] = True

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def texts(self) -> list[str]:
        if self.stop or self.ban:
            return [cut_at_stop(t, self.stop) for t in self.text]
        return [self._decode(t) for t in self.tokens]
