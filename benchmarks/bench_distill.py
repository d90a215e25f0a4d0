"""Benchmark: the context-distillation teacher and student on the paper's shape.

Shape: the built-in HHH prompt + "Human:" (~6,000 tokens with SmolLM2's tokenizer) before each of
``--samples`` windows of ``--window`` tokens (random ids: tokenisation is not what is timed).

Timed, in one run:
(a) the teacher with the prompt encoded **once** (`Engine.topk_logprobs`, prefix K/V shared by
    every window) — prefix encoding included;
(b) the teacher the way trlx's context distillation runs it: the prompt re-encoded with every
    window (``prefix_reuse=False``), on ``--reencode-samples`` windows, per window;
(c) the engine's log-likelihood scoring on the same shapes (context = prompt, continuation = the
    window), to compare FLOP rates: the teacher should reach the scoring path's rate;
(d) student training: forward + (k+1)-way KL + backward + AdamW step on windows without the
    prompt, tokens per second;
(e) cache bytes per token: a shard of (a)'s outputs written by `TeacherCache`.

Printed: both FLOP counts and their ratio next to the measured speed-up of (a) over (b) (goal:
the speed-up reaches >= 80% of the FLOP ratio), the teacher's FLOP rate as a fraction of the
machine's matmul rate and of the scoring rate (goal: within 1.3x of scoring), and whether the
CPU has AVX-512 BF16.

    python benchmarks/bench_distill.py                         # default model, 8 windows of 256
    python benchmarks/bench_distill.py --model smollm2-135m@L4 --samples 4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scoring import matmul_gflops, model_flops

from hhhlab.distill.cache import CacheKey, TeacherCache, bytes_per_token, tokenizer_checksum
from hhhlab.distill.teacher import encode_text, teacher_prefix_text
from hhhlab.models.engine import Engine
from hhhlab.models.load import load_model
from hhhlab.prompts import load_prompt
from hhhlab.train.losses import distillation_loss


def cpu_flag(name: str) -> bool:
    try:
        return any(name in line.split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("flags"))
    except OSError:
        return False


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--samples", type=int, default=8, help="windows the teacher runs with the prompt once")
    ap.add_argument("--reencode-samples", type=int, default=2, help="windows run with the prompt re-encoded")
    ap.add_argument("--window", type=int, default=256, help="tokens per window after the prompt")
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_model(args.model, dtype="float32", device="cpu")
    tok, vocab = lm.tokenizer, lm.model.get_output_embeddings().weight.shape[0]
    prefix = encode_text(tok, teacher_prefix_text(load_prompt(None)))
    p, w = len(prefix), args.window
    g = torch.Generator().manual_seed(0)
    windows = [torch.randint(3, vocab, (w,), generator=g).tolist() for _ in range(args.samples)]

    # (a) prompt once: the prefix encoding is part of the cost (one per corpus)
    once = Engine(lm, batch_size=args.batch_size)
    out_a, t_a = timed(lambda: once.topk_logprobs(prefix, windows, args.k))
    t_prefix = timed(lambda: once.runner.encode_prefix(prefix[:-1], lm.device))[1] if once.runner else float("nan")
    # (b) re-encoded per window (trlx's way)
    again = Engine(lm, batch_size=1, prefix_reuse=False)
    sub = windows[: args.reencode_samples]
    out_b, t_b = timed(lambda: again.topk_logprobs(prefix, sub, args.k))
    diff = max(float((a[0] - b[0]).abs().max()) for a, b in zip(out_a, out_b))
    # (c) engine scoring on the same shapes
    pairs = [(prefix, win) for win in windows]
    _, t_c = timed(lambda: Engine(lm, batch_size=args.batch_size).score_tokens(pairs))

    flops_once = model_flops(lm, [p - 1], [i + 1 for i in range(p - 1)] * 1) \
        + model_flops(lm, [w] * args.samples, [p - 1 + t + 1 for t in range(w)] * args.samples)
    flops_again_per = model_flops(lm, [p - 1 + w], [t + 1 for t in range(p - 1 + w)])
    flops_ratio = flops_again_per * args.samples / flops_once
    speedup = (t_b / len(sub)) * args.samples / t_a
    matmul = matmul_gflops(torch.device("cpu"), torch.float32) * 1e9

    # (d) student training tokens/s: [Human: + window] without the prompt, KL to the cached top-k
    model = lm.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    human = encode_text(tok, "Human:")
    batch = torch.tensor([human + win[:-1] for win in windows[: args.batch_size]])
    tlp = torch.cat([o[0] for o in out_a[: args.batch_size]]).clone()
    tid = torch.cat([o[1] for o in out_a[: args.batch_size]]).clone()
    cut = len(human) - 1

    def step():
        logits = model(input_ids=batch).logits[:, cut:].reshape(-1, vocab)  # [B*w, V]
        loss = distillation_loss(logits, tlp, tid)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    _, t_d = timed(lambda: [step() for _ in range(args.train_steps)])
    student_tps = args.train_steps * batch.shape[0] * w / t_d

    # (e) cache bytes per token
    with tempfile.TemporaryDirectory() as tmp:
        key = CacheKey(teacher=args.model, prompt_version="bench", prefix_checksum="-", corpus_checksum="-",
                       n_windows=args.samples, context_length=w, k=args.k, dtype="float32",
                       tokenizer_checksum=tokenizer_checksum(tok), vocab_size=vocab)
        cache = TeacherCache.open(tmp, key, shard_size=args.samples)
        cache.build(np.asarray(windows, dtype=np.int32), lambda _: out_a)
        disk_bpt = cache.disk_bytes() / (args.samples * w)

    teacher_rate = flops_once / t_a
    scoring_rate = flops_once / t_c
    r = {
        "model": args.model, "prefix_tokens": p, "window": w, "samples": args.samples, "k": args.k,
        "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
        "avx512_bf16": cpu_flag("avx512_bf16"), "amx_bf16": cpu_flag("amx_bf16"),
        "teacher_once_s": t_a, "teacher_once_tokens_per_s": args.samples * w / t_a, "prefix_encode_s": t_prefix,
        "teacher_reencode_s_per_window": t_b / len(sub),
        "teacher_reencode_tokens_per_s": len(sub) * w / t_b,
        "max_logprob_diff_once_vs_reencode": diff,
        "flops_once": flops_once, "flops_reencode": flops_again_per * args.samples, "flops_ratio": flops_ratio,
        "measured_speedup": speedup, "speedup_over_flops_ratio": speedup / flops_ratio,
        "matmul_gflops": matmul / 1e9, "teacher_gflops": teacher_rate / 1e9,
        "teacher_fraction_of_matmul": teacher_rate / matmul,
        "scoring_s": t_c, "scoring_gflops": scoring_rate / 1e9, "teacher_over_scoring_rate": teacher_rate / scoring_rate,
        "student_train_tokens_per_s": student_tps,
        "cache_bytes_per_token": bytes_per_token(args.k, "float32"), "cache_disk_bytes_per_token": disk_bpt,
    }
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{args.model}: prompt {p} tokens, {args.samples} windows of {w}, k={args.k}, "
          f"{r['threads']} threads, load average {r['load_average']:.1f}, AVX-512 BF16: "
          f"{'yes' if r['avx512_bf16'] else 'no'} (AMX BF16: {'yes' if r['amx_bf16'] else 'no'})")
    print(f"teacher, prompt once:      {r['teacher_once_tokens_per_s']:8.1f} tokens/s ({t_a:.1f} s incl. "
          f"{t_prefix:.1f} s prefix encoding)")
    print(f"teacher, prompt per window:{r['teacher_reencode_tokens_per_s']:8.1f} tokens/s "
          f"({r['teacher_reencode_s_per_window']:.1f} s per window; max |Δ logprob| {diff:.1e})")
    print(f"FLOPs per corpus: once {flops_once / 1e12:.2f} T, re-encoded {r['flops_reencode'] / 1e12:.2f} T: "
          f"FLOP ratio {flops_ratio:.2f}x; measured speed-up {speedup:.2f}x = "
          f"{100 * r['speedup_over_flops_ratio']:.0f}% of the FLOP ratio (goal >= 80%)")
    print(f"FLOP rates: matmul {r['matmul_gflops']:.1f} GFLOP/s, teacher {r['teacher_gflops']:.1f} "
          f"({100 * r['teacher_fraction_of_matmul']:.0f}% of matmul), scoring on the same shapes "
          f"{r['scoring_gflops']:.1f}: teacher / scoring = {r['teacher_over_scoring_rate']:.2f} (goal >= 1/1.3 = 0.77)")
    print(f"student training: {student_tps:.1f} tokens/s (batch {batch.shape[0]} x {w})")
    print(f"cache: {r['cache_bytes_per_token']} bytes/token (float32 log-probs + int32 ids + the token), "
          f"{disk_bpt:.1f} on disk")


if __name__ == "__main__":
    main()
