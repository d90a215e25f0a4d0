"""Benchmark: hhhlab's preference-model training vs TRL's RewardTrainer, side by side.

Same model, same pairs (hh-rlhf helpful-base by default), same hyper-parameters (AdamW, constant
LR, batch size, one epoch, max gradient norm 1, fp32 unless --dtype bfloat16), same number of
pairs, and the same *kept* pairs: TRL silently drops every pair whose chosen or rejected
sequence (with the EOS it appends) is longer than ``max_length``, so both trainers get only the
pairs TRL would keep. Each trainer runs in its own subprocess (peak memory is per trainer) with
the same thread count, one after the other in this one run, so the ratio is measured under the
same machine load.

Reported for each: training pairs/s (training loop only, model loading and tokenisation
excluded), held-out pairwise accuracy, peak resident memory, and the achieved training FLOP
rate — ``6·N·tokens/s`` over the tokens each actually ran through the trunk (×4/3 with gradient
checkpointing, which recomputes the forward), N = non-embedding parameters — as a fraction of
this machine's measured matmul rate at the same dtype and thread count. "Useful" FLOP/s counts
the tokens of the two full sequences of every pair (the work a plain implementation needs), so
it is the same yardstick for both.

    python benchmarks/bench_pm_train.py                      # SmolLM2-135M, a few minutes on CPU
    python benchmarks/bench_pm_train.py --model tiny:llama --train-pairs 64   # seconds
    python benchmarks/bench_pm_train.py --train-pairs 2048 --eval-pairs 512 --dtype bfloat16 --json  # GPU

The default run is short, so its accuracies are close to the untrained model's and their
difference is noise; use a few thousand pairs (a GPU) to compare accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf" / "helpful-base" / "test.jsonl.gz"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="model spec (smollm2-135m, tiny:llama, a path, a hub id)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="hh-rlhf JSONL(.gz) {chosen, rejected}")
    p.add_argument("--train-pairs", type=int, default=24)
    p.add_argument("--eval-pairs", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="bfloat16 = mixed precision in both trainers (only fast on GPUs or CPUs with native bf16)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for each trainer")
    p.add_argument("--trl-gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="TRL's default is on")
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--part", choices=["hhhlab", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- data: the pairs both trainers see ------------------------------------------------------------

def prepare(args, work: Path) -> dict:
    """hh-rlhf -> preference groups (hhhlab's builder) -> pairs TRL would keep -> train/eval files."""
    from hhhlab.data.build import build
    from hhhlab.data.schema import read_jsonl, write_jsonl
    from hhhlab.models.load import load_model

    built = work / "all.jsonl"
    build("hh-rlhf", Path(args.data), built)
    groups = list(read_jsonl(built))
    random.Random(args.seed).shuffle(groups)
    lm = load_model(args.model, device="cpu", dtype="float32")
    tok = lm.tokenizer
    eos = tok.eos_token

    def n_tokens(text: str) -> int:
        return len(tok(text + eos)["input_ids"])  # as TRL tokenizes: text + EOS, default special tokens

    need = args.train_pairs + args.eval_pairs
    kept, dropped, useful = [], 0, []
    for g in groups:
        if len(kept) == need:
            break
        lens = [n_tokens(g.context + r) for r in g.responses]
        if max(lens) > args.max_length or any(not r.strip() for r in g.responses):
            dropped += 1
            continue
        kept.append(g)
        useful.append(sum(lens))
    if len(kept) < need:
        raise SystemExit(f"only {len(kept)} pairs fit {args.max_length} tokens; need {need}")
    train, test = kept[: args.train_pairs], kept[args.train_pairs :]
    write_jsonl(train, work / "train.jsonl")
    write_jsonl(test, work / "eval.jsonl")
    model_dir = work / "model"
    lm.model.save_pretrained(model_dir)  # one copy of the weights for both trainers
    tok.save_pretrained(model_dir)
    return {"dropped_longer_than_max_length": dropped, "scanned": len(kept) + dropped,
            "train_useful_tokens": sum(useful[: args.train_pairs]), "non_embedding_params": lm.non_embedding_params,
            "model_dir": str(model_dir)}


# -- the two trainers (each in its own process) ------------------------------------------------------

def run_hhhlab(args, work: Path, info: dict) -> dict:
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.trainer import evaluate_model, train

    steps = args.train_pairs // args.batch_size
    cfg = TrainConfig(model=info["model_dir"], objective="preference", train=str(work / "train.jsonl"),
                      output=str(work / "hhhlab-run"), max_steps=steps, batch_size=args.batch_size, lr=args.lr,
                      schedule="constant", weight_decay=0.0, max_grad_norm=1.0, dtype=args.dtype,
                      max_length=args.max_length, checkpoint_every=10**9, final_checkpoint=False, progress=False, seed=args.seed,
                      record_run=False)
    pm, summary = train(cfg)
    metrics, _ = evaluate_model(pm, str(work / "eval.jsonl"), batch_size=16)
    return {"pairs": summary["pairs_seen"], "train_seconds": summary["train_seconds"],
            "executed_tokens": summary["tokens_seen"], "recompute_factor": 1.0, "accuracy": metrics["accuracy"],
            "accuracy_ci": metrics["accuracy_ci"], "n_eval": metrics["n_eval"]}


def run_trl(args, work: Path, info: dict) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from hhhlab.data.schema import read_jsonl

    def rows(path):
        out = []
        for g in read_jsonl(path):
            good, bad = (0, 1) if g.scores[0] > g.scores[1] else (1, 0)
            out.append({"prompt": g.context, "chosen": g.responses[good], "rejected": g.responses[bad]})
        return out

    train_rows = rows(work / "train.jsonl")
    tok = AutoTokenizer.from_pretrained(info["model_dir"])
    bf16 = args.dtype == "bfloat16"
    config = RewardConfig(
        output_dir=str(work / "trl-run"), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        num_train_epochs=1, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0,
        max_length=args.max_length, bf16=bf16, fp16=False, gradient_checkpointing=args.trl_gradient_checkpointing,
        report_to="none", save_strategy="no", logging_steps=10**6, seed=args.seed, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
    )
    trainer = RewardTrainer(model=info["model_dir"], args=config, train_dataset=Dataset.from_list(train_rows),
                            processing_class=tok)
    kept = len(trainer.train_dataset)
    t0 = time.perf_counter()
    out = trainer.train()
    seconds = time.perf_counter() - t0
    model = trainer.model.eval()
    correct = []
    with torch.inference_mode():
        for r in rows(work / "eval.jsonl"):
            scores = []
            for resp in (r["chosen"], r["rejected"]):
                ids = tok(r["prompt"] + resp + tok.eos_token, return_tensors="pt").to(model.device)
                with torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16):
                    scores.append(float(model(**ids).logits[0, 0]))
            correct.append(1.0 if scores[0] > scores[1] else 0.5 if scores[0] == scores[1] else 0.0)
    from hhhlab.stats import bootstrap

    acc = bootstrap(correct)
    real_tokens = int(trainer._total_train_tokens)
    return {"pairs": kept, "train_seconds": seconds, "trl_train_runtime": out.metrics.get("train_runtime"),
            "executed_tokens": real_tokens, "recompute_factor": 4 / 3 if args.trl_gradient_checkpointing else 1.0,
            "accuracy": acc.value, "accuracy_ci": [acc.lo, acc.hi], "n_eval": acc.n,
            "gradient_checkpointing": args.trl_gradient_checkpointing}


def part_main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    info = json.loads((work / "info.json").read_text())
    result = (run_hhhlab if args.part == "hhhlab" else run_trl)(args, work, info)
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if torch.cuda.is_available():
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
    (work / f"{args.part}.json").write_text(json.dumps(result))


# -- driver ------------------------------------------------------------------------------------------

def matmul_flops(dtype: str, threads: int) -> float:
    """Measured dense matmul FLOP/s at this dtype and thread count (the roofline we compare to)."""
    import torch

    torch.set_num_threads(threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    n = 8192 if dev == "cuda" else 1024
    a, b = torch.randn(n, n, device=dev, dtype=dt), torch.randn(n, n, device=dev, dtype=dt)
    reps = 1
    while True:
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        if dev == "cuda":
            torch.cuda.synchronize()
        dt_s = time.perf_counter() - t0
        if dt_s > 1.0:
            return 2 * n**3 * reps / dt_s
        reps *= 2


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.part:
        part_main(args)
        return {}
    if args.model.startswith("tiny:") and args.model == "tiny:llama":
        args.model = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"
    if args.train_pairs % args.batch_size:
        raise SystemExit("--train-pairs must be a multiple of --batch-size (both trainers then run the same steps)")
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    with tempfile.TemporaryDirectory(prefix="bench_pm_") as tmp:
        work = Path(tmp)
        log(f"preparing {args.train_pairs}+{args.eval_pairs} pairs from {args.data} for {args.model} ...")
        info = prepare(args, work)
        (work / "info.json").write_text(json.dumps(info))
        peak = matmul_flops(args.dtype, args.threads)
        results = {}
        for part in ["hhhlab"] + ([] if args.skip_trl else ["trl"]):
            log(f"training with {part} ...")
            cmd = [sys.executable, __file__, "--part", part, "--workdir", str(work), *(argv or sys.argv[1:])]
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{part} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
            results[part] = json.loads((work / f"{part}.json").read_text())
    n = info["non_embedding_params"]
    for r in results.values():
        r["pairs_per_s"] = r["pairs"] / r["train_seconds"]
        r["achieved_flops_per_s"] = 6 * n * r["executed_tokens"] * r["recompute_factor"] / r["train_seconds"]
        r["useful_flops_per_s"] = 6 * n * info["train_useful_tokens"] / r["train_seconds"]
        r["fraction_of_matmul_peak"] = r["achieved_flops_per_s"] / peak
        r["useful_fraction_of_matmul_peak"] = r["useful_flops_per_s"] / peak
    report = {"model": args.model, "data": args.data, "train_pairs": args.train_pairs, "eval_pairs": args.eval_pairs,
              "batch_size": args.batch_size, "lr": args.lr, "max_length": args.max_length, "dtype": args.dtype,
              "threads": args.threads, "matmul_flops_per_s": peak, **info, "results": results}
    report.pop("model_dir")
    if "trl" in results:
        h, t = results["hhhlab"], results["trl"]
        report["speedup_pairs_per_s"] = h["pairs_per_s"] / t["pairs_per_s"]
        report["accuracy_difference"] = h["accuracy"] - t["accuracy"]
        report["same_kept_pairs"] = h["pairs"] == t["pairs"] == args.train_pairs
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"\n{args.model}, {args.train_pairs} train / {args.eval_pairs} eval pairs, batch {args.batch_size}, "
              f"{args.dtype}, {args.threads} thread(s); matmul peak {peak / 1e9:.1f} GFLOP/s; "
              f"{info['dropped_longer_than_max_length']} of {info['scanned']} pairs dropped (> {args.max_length} tokens)")
        print(f"{'trainer':8} {'pairs/s':>8} {'accuracy':>18} {'peak RSS':>9} {'FLOP/s':>9} {'of peak':>8} {'useful':>8}")
        for name, r in results.items():
            print(f"{name:8} {r['pairs_per_s']:8.3f} {r['accuracy']:7.3f} [{r['accuracy_ci'][0]:.2f},{r['accuracy_ci'][1]:.2f}]"
                  f" {r['peak_rss_gib']:7.2f}Gi {r['achieved_flops_per_s'] / 1e9:8.1f}G {r['fraction_of_matmul_peak']:8.1%}"
                  f" {r['useful_fraction_of_matmul_peak']:8.1%}")
        if "trl" in results:
            print(f"speed-up {report['speedup_pairs_per_s']:.2f}x pairs/s; accuracy difference "
                  f"{report['accuracy_difference']:+.3f} (n={results['hhhlab']['n_eval']})")
    return report


if __name__ == "__main__":
    main()
