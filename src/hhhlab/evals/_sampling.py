"""What the sampling evals (toxicity, humaneval, quixbugs) share: their common options
(`SamplingOptions`) and chunked sampling.

They override ``Eval.run_items``: each chunk of items becomes one ``engine.generate`` call (so
the engine batches the samples and shares the long HHH-prompt prefix across items), and each
item's result is yielded as soon as its chunk is scored, so the runner stores it and a crash
loses at most one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Annotated

from pydantic import Field

from hhhlab.evals.base import EvalContext, EvalOptions, Item
from hhhlab.models.engine import GenerationConfig

# The sampling options' types and ranges, declared once: an eval that sets its paper's defaults
# re-annotates a field with these (``samples: Samples = 25``) and keeps the checks.
Samples = Annotated[int, Field(ge=1, description="samples per prompt (per problem, for the code evals)")]
MaxNewTokens = Annotated[int, Field(ge=1, description="tokens per sample at most")]
Temperature = Annotated[float, Field(ge=0, description="sampling temperature (0: greedy)")]
TopP = Annotated[float, Field(gt=0, le=1, description="nucleus sampling mass")]


class SamplingOptions(EvalOptions):
    """The options every sampling eval has; each eval's subclass sets the paper's defaults."""

    samples: Samples = 1
    max_new_tokens: MaxNewTokens = 1
    temperature: Temperature = 1.0
    top_p: TopP = 1.0


def sample_chunks(
    items: Sequence[Item],
    ctx: EvalContext,
    prompt_of: Callable[[Item], str],
    config: GenerationConfig,
    chunk_items: int,
) -> Iterator[tuple[Item, list[str]]]:
    """``(item, samples)`` for every item, ``config.num_samples`` samples each, one
    ``engine.generate`` call per ``chunk_items`` items. Sample j of an item depends only on
    (seed, prompt, j) (the engine's contract), so chunking and resuming do not change results."""
    for start in range(0, len(items), chunk_items):
        chunk = items[start : start + chunk_items]
        samples = ctx.engine.generate([prompt_of(it) for it in chunk], config)
        yield from zip(chunk, samples)
