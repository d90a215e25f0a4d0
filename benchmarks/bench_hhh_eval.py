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
    ap.add_argument("--unpacked-items", type=int, default=32,
                    help="items timed with prefix reuse but without packing answers that share a question")
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

    # Wall time depends on what else runs on the machine; process CPU time divided by the
    # threads torch uses estimates the wall time on an otherwise idle machine. Both are printed.
    threads = torch.get_num_threads()
    fast = Engine(lm, batch_size=args.batch_size, prefix_reuse=True)
    t0, c0 = time.perf_counter(), time.process_time()
    full = run_eval(ev, ctx(fast, args.limit), model=args.model)
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0
    n_items = full.n_items
    n_req = 4 * n_items  # 2 replies x (conditional + unconditional)
    all_req = 4 * 221
    print(f"with prefix reuse: {n_items} items, {n_req} requests in {t_fast:.1f}s wall, {c_fast:.1f} CPU-s "
          f"(idle-machine estimate {c_fast / threads:.0f}s; for all 221 items ~{c_fast / threads * all_req / n_req:.0f}s);"
          f" acc={full.metrics['acc']}, acc_mi={full.metrics['acc_mi']}")

    naive = Engine(lm, batch_size=args.batch_size, prefix_reuse=False)
    subset = ctx(naive, args.naive_items)
    ids = [it.id for it in select(ev.load(subset), args.naive_items, 0)]
    t0, c0 = time.perf_counter(), time.process_time()
    part = run_eval(ev, subset, model=args.model)
    t_naive, c_naive = time.perf_counter() - t0, time.process_time() - c0
    per_req = c_naive / (4 * part.n_items)
    est = per_req * n_req
    print(f"without prefix reuse: {part.n_items} items ({4 * part.n_items} requests) in {t_naive:.1f}s wall, "
          f"{c_naive:.1f} CPU-s ({per_req:.1f} CPU-s/request) -> {est:.0f} CPU-s for {n_req} requests "
          f"(idle-machine estimate {est / threads:.0f}s; all 221 items ~{per_req * all_req / threads:.0f}s)")
    # Packing (answers sharing a question run the question once, in one tree row) vs reuse of
    # the HHH prompt alone: both timed on the same seeded subset, one after the other.
    unpacked = Engine(lm, batch_size=args.batch_size, prefix_reuse=True, pack_shared_contexts=False)
    timing = {}
    for name, eng in (("packed", fast), ("unpacked", unpacked)):
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_eval(ev, ctx(eng, args.unpacked_items), model=args.model)
        timing[name] = (time.perf_counter() - t0, time.process_time() - c0, res)
    (tp, cp, rp), (tu, cu, ru) = timing["packed"], timing["unpacked"]
    diff_pack = max(abs(a - b) for i in rp.results for key in ("logprobs", "null_logprobs")
                    for a, b in zip(rp.results[i][key], ru.results[i][key]))
    print(f"prefix reuse with vs without packing answers that share a question, {rp.n_items} items: "
          f"{cp:.1f} vs {cu:.1f} CPU-s ({cu / cp:.2f}x; wall {tp:.1f} vs {tu:.1f}s); max |diff| {diff_pack:.1e}; "
          f"all 221 items without packing ~{cu / threads * all_req / (4 * ru.n_items):.0f}s idle estimate")
    # same numbers both ways on the timed subset (the subset is scored again with reuse for a fair pairing)
    check = run_eval(ev, ctx(fast, args.naive_items), model=args.model)
    worst = max(abs(a - b) for i in ids for key in ("logprobs", "null_logprobs")
                for a, b in zip(part.results[i][key], check.results[i][key]))
    print(f"speed-up {est / c_fast:.1f}x (CPU time); largest log-prob difference reuse vs naive on the subset: {worst:.2e}")
    idle_full = c_fast / threads * all_req / n_req
    print(f"under 3 minutes on an idle machine (estimate, all 221 items): {'yes' if idle_full < 180 else 'NO'} "
          f"({idle_full:.0f}s); measured wall {t_fast:.0f}s for {n_items} items on this (shared) machine")
    for caveat in lm.caveats:
        print(f"caveat: {caveat}")
    if args.output:
        args.output.write_text(json.dumps({
            "model": args.model, "dtype": args.dtype, "items": n_items, "requests": n_req,
            "seconds_prefix_reuse": t_fast, "cpu_seconds_prefix_reuse": c_fast, "threads": threads,
            "cpu_seconds_naive_extrapolated": est, "naive_items_timed": part.n_items,
            "seconds_naive_subset": t_naive, "max_abs_logprob_diff": worst,
            "subset_items_packing": rp.n_items, "cpu_seconds_packed_subset": cp, "cpu_seconds_unpacked_subset": cu,
            "seconds_packed_subset": tp, "seconds_unpacked_subset": tu, "max_abs_logprob_diff_packing": diff_pack,
            "acc": full.metrics["acc"].to_dict(), "acc_mi": full.metrics["acc_mi"].to_dict()}, indent=2))


if __name__ == "__main__":
    main()
