"""What the sampling evals (toxicity, humaneval, quixbugs) share: options and chunked sampling.

They override ``Eval.run_items``: each chunk of items becomes one ``engine.generate`` call (so
the engine batches the samples and shares the long HHH-prompt prefix across items), and each
item's result is yielded as soon as its chunk is scored, so the runner stores it and a crash
loses at most one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hhhlab.errors import HHHLabError
from hhhlab.evals.base import Eval, EvalContext, Item
from hhhlab.models.engine import GenerationConfig


def option(ev: Eval, ctx: EvalContext, key: str, default: Any) -> Any:
    """An eval option: ``ctx.options["<eval>.<key>"]``, then ``ctx.options[key]``, then the
    eval's constructor options, then the paper's default; converted to the default's type."""
    for source, name in ((ctx.options, f"{ev.name}.{key}"), (ctx.options, key), (ev.options, key)):
        if name in source and source[name] is not None:
            value = source[name]
            break
    else:
        return default
    if default is None or isinstance(value, type(default)):
        return value
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise HHHLabError(
            f"{ev.name}: option {key}={value!r} is not a {type(default).__name__}"
        ) from None


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
