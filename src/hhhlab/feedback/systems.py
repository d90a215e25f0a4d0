"""The systems under test: a model under a condition, loaded once, generating one pass at a time.

A *system* is what a rater compares: ``MODEL/plain`` (the bare Human/Assistant exchange),
``MODEL/prompt`` (the HHH prompt, then the conversation as one more dialogue) or
``MODEL/distilled`` (a context-distilled checkpoint, loaded like any other model with
``load_model(DIR)``, seeing the bare exchange as it was trained to). Conditions are parsed by
``hhhlab.evals.base.parse_conditions``, so ``serve`` and ``eval`` accept the same strings
(``distilled:ckpts/{model}`` names one checkpoint per model).

Multi-turn framing goes through ``hhhlab.prompts.format_query``: the first human turn is the
query and the rest of the conversation is the assistant prefix, so turn N looks exactly like the
prompt's own dialogues::

    <prompt><sep>Human: h0\\n\\nAssistant: a0\\n\\nHuman: h1\\n\\nAssistant:

Sampling is the paper's (§2.4): T = 1, top-p = 0.95, stopping where the model starts the next
"Human:" turn (``prompts.STOP_SEQUENCES``). The tokens of the HHH prompt are encoded once per
prompted system and kept (the engine's ``PrefixKV``), so each reply runs only the conversation.

One lock serialises every forward pass: two raters on one CPU never run two generations at once
(they would each take twice as long and thrash the caches); the wait is recorded as ``queue_s``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from hhhlab.errors import HHHLabError, ModelLoadError, RequestError
from hhhlab.evals.base import Condition
from hhhlab.feedback.framing import Turns, frame_conversation
from hhhlab.models.engine import Engine, GenerationConfig
from hhhlab.models.load import LoadedModel, load_model
from hhhlab.prompts import STOP_SEQUENCES, Prompt


@dataclass
class Sampling:
    """The paper's sampling settings (stored with every comparison)."""

    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 128
    stop: tuple[str, ...] = STOP_SEQUENCES

    def config(self, seed: int) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                                stop=self.stop, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass
class System:
    """One model under one condition."""

    name: str
    model: str  # the model spec the weights came from (the distilled checkpoint for distilled)
    base_model: str  # the --models entry it belongs to (the x-axis of Fig 9)
    condition: str  # plain, prompt or distilled
    lm: LoadedModel
    engine: Engine
    prompt: Prompt | None = None
    _prefix: Any = field(default=None, repr=False)  # PrefixKV of the prompt's tokens, made on first use

    def context(self, turns: Turns, message: str) -> str:
        return frame_conversation(self.prompt, turns, message)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, "condition": self.condition,
                "non_embedding_params": int(self.lm.non_embedding_params),
                "prompt_version": self.prompt.version if self.prompt else None,
                "info": {"base_model": self.base_model, "caveats": list(self.lm.caveats),
                         "dtype": str(self.lm.dtype).removeprefix("torch.")}}

    def generate(self, context: str, sampling: Sampling, seed: int) -> str:
        """One sampled reply (stripped of surrounding whitespace), or RequestError if too long."""
        eng, cfg = self.engine, sampling.config(seed)
        ids = eng.encode(context) or [eng.prefix_token_id]
        if len(ids) + cfg.max_new_tokens > eng.max_length:
            raise RequestError(f"the conversation is {len(ids)} tokens; with {cfg.max_new_tokens} new tokens it "
                               f"exceeds {self.name}'s window of {eng.max_length}: start a new conversation")
        import torch

        with torch.inference_mode():
            prefix = self._prompt_prefix()
            if prefix is not None and len(prefix.tokens) < len(ids) and ids[: len(prefix.tokens)] == prefix.tokens:
                # The engine's own decoding against a kept prefix (Engine.generate re-encodes it per call).
                texts = eng._generate_blocks([context], [ids], len(prefix.tokens), prefix, cfg)[0]
            else:
                texts = eng.generate([context], cfg)[0]
        return texts[0].strip()

    def warm(self) -> None:
        """Encode the prompt's tokens now, so the first rater does not wait for it."""
        import torch

        with torch.inference_mode():
            self._prompt_prefix()

    def _prompt_prefix(self):
        if self.prompt is None or self.engine.runner is None:
            return None
        if self._prefix is None:
            tokens = self.engine.encode(self.prompt.text)[:-1]  # the last token may merge with what follows
            if len(tokens) < 16:
                return None
            self._prefix = self.engine.runner.encode_prefix(tokens, self.engine.device)
        return self._prefix


Generator = Callable[[System, str, Sampling, int], str]


class SystemPool:
    """Every system of a ``serve`` run, with the one generation lock."""

    def __init__(self, systems: list[System], sampling: Sampling | None = None):
        if len(systems) < 2:
            raise HHHLabError(f"an A/B comparison needs at least two systems, got {len(systems)} "
                              f"({', '.join(s.name for s in systems) or 'none'}): give more --models or --conditions")
        names = [s.name for s in systems]
        if len(set(names)) != len(names):
            raise HHHLabError(f"systems named twice: {names}")
        self.systems = {s.name: s for s in systems}
        self.sampling = sampling or Sampling()
        self.lock = threading.Lock()
        self.generator: Generator = lambda system, ctx, sampling, seed: system.generate(ctx, sampling, seed)

    @property
    def names(self) -> list[str]:
        return list(self.systems)

    def generate_pair(self, a: str, b: str, turns: Turns, message: str) -> dict[str, Any]:
        """Both replies, generated back to back under the lock, with their latencies and seeds.

        Neither is returned before both exist: the page reveals them together, at the pace of
        the slower (paper §2.4)."""
        sa, sb = self.systems[a], self.systems[b]
        ctx_a, ctx_b = sa.context(turns, message), sb.context(turns, message)
        seed = secrets.randbits(31)
        t0 = time.perf_counter()
        with self.lock:
            queue_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            text_a = self.generator(sa, ctx_a, self.sampling, seed)
            t2 = time.perf_counter()
            text_b = self.generator(sb, ctx_b, self.sampling, seed)
            t3 = time.perf_counter()
        return {"response_a": text_a, "response_b": text_b, "latency_a_s": t2 - t1, "latency_b_s": t3 - t2,
                "queue_s": queue_s, "sampling": {**self.sampling.to_dict(), "seed": seed}}


def _distilled_spec(cond: Condition, model: str, n_models: int) -> str:
    from hhhlab.evals.runner import _distilled_spec as spec  # one rule for eval and serve

    return spec(cond, model, n_models)


def load_systems(models: list[str], conditions: list[Condition], prompt: Prompt | None, *, dtype: str = "auto",
                 device: str | None = "auto", log: Callable[[str], None] = lambda m: None) -> list[System]:
    """Load every model once and build a system per (model, condition)."""
    loaded: dict[str, LoadedModel] = {}
    engines: dict[str, Engine] = {}

    def get(spec: str) -> tuple[LoadedModel, Engine]:
        if spec not in loaded:
            log(f"loading {spec}")
            try:
                loaded[spec] = load_model(spec, dtype=dtype, device=device)
            except ModelLoadError:
                raise
            except Exception as exc:
                raise ModelLoadError(f"cannot load model {spec!r}: {type(exc).__name__}: {exc}") from exc
            engines[spec] = Engine(loaded[spec], batch_size=1)
        return loaded[spec], engines[spec]

    out: list[System] = []
    for model in models:
        for cond in conditions:
            spec = _distilled_spec(cond, model, len(models)) if cond.kind == "distilled" else model
            lm, eng = get(spec)
            if cond.kind == "prompt" and prompt is None:
                raise HHHLabError("the prompt condition needs --prompt (hhh for the built-in HHH prompt)")
            out.append(System(name=f"{model}/{cond.kind}", model=spec, base_model=model, condition=cond.kind,
                              lm=lm, engine=eng, prompt=prompt if cond.kind == "prompt" else None))
    for system in out:
        if system.prompt is not None:
            log(f"encoding the prompt for {system.name}")
            system.warm()
    return out
