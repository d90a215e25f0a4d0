"""Benchmark: naive lm-evaluation-harness-style scoring vs the engine, on the HHH-eval shape.

Workload "prefixed": one shared prefix of ``--prefix-tokens`` (default 4,000) tokens, then
``--requests`` (default 400) requests = ``--requests/2`` questions x 2 answers (the HHH eval is
a binary choice), each question ~20 tokens and each answer ~10 tokens. Workload "plain": no
shared prefix (``--plain-requests`` unique contexts of 100-300 tokens, answers ~10 tokens).

Timed: (a) naive scoring the way lm-evaluation-harness does it: every request's whole sequence
re-encoded, batched with right padding, the LM head and a log-softmax over every position; a
subset of ``--naive-requests`` requests is timed and compared per request; (b) the engine on
every request (planning and prefix encoding included); (c) the floor: the engine on the suffix
tokens alone (no prefix at all), i.e. what the work would cost if the prefix were free.
Also the plain matmul rate of the machine at the model's dtype.

Tokens are random ids (tokenisation is not what is timed); weights are the model's.

    python benchmarks/bench_scoring.py                      # default model if built, else random:llama-135m
    python benchmarks/bench_scoring.py --model random:llama-1b --dtypes bfloat16 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.nn.functional as F

from hhhlab.models.device import cpu_has_native_bf16, resolve_device, resolve_dtype
from hhhlab.models.engine import Engine
from hhhlab.models.load import load_model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, dtype: torch.dtype) -> float:
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, start = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        sync(device)
        if time.perf_counter() - start > (1.0 if device.type == "cuda" else 2.0) or (
            device.type == "cpu" and reps >= 3 and dtype != torch.float32
        ):
            break
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def model_flops(lm, lengths: list[int], attended: list[float]) -> float:
    """Matmul FLOPs of a forward over sequences: weights x tokens, plus attention (QK and PV)."""
    cfg = lm.model.config
    head = lm.model.get_output_embeddings().weight.numel()
    tokens = sum(lengths)
    heads = getattr(cfg, "num_attention_heads", None) or cfg.n_head
    hidden = getattr(cfg, "hidden_size", None) or cfg.n_embd
    layers = getattr(cfg, "num_hidden_layers", None) or cfg.n_layer
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    attn = 4 * layers * heads * head_dim * sum(attended)
    return 2 * (lm.non_embedding_params + head) * tokens + attn


def make_workload(kind: str, args, vocab: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)

    def rand(n: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    def rlen(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    pairs = []
    if kind == "prefixed":
        prefix = rand(args.prefix_tokens)
        for _ in range(args.requests // 2):
            question = prefix + rand(rlen(14, 26))
            for _ in range(2):
                pairs.append((question, rand(rlen(6, 14))))
    else:
        for _ in range(args.plain_requests):
            pairs.append((rand(rlen(100, 300)), rand(rlen(6, 14))))
    return pairs


@torch.inference_mode()
def naive_score(lm, pairs, batch_size: int) -> tuple[list[float], float]:
    """lm-evaluation-harness's loglikelihood path: whole sequences, full logits, log-softmax."""
    out, dev = [], lm.device
    sync(dev)
    start = time.perf_counter()
    for b in range(0, len(pairs), batch_size):
        batch = pairs[b : b + batch_size]
        seqs = [c + k for c, k in batch]
        width = max(len(s) for s in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        logits = lm.model(input_ids=ids.to(dev), attention_mask=mask.to(dev)).logits
        logp = F.log_softmax(logits, dim=-1)
        for r, (c, k) in enumerate(batch):
            pos = torch.arange(len(c) - 1, len(c) + len(k) - 1, device=dev)
            out.append(
                float(logp[r, pos].gather(-1, torch.tensor(k, device=dev)[:, None]).float().sum())
            )
    sync(dev)
    return out, time.perf_counter() - start


def timed_engine(engine: Engine, pairs) -> tuple[list[float], float]:
    sync(engine.device)
    start = time.perf_counter()
    res = engine.score_tokens(pairs)
    sync(engine.device)
    return [r.logprob for r in res], time.perf_counter() - start


@torch.inference_mode()
def breakdown(engine: Engine, pairs, profile: bool = False) -> dict:
    """Where the engine's time goes: planning, prefix encoding, suffix passes with the shared-prefix
    attention, and the same suffix passes with the prefix attention left out (the runner's floor)."""
    dev, out = engine.device, {}

    def clock() -> float:
        sync(dev)
        return time.perf_counter()

    t = clock()
    groups = engine.plan(pairs)
    out["plan_s"] = clock() - t
    prefixes = {}
    t = clock()
    for g in groups:
        if g.prefix_len:
            prefixes[id(g)] = engine.runner.encode_prefix(
                pairs[g.members[0]][0][: g.prefix_len], dev
            )
    out["prefix_encode_s"] = clock() - t
    for label, use_prefix in (
        ("suffix_with_prefix_attention_s", True),
        ("suffix_without_prefix_attention_s", False),
    ):
        t = clock()
        for g in groups:
            prefix = prefixes.get(id(g)) if use_prefix else None
            for batch in engine._batches(pairs, g):
                logits, targets = engine._continuation_logits(pairs, (g.prefix_len, prefix), batch)
                F.log_softmax(logits, dim=-1).gather(-1, targets[:, None])
        out[label] = clock() - t
    if profile and dev.type == "cuda":
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        g = groups[0]
        batch = engine._batches(pairs, g)[0]
        with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            engine._continuation_logits(pairs, (g.prefix_len, prefixes.get(id(g))), batch)
            sync(dev)
        print(p.key_averages().table(sort_by="cuda_time_total", row_limit=18), file=sys.stderr)
    return out


def run_one(lm, kind: str, args) -> dict:
    vocab = min(lm.model.config.vocab_size, len(lm.tokenizer))
    pairs = make_workload(kind, args, vocab)
    engine = Engine(lm, batch_size=args.batch_size)
    warm = [(c[-64:], k) for c, k in pairs[:8]]  # short: warms kernels without a second long prefix
    timed_engine(engine, warm)
    naive_score(lm, warm[: args.naive_batch], args.naive_batch)
    n_naive = min(args.naive_requests, len(pairs))
    subset = pairs[:n_naive]
    naive_lp, naive_s = naive_score(lm, subset, args.naive_batch)
    engine_lp, engine_s = timed_engine(engine, pairs)
    groups = engine.plan(pairs)
    rec = {
        "workload": kind,
        "model": lm.name,
        "device": str(lm.device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "requests": len(pairs),
        "prefix_tokens": args.prefix_tokens if kind == "prefixed" else 0,
        "mean_suffix_tokens": None,
        "prefix_groups": sum(1 for g in groups if g.prefix_len > 0),
        "naive_requests_timed": n_naive,
        "naive_s_per_request": naive_s / n_naive,
        "engine_s_per_request": engine_s / len(pairs),
        "max_abs_diff": max(abs(a - b) for a, b in zip(naive_lp, engine_lp)),
        "forward_gflops": model_flops(
            lm,
            [len(c) + len(k) for c, k in subset],
            [(len(c) + len(k)) ** 2 / 2 for c, k in subset],
        )
        / naive_s
        / 1e9,
    }
    rec["speedup"] = rec["naive_s_per_request"] / rec["engine_s_per_request"]
    if kind == "prefixed":
        p = args.prefix_tokens
        suffix_pairs = [
            (c[p - 1 :], k) for c, k in pairs
        ]  # the suffix alone (+1 token to predict from)
        rec["mean_suffix_tokens"] = sum(len(c) + len(k) for c, k in suffix_pairs) / len(pairs)
        floor_engine = Engine(lm, batch_size=args.batch_size, prefix_reuse=False)
        timed_engine(floor_engine, suffix_pairs[:8])
        _, floor_s = timed_engine(floor_engine, suffix_pairs)
        rec["floor_s_per_request"] = floor_s / len(pairs)
        rec["floor_speedup"] = rec["naive_s_per_request"] / rec["floor_s_per_request"]
        rec["engine_over_floor"] = engine_s / floor_s
        if args.breakdown:
            rec["breakdown"] = breakdown(engine, pairs, profile=args.profile)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--model",
        default=None,
        help="model spec (default: smollm2-135m if built, else random:llama-135m)",
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--dtypes",
        default="auto",
        help="comma list of float32,bfloat16; auto = float32 (+ bfloat16 where the CPU has native bf16) "
        "on CPU, bfloat16 on GPU",
    )
    ap.add_argument("--workloads", default="prefixed,plain")
    ap.add_argument("--prefix-tokens", type=int, default=4000)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--plain-requests", type=int, default=64)
    ap.add_argument(
        "--naive-requests",
        type=int,
        default=None,
        help="requests timed naively (default 4 CPU / 32 GPU)",
    )
    ap.add_argument(
        "--naive-batch", type=int, default=None, help="naive batch size (default 2 CPU / 8 GPU)"
    )
    ap.add_argument(
        "--batch-size", type=int, default=None, help="engine batch size (default 16 CPU / 64 GPU)"
    )
    ap.add_argument("--breakdown", action="store_true", help="time the engine's stages separately")
    ap.add_argument(
        "--profile", action="store_true", help="with --breakdown on CUDA: kernel table to stderr"
    )
    ap.add_argument(
        "--json", action="store_true", help="print one JSON object (first run's fields + all runs)"
    )
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    args.naive_requests = args.naive_requests or (32 if gpu else 4)
    args.naive_batch = args.naive_batch or (8 if gpu else 2)
    args.batch_size = args.batch_size or (64 if gpu else 16)
    if args.model is None:
        from hhhlab.models.default import default_model_dir

        args.model = (
            "smollm2-135m"
            if (default_model_dir() / "config.json").exists()
            else "random:llama-135m"
        )
    if args.dtypes == "auto":
        dtypes = (
            ["bfloat16"] if gpu else ["float32"] + (["bfloat16"] if cpu_has_native_bf16() else [])
        )
    else:
        dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    notes = []
    if not gpu and not cpu_has_native_bf16():
        notes.append(
            "this CPU has no native bf16 (AVX-512 BF16/AMX): bf16 matmuls are emulated, ~100x slower "
            "than fp32; bf16 is skipped unless --dtypes names it"
        )

    runs = []
    for dt_name in dtypes:
        dt = resolve_dtype(dt_name, device)
        if args.model.startswith("random:") and gpu:
            with torch.device(device):  # build random weights on the GPU: an 8B model in seconds
                lm = load_model(args.model, device=str(device), dtype=dt)
        else:
            lm = load_model(args.model, device=str(device), dtype=dt)
        mm = matmul_gflops(device, dt)
        for kind in [w.strip() for w in args.workloads.split(",") if w.strip()]:
            rec = run_one(lm, kind, args)
            rec["matmul_gflops"] = mm
            rec["forward_over_matmul"] = rec["forward_gflops"] / mm
            rec["threads"] = torch.get_num_threads()
            rec["caveats"] = lm.caveats
            runs.append(rec)
            if not args.json:
                print_run(rec)
        del lm
        if gpu:
            torch.cuda.empty_cache()
    if args.json:
        print(json.dumps({**runs[0], "runs": runs, "notes": notes}, indent=1))
    else:
        for n in notes:
            print("note:", n)
    return 0


def print_run(r: dict) -> None:
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    print(
        f"\n== {r['workload']} | {r['model']} | {r['dtype']} on {r['device']} ({r['threads']} threads) =="
    )
    keys = [
        "requests",
        "prefix_tokens",
        "prefix_groups",
        "naive_requests_timed",
        "naive_s_per_request",
        "engine_s_per_request",
        "speedup",
        "floor_s_per_request",
        "floor_speedup",
        "engine_over_floor",
        "max_abs_diff",
        "forward_gflops",
        "matmul_gflops",
        "forward_over_matmul",
    ]
    for k in keys:
        if r.get(k) is not None:
            print(f"  {k:<22} {fmt(r[k])}")
    for k, v in (r.get("breakdown") or {}).items():
        print(f"  {k:<34} {fmt(v)}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
