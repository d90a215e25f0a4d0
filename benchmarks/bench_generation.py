"""Benchmark: sampling behind a long shared prompt (the toxicity eval's shape) vs transformers.

Workload: ``--prompts`` prompts = one shared prefix of ``--prefix-tokens`` tokens + a short
question each; ``--samples`` samples of ``--new-tokens`` tokens per prompt (toxicity: 25 x 20).
Baseline: ``model.generate(num_return_sequences=...)`` per prompt, which re-encodes the whole
prompt for every sample. Engine: the shared prefix once, each prompt's rest once, all samples
decoded together against that one cache.

    python benchmarks/bench_generation.py --model random:llama-1b --prefix-tokens 4000 --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import torch

from hhhlab.models.device import resolve_device
from hhhlab.models.engine import Engine, GenerationConfig
from hhhlab.models.load import load_model

WORDS = "the a of to and in is it you that he was for on are with as I his they be at one have this".split()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_prompts(tokenizer, prefix_tokens: int, n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words: list[str] = []
    while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < prefix_tokens:
        words += [rng.choice(WORDS) for _ in range(max(16, prefix_tokens // 8))]
    prefix = " ".join(words)
    return [
        f"{prefix}\n\nHuman: {' '.join(rng.choice(WORDS) for _ in range(rng.randint(8, 16)))}\n\nAssistant:"
        for _ in range(n)
    ]


@torch.inference_mode()
def baseline(lm, prompts: list[str], cfg: GenerationConfig) -> float:
    sync(lm.device)
    start = time.perf_counter()
    for p in prompts:
        ids = torch.tensor(
            [lm.tokenizer(p, add_special_tokens=False)["input_ids"]], device=lm.device
        )
        lm.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            min_new_tokens=cfg.max_new_tokens,
            num_return_sequences=cfg.num_samples,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
    sync(lm.device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="random:llama-135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--prefix-tokens", type=int, default=4000)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument(
        "--baseline-prompts", type=int, default=2, help="prompts timed with transformers"
    )
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--new-tokens", type=int, default=20)
    ap.add_argument(
        "--batch-size", type=int, default=None, help="engine batch size (default 16 CPU / 64 GPU)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if args.model.startswith("random:") and device.type == "cuda":
        with torch.device(device):
            lm = load_model(args.model, device=str(device), dtype=args.dtype)
    else:
        lm = load_model(args.model, device=str(device), dtype=args.dtype)
    prompts = make_prompts(lm.tokenizer, args.prefix_tokens, args.prompts)
    # No stop sequence, so both sides generate exactly new_tokens per sample.
    cfg = GenerationConfig(
        max_new_tokens=args.new_tokens, temperature=1.0, top_p=0.95, num_samples=args.samples
    )
    engine = Engine(lm, batch_size=args.batch_size or (64 if device.type == "cuda" else 16))
    engine.generate([p[-200:] for p in prompts[:1]], cfg)  # warm-up
    baseline(lm, [prompts[0][-200:]], cfg)
    sync(device)
    start = time.perf_counter()
    out = engine.generate(prompts, cfg)
    sync(device)
    engine_s = time.perf_counter() - start
    n_base = min(args.baseline_prompts, len(prompts))
    base_s = baseline(lm, prompts[:n_base], cfg)
    rec = {
        "model": lm.name,
        "device": str(device),
        "dtype": str(lm.dtype).removeprefix("torch."),
        "prompt_tokens": len(lm.tokenizer(prompts[0], add_special_tokens=False)["input_ids"]),
        "prompts": len(prompts),
        "samples": args.samples,
        "new_tokens": args.new_tokens,
        "engine_s_per_prompt": engine_s / len(prompts),
        "transformers_s_per_prompt": base_s / n_base,
        "speedup": (base_s / n_base) / (engine_s / len(prompts)),
        "samples_returned": sum(len(s) for s in out),
    }
    print(
        json.dumps(rec, indent=1)
        if args.json
        else "\n".join(f"{k:<26} {v}" for k, v in rec.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
