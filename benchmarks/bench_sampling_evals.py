"""Seconds per item of the sampling evals (toxicity, humaneval, quixbugs) on one model, with
the paper's protocol (25 x 20-token samples per prompt; 20 code samples per problem).

    python benchmarks/bench_sampling_evals.py --model smollm2-135m --items 2 \
        --data-dir ../shared/data --runs toxicity:plain,toxicity:prompt,humaneval:plain,quixbugs:plain

Prints one line per (eval, condition): seconds per item, the split between sampling and the rest
(classifier or sandbox), and the machine's load average (timings on a shared machine are noisy).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from hhhlab.evals.base import Condition, EvalContext, get_eval
from hhhlab.evals.runner import run_eval
from hhhlab.models.engine import Engine
from hhhlab.models.load import load_model
from hhhlab.prompts import load_prompt


class TimedEngine:
    """Wraps an engine and adds up the seconds spent in ``generate``."""

    def __init__(self, engine: Engine):
        self.engine, self.seconds = engine, 0.0

    def generate(self, prompts, config):
        t = time.perf_counter()
        try:
            return self.engine.generate(prompts, config)
        finally:
            self.seconds += time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--items", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    ap.add_argument(
        "--runs", default="toxicity:plain,toxicity:prompt,humaneval:plain,quixbugs:plain"
    )
    args = ap.parse_args()
    lm = load_model(args.model, dtype=args.dtype)
    prompt = load_prompt()
    for run in args.runs.split(","):
        name, cond = run.split(":", 1)
        eng = TimedEngine(Engine(lm, batch_size=16))
        ctx = EvalContext(
            engine=eng,
            condition=Condition.parse(cond),
            prompt=prompt,
            data_dir=args.data_dir,
            limit=args.items,
        )
        load0 = os.getloadavg()[0]
        t = time.perf_counter()
        out = run_eval(get_eval(name), ctx, model=args.model)
        total = time.perf_counter() - t
        n = out.n_items
        main_metric = next(iter(out.metrics.items()))
        print(
            f"{name:10s} {cond:8s} {total / n:7.1f} s/item (sampling {eng.seconds / n:.1f}, rest "
            f"{(total - eng.seconds) / n:.1f}) over {n} items; load avg {load0:.1f}->{os.getloadavg()[0]:.1f}; "
            f"{main_metric[0]} {main_metric[1]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
