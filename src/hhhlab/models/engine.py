"""The scoring and generation engine every eval and experiment runs on.

Evals build requests (context, continuation) and hand them to one engine, which batches them
(dynamic padding, longest first so an out-of-memory error comes in the first batch), and
returns per-request log-probs. Tokenisation follows lm-evaluation-harness: trailing spaces of the
context move to the continuation, the pair is encoded whole, and the continuation's tokens are
those past the context's encoding; an empty context is replaced by the BOS/EOS token.

NOTE: this first version scores each request in full; shared-prefix reuse lands next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hhhlab.errors import RequestError
from hhhlab.models.load import LoadedModel


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


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    num_samples: int = 1
    stop: Sequence[str] = field(default_factory=tuple)
    seed: int = 0


def _as_request(r: ScoreRequest | tuple[str, str]) -> ScoreRequest:
    return r if isinstance(r, ScoreRequest) else ScoreRequest(*r)


class Engine:
    def __init__(
        self,
        lm: LoadedModel,
        *,
        batch_size: int = 16,
        max_length: int | None = None,
        truncation: str = "error",
        progress: bool = False,
    ):
        if truncation not in ("error", "left"):
            raise ValueError("truncation must be 'error' or 'left'")
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.batch_size = batch_size
        self.max_length = max_length or lm.max_length
        self.truncation = truncation
        self.progress = progress

    # -- tokenisation ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    @property
    def prefix_token_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def encode_pair(self, context: str, continuation: str, index: int = 0) -> tuple[list[int], list[int]]:
        """Context and continuation token ids, split the way lm-evaluation-harness splits them."""
        if continuation == "":
            raise RequestError(f"request {index}: the continuation is empty")
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces > 0:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        if context == "":
            return [self.prefix_token_id], self.encode(continuation)
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        ctx_len = len(ctx)
        # The BPE may merge across the boundary; take the continuation as whatever lies past it.
        cont = whole[ctx_len:]
        if not cont:
            raise RequestError(f"request {index}: continuation {continuation!r} has no tokens of its own")
        return whole[:ctx_len], cont

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
    def score(self, requests: Sequence[ScoreRequest | tuple[str, str]], desc: str = "scoring") -> list[ScoreResult]:
        reqs = [_as_request(r) for r in requests]
        encoded = []
        for i, r in enumerate(reqs):
            ctx, cont = self.encode_pair(r.context, r.continuation, i)
            ctx, dropped = self._fit(ctx, cont, i)
            encoded.append((ctx, cont, dropped))
        return self.score_tokens([(c, k) for c, k, _ in encoded], truncated=[d for *_, d in encoded], desc=desc)

    @torch.inference_mode()
    def score_tokens(
        self, pairs: Sequence[tuple[list[int], list[int]]], *, truncated: Sequence[int] | None = None,
        desc: str = "scoring",
    ) -> list[ScoreResult]:
        from tqdm.auto import tqdm

        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        results: list[ScoreResult | None] = [None] * len(pairs)
        bar = tqdm(total=len(pairs), desc=desc, disable=not self.progress, leave=False)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            seqs = [pairs[i][0] + pairs[i][1] for i in idx]
            width = max(len(s) for s in seqs)
            pad = self.tokenizer.pad_token_id
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, s in enumerate(seqs):
                ids[row, : len(s)] = torch.tensor(s)
                mask[row, : len(s)] = 1
            logits = self.model(input_ids=ids.to(self.lm.device), attention_mask=mask.to(self.lm.device)).logits
            logp = F.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(idx):
                ctx, cont = pairs[i]
                positions = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1, device=logp.device)
                target = torch.tensor(cont, device=logp.device)
                lp = logp[row, positions]
                token_lp = lp.gather(-1, target[:, None])[:, 0]
                greedy = bool((lp.argmax(-1) == target).all())
                results[i] = ScoreResult(
                    logprob=float(token_lp.sum()), token_logprobs=token_lp.tolist(), n_tokens=len(cont),
                    is_greedy=greedy, truncated=truncated[i] if truncated else 0,
                )
            bar.update(len(idx))
        bar.close()
        return results  # type: ignore[return-value]

    # -- generation ----------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], config: GenerationConfig | None = None) -> list[list[str]]:
        """Sample ``num_samples`` completions per prompt, cut at the first stop sequence."""
        cfg = config or GenerationConfig()
        out: list[list[str]] = []
        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        for p_i, prompt in enumerate(prompts):
            ids = self.encode(prompt) or [self.prefix_token_id]
            if len(ids) + cfg.max_new_tokens > self.max_length:
                raise RequestError(f"prompt {p_i}: {len(ids)} tokens + {cfg.max_new_tokens} new exceed the window")
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            x = torch.tensor([ids] * cfg.num_samples, device=self.lm.device)
            do_sample = cfg.temperature > 0
            seqs = self.model.generate(
                input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=cfg.max_new_tokens,
                do_sample=do_sample, temperature=cfg.temperature if do_sample else None,
                top_p=cfg.top_p if do_sample else None, pad_token_id=self.tokenizer.pad_token_id,
            )
            texts = self.tokenizer.batch_decode(seqs[:, len(ids):], skip_special_tokens=True)
            out.append([cut_at_stop(t, cfg.stop) for t in texts])
        return out


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut]
