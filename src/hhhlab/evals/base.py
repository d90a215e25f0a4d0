"""The eval interface: a registry of small eval modules, the context they run in, and results.

The path of data (STYLE.md): source file -> ``Item`` s -> score requests -> engine -> per-item
result -> metrics with CIs -> results store -> report. This module defines each arrow's types;
``runner.py`` drives them; one file per eval (``hhh_alignment.py``, ``truthfulqa.py``, ...)
fills them in.

Writing an eval (one file under ``hhhlab/evals/``, discovered automatically)::

    @register("my_eval")
    class MyEval(Eval):
        description = "what it measures"

        def load(self, ctx: EvalContext) -> list[Item]:
            ...  # read ctx.data_dir / the hub / the BIG-bench cache (see sources.py)

        def requests(self, item: Item, ctx: EvalContext) -> list[ScoreRequest]:
            ...  # contexts built with ctx.frame(...) when ctx.framed (prompt / distilled)

        def score(self, item: Item, results: list[ScoreResult], ctx: EvalContext) -> dict:
            ...  # a JSON-able result, e.g. {"logprobs": [...], "correct": 1.0}

        def item_metrics(self, result: dict) -> dict[str, float]:
            ...  # per-item values whose *means* are the metrics, e.g. {"acc": 1.0}

Log-likelihood evals implement ``requests`` and ``score`` and inherit ``run_items``, which hands
requests to the engine in chunks (so the engine can batch them and reuse shared prefixes such as
the HHH prompt). Generation evals (toxicity, code) override ``run_items`` instead and yield
``(item, result)`` pairs as they finish. Either way the runner stores every result in the run
under a key that names model, condition, format variant, eval and item id; a resumed run skips
keys it already has and an eval that fails mid-way keeps what it stored.

Metrics: by default every key of ``item_metrics`` is averaged over the items that report it and
bootstrapped (``stats.bootstrap``), so each metric is a ``stats.Estimate`` (value, 95% CI, n),
and paired differences between conditions (prompt - plain) are computed on the same item ids
(``stats.paired_difference``). A metric that is not a mean over items (BBQ's bias score) is added
by overriding ``aggregate``; it then has a CI but no paired difference.

Conditions (the paper's three): ``plain`` (the LM as is), ``prompt`` (HHH prompt + the item in
Human/Assistant framing) and ``distilled:PATH`` (a context-distilled model at PATH, which sees
the Human/Assistant framing without the prompt). ``ctx.frame(human, assistant_prefix)`` builds
the framed context for the current condition and format variant; what ``plain`` looks like is
each eval's choice (documented in docs/evals.md).

Options (``--eval-option KEY=VALUE``): each eval declares a typed pydantic model ``Options``
(a subclass of `EvalOptions`: defaults, types, ranges; unknown keys are an error). An eval reads
its options one way, ``self.opts(ctx)``, which merges the constructor's options with the run's
``ctx.options`` (``"<eval>.<key>"`` for one eval, a bare ``"<key>"`` for every eval of the run
that declares it) and validates them. `check_options` refuses, before anything runs, a key that
no eval of the run declares.
"""

from __future__ import annotations

import importlib
import pkgutil
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from hhhlab.errors import DataError, HHHLabError, describe_validation_error
from hhhlab.stats import Estimate, bootstrap

if TYPE_CHECKING:
    from hhhlab.models.engine import Engine, ScoreRequest, ScoreResult
    from hhhlab.prompts import FormatVariant, Prompt
    from hhhlab.store import Run

CONDITION_KINDS = ("plain", "prompt", "distilled")
# Modules of this package that are infrastructure, not evals (everything else is imported by
# ``load_all`` so that its ``@register`` runs).
_INFRA = {"base", "cli", "runner", "sources", "fetch", "report"}


# -- conditions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """``plain``, ``prompt`` or ``distilled`` (with the distilled model's path or spec)."""

    kind: str
    model_path: str | None = None

    @property
    def label(self) -> str:
        return self.kind

    @property
    def framed(self) -> bool:
        """Prompted and distilled models see each item as a Human/Assistant exchange."""
        return self.kind != "plain"

    @staticmethod
    def parse(text: str) -> Condition:
        text = text.strip()
        if text in ("plain", "prompt"):
            return Condition(text)
        if text.startswith("distilled:") and text.split(":", 1)[1].strip():
            return Condition("distilled", text.split(":", 1)[1].strip())
        raise HHHLabError(
            f"unknown condition {text!r}: use plain, prompt or distilled:PATH (a distilled model's path)"
        )


def parse_conditions(text: str) -> list[Condition]:
    """``"plain,prompt,distilled:/ckpt"`` -> three conditions (no duplicates)."""
    out: list[Condition] = []
    for part in text.split(","):
        if part.strip():
            cond = Condition.parse(part)
            if cond in out:
                raise HHHLabError(f"condition {part.strip()!r} is given twice in {text!r}")
            out.append(cond)
    if not out:
        raise HHHLabError("no condition given: use plain, prompt and/or distilled:PATH")
    if sum(c.kind == "distilled" for c in out) > 1:
        raise HHHLabError(f"{text!r}: give at most one distilled:PATH per run")
    return out


# -- items and context ---------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One eval item: a stable id (unique within the eval, the same across conditions, so results
    can be paired and a resumed run can skip it) and the parsed fields the eval needs."""

    id: str
    data: dict[str, Any]


@dataclass
class EvalContext:
    """Everything an eval needs to run one (model, condition, format variant)."""

    engine: Engine
    condition: Condition = field(default_factory=lambda: Condition("plain"))
    prompt: Prompt | None = None  # the HHH prompt; used only when condition.kind == "prompt"
    data_dir: Path | None = None  # a local copy laid out like shared/data; None = hub / cache
    limit: int | None = None  # evaluate a seeded random subset of this many items
    seed: int = 0
    batch_size: int = 16
    progress: bool = False
    run: Run | None = None  # results store run for item-level results and resume
    variant: FormatVariant | None = None  # a prompt-format variant (--format-variants)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def framed(self) -> bool:
        return self.condition.framed

    def frame(self, human_text: str, assistant_prefix: str = "") -> str:
        """The context for one item under this condition: HHH prompt (when prompted) + the item as
        one more Human/Assistant exchange; ``assistant_prefix`` is appended raw (include its
        leading space). Only meaningful when ``framed``."""
        from hhhlab.prompts import format_query

        prompt = self.prompt if self.condition.kind == "prompt" else None
        if self.condition.kind == "prompt" and prompt is None:
            raise HHHLabError("the prompt condition needs a prompt (load_prompt())")
        if self.variant is not None:
            return self.variant.render(prompt, human_text, assistant_prefix)
        return format_query(prompt, human_text, assistant_prefix)


# -- options ----------------------------------------------------------------------------------
class EvalOptions(BaseModel):
    """An eval's options: subclass with typed fields and defaults (the paper's protocol)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def options_for(name: str, fields: Any, raw: dict[str, Any]) -> dict[str, Any]:
    """The entries of a run's raw options that concern eval ``name``: bare keys it declares
    (in ``fields``), then ``"<name>.<key>"`` entries (which win, and may name unknown keys: the
    validation then refuses them)."""
    out = {k: v for k, v in raw.items() if "." not in k and k in fields}
    for k, v in raw.items():
        ev, dot, key = k.partition(".")
        if dot and ev == name:
            out[key] = v
    return out


def parse_options(name: str, cls: type[EvalOptions], values: dict[str, Any]) -> EvalOptions:
    try:
        return cls(**values)
    except ValidationError as exc:
        known = ", ".join(cls.model_fields) or "none"
        raise HHHLabError(f"{name}: invalid option(s): {describe_validation_error(exc, 'option', show_input='inline')} "
                          f"(options of {name}: {known})") from None


def check_options(evals: Sequence[str], raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each eval's options from a run's ``--eval-option`` dict, validated; a key that names an
    eval not in the run, or that no eval of the run declares, is an error naming it."""
    classes = {n: (REGISTRY.get(n) or type(get_eval(n))) for n in evals}
    for key in raw:
        ev, dot, _ = key.partition(".")
        if dot and ev not in classes:
            raise HHHLabError(f"--eval-option {key}: {ev!r} is not among the evals run ({', '.join(evals)})")
        if not dot and not any(key in c.Options.model_fields for c in classes.values()):
            declared = sorted({f for c in classes.values() for f in c.Options.model_fields})
            raise HHHLabError(f"--eval-option {key}: no eval of this run has that option "
                              f"(theirs: {', '.join(declared) or 'none'})")
    out = {}
    for n, c in classes.items():
        out[n] = options_for(n, c.Options.model_fields, raw)
        parse_options(n, c.Options, out[n])
    return out


# -- the eval base class ---------------------------------------------------------------------
class Eval:
    """Base class of every eval; see the module docstring for what to override."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[EvalOptions]] = EvalOptions
    # Items per engine call in the default ``run_items``: large enough for the engine to batch
    # and reuse prefixes, small enough that a crash loses little and progress moves.
    chunk_items: ClassVar[int] = 64

    def __init__(self, **options: Any):
        self.options = dict(options)
        parse_options(self.name, self.Options, self.options)  # bad options fail here, not mid-run

    def opts(self, ctx: EvalContext | None = None) -> EvalOptions:
        """This eval's validated options under ``ctx``: the run's ``ctx.options`` over the
        constructor's over the defaults (see the module docstring). The one way evals read them."""
        values = dict(self.options)
        if ctx is not None and ctx.options:
            values.update(options_for(self.name, self.Options.model_fields, ctx.options))
        return parse_options(self.name, self.Options, values)

    # to implement ------------------------------------------------------------------------
    def load(self, ctx: EvalContext) -> list[Item]:
        raise NotImplementedError

    def requests(self, item: Item, ctx: EvalContext) -> list[ScoreRequest]:
        raise NotImplementedError(f"{self.name}: implement requests() or override run_items()")

    def score(self, item: Item, results: list[ScoreResult], ctx: EvalContext) -> dict:
        raise NotImplementedError(f"{self.name}: implement score() or override run_items()")

    def item_metrics(self, result: dict) -> dict[str, float]:
        raise NotImplementedError

    # defaults ----------------------------------------------------------------------------
    def run_items(self, items: Sequence[Item], ctx: EvalContext) -> Iterator[tuple[Item, dict]]:
        """Score items chunk by chunk through the engine and yield each item's result."""
        for start in range(0, len(items), self.chunk_items):
            chunk = items[start : start + self.chunk_items]
            reqs: list[ScoreRequest] = []
            spans: list[tuple[int, int]] = []
            for item in chunk:
                r = self.requests(item, ctx)
                spans.append((len(reqs), len(reqs) + len(r)))
                reqs.extend(r)
            results = ctx.engine.score(reqs, desc=self.name)
            for item, (a, b) in zip(chunk, spans):
                yield item, self.score(item, results[a:b], ctx)

    def aggregate(self, results: dict[str, dict], *, seed: int = 0) -> dict[str, Estimate]:
        """Each per-item metric averaged over the items that report it, with a bootstrap CI."""
        per_metric = self.metric_values(results)
        return {name: bootstrap(list(vals.values()), seed=seed) for name, vals in per_metric.items()}

    def metric_values(self, results: dict[str, dict]) -> dict[str, dict[str, float]]:
        """metric -> {item id -> value}: the paired unit for differences between conditions."""
        out: dict[str, dict[str, float]] = {}
        for item_id in sorted(results):
            for name, value in self.item_metrics(results[item_id]).items():
                if value is None or (isinstance(value, float) and np.isnan(value)):
                    continue
                out.setdefault(name, {})[item_id] = float(value)
        return out


class MultipleChoiceEval(Eval):
    """An eval whose items are questions with several answers scored as continuations.

    Items carry ``choices`` (answer strings), ``labels`` (each answer's target score, 1 = right)
    and optionally ``meta`` (category etc.); subclasses say how the context looks under each
    condition (``context``) and, for the mutual-information rule, the context with the query
    removed (``null_context``: ``None`` when the eval has no such rule). Each answer is scored
    as ``" " + answer`` (lm-evaluation-harness's target delimiter). The stored result holds the
    summed log-prob, token count and character length of every answer (and the unconditional
    log-prob), so every scoring rule can be recomputed from the store without the model."""

    def context(self, item: Item, ctx: EvalContext) -> str:
        raise NotImplementedError

    def null_context(self, item: Item, ctx: EvalContext) -> str | None:
        return None

    def continuation(self, choice: str) -> str:
        return " " + choice

    def requests(self, item: Item, ctx: EvalContext) -> list[ScoreRequest]:
        from hhhlab.models.engine import ScoreRequest

        context = self.context(item, ctx)
        reqs = [ScoreRequest(context, self.continuation(c)) for c in item.data["choices"]]
        null = self.null_context(item, ctx)
        if null is not None:
            reqs += [ScoreRequest(null, self.continuation(c)) for c in item.data["choices"]]
        return reqs

    def score(self, item: Item, results: list[ScoreResult], ctx: EvalContext) -> dict:
        k = len(item.data["choices"])
        out = {
            "labels": item.data["labels"],  # target score of each answer (1 = right)
            "meta": item.data.get("meta", {}),  # category etc., for per-group metrics
            "logprobs": [r.logprob for r in results[:k]],
            "n_tokens": [r.n_tokens for r in results[:k]],
            "n_chars": [len(c) for c in item.data["choices"]],
            "greedy": [r.is_greedy for r in results[:k]],
        }
        if len(results) > k:
            out["null_logprobs"] = [r.logprob for r in results[k:]]
        return out


# -- registry ---------------------------------------------------------------------------------
REGISTRY: dict[str, type[Eval]] = {}


def register(name: str):
    """Class decorator: ``@register("hhh_alignment")`` makes the eval available by name."""

    def deco(cls: type[Eval]) -> type[Eval]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"eval {name!r} is registered twice ({REGISTRY[name].__module__}, {cls.__module__})")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return deco


def load_all() -> dict[str, type[Eval]]:
    """Import every eval module of this package so that their ``@register`` calls run."""
    import hhhlab.evals as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name not in _INFRA and not mod.name.startswith("_"):
            importlib.import_module(f"hhhlab.evals.{mod.name}")
    return REGISTRY


def get_eval(name: str, **options: Any) -> Eval:
    if name not in REGISTRY:
        load_all()
    if name not in REGISTRY:
        raise HHHLabError(f"unknown eval {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**options)


def parse_evals(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise HHHLabError("no eval given (--evals hhh_alignment,truthfulqa_mc1,...)")
    load_all()
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise HHHLabError(f"unknown eval(s) {', '.join(unknown)}; available: {', '.join(sorted(REGISTRY))}")
    return list(dict.fromkeys(names))


# -- helpers shared by evals ----------------------------------------------------------------
def select(items: list[Item], limit: int | None, seed: int = 0) -> list[Item]:
    """A seeded random subset of ``limit`` items, kept in source order (so ``--limit`` samples
    every category of a task, not just the first file), or all items. Duplicate ids are a bug
    in the loader or the data, reported here rather than silently merged."""
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise DataError(f"duplicate item id {it.id!r}")
        seen.add(it.id)
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 1:
        raise HHHLabError(f"--limit must be at least 1, got {limit}")
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the first (as numpy and lm-eval do)."""
    return int(np.argmax(np.asarray(values, dtype=float)))
