"""Time the prompted hhh_alignment eval (221 items, both scoring rules) with and without prefix reuse.

With prefix reuse the engine encodes the HHH prompt (and each query) once and scores every
reply against the cached keys and values; without it every request re-encodes the ~6k-token
prompt. The full eval runs with reuse; without reuse a seeded subset of items is timed and the
time per request is extrapolated to all requests (running it whole would take far longer), and
the two runs' log-probs are compared on that subset.

    python benchmarks/bench_hhh_eval.py --data-dir ../shared/data [--naive-items 6] [--dtype float32]

On CPUs without native bf16 (AVX2-only machines) bf16 is emulated and ~100x slower, so the
default dtype here is float32; pass --dtype bfloat16 on hardware that has it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--naive-items", type=int, default=6, help="items timed without prefix reuse")
    ap.add_argument("--limit", type=int, default=None, help="items with reuse (default: all 221)")
    ap.add_argument("--output", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from hhhlab.evals.base import Condition, EvalContext, get_eval, select
    from hhhlab.evals.runner import run_eval
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model
    from hhhlab.prompts import load_prompt

    lm = load_model(args.model, dtype=args.dtype)
    prompt = load_prompt()
    ev = get_eval("hhh_alignment")
    print(f"{args.model}: {lm.dtype}, {torch.get_num_threads()} threads; prompt {prompt.version}, "
          f"{len(lm.tokenizer(prompt.text)['input_ids'])} tokens")

    def ctx(engine, limit):
        return EvalContext(engine=engine, condition=Condition("prompt"), prompt=prompt, data_dir=args.data_dir,
                           limit=limit, batch_size=args.batch_size)

    fast = Engine(lm, batch_size=args.batch_size, prefix_reuse=True)
    t0 = time.perf_counter()
    full = run_eval(ev, ctx(fast, args.limit), model=args.model)
    t_fast = time.perf_counter() - t0
    n_items = full.n_items
    n_req = 4 * n_items  # 2 replies x (conditional + unconditional)
    print(f"with prefix reuse: {n_items} items, {n_req} requests in {t_fast:.1f}s "
          f"({t_fast / n_req * 1000:.0f} ms/request); acc={full.metrics['acc']}, acc_mi={full.metrics['acc_mi']}")

    naive = Engine(lm, batch_size=args.batch_size, prefix_reuse=False)
    subset = ctx(naive, args.naive_items)
    ids = [it.id for it in select(ev.load(subset), args.naive_items, 0)]
    t0 = time.perf_counter()
    part = run_eval(ev, subset, model=args.model)
    t_naive = time.perf_counter() - t0
    per_req = t_naive / (4 * part.n_items)
    est = per_req * n_req
    print(f"without prefix reuse: {part.n_items} items ({4 * part.n_items} requests) in {t_naive:.1f}s "
          f"({per_req * 1000:.0f} ms/request) -> {est:.0f}s extrapolated to {n_req} requests")
    # same numbers both ways on the timed subset (the subset is scored again with reuse for a fair pairing)
    check = run_eval(ev, ctx(fast, args.naive_items), model=args.model)
    worst = max(abs(a - b) for i in ids for key in ("logprobs", "null_logprobs")
                for a, b in zip(part.results[i][key], check.results[i][key]))
    print(f"speed-up {est / t_fast:.1f}x; largest log-prob difference reuse vs naive on the subset: {worst:.2e}")
    print(f"under 3 minutes: {'yes' if t_fast < 180 else 'NO'} ({t_fast:.0f}s)")
    for caveat in lm.caveats:
        print(f"caveat: {caveat}")
    if args.output:
        args.output.write_text(json.dumps({
            "model": args.model, "dtype": args.dtype, "items": n_items, "requests": n_req,
            "seconds_prefix_reuse": t_fast, "seconds_naive_extrapolated": est, "naive_items_timed": part.n_items,
            "seconds_naive_subset": t_naive, "max_abs_logprob_diff": worst,
            "acc": full.metrics["acc"].to_dict(), "acc_mi": full.metrics["acc_mi"].to_dict()}, indent=2))


if __name__ == "__main__":
    main()
