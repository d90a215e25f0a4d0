#!/usr/bin/env bash
# One-shot engine check on a CUDA machine (the device tool's `run`): environment, the engine's
# equivalence tests on cuda, and bench_scoring.py at real model shapes (random weights, bf16).
# Results land in $OUT (or ./gpu_out). Each step has its own timeout so one slow step cannot
# eat the whole lease.
set -u
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT="${OUT:-$PWD/gpu_out}"; mkdir -p "$OUT"
python3 -c 'import torch, transformers, hypothesis; print("torch", torch.__version__, "transformers", transformers.__version__, torch.cuda.get_device_name())' 2>&1 | tee "$OUT/env.txt"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader | tee -a "$OUT/env.txt"
timeout 170 python3 -m pytest -p no:cacheprovider -o addopts="" tests/test_engine.py tests/test_engine_generate.py \
  tests/test_engine_parts.py -k cuda -q -x 2>&1 | tail -25 | tee "$OUT/tests.txt"
for spec in "random:llama-135m bfloat16,float32" "random:llama-1b bfloat16" "random:llama-8b bfloat16"; do
  set -- $spec
  name="${1#random:}"
  timeout 150 python3 benchmarks/bench_scoring.py --model "$1" --dtypes "$2" --breakdown --json \
    >"$OUT/bench_$name.json" 2>"$OUT/bench_$name.err"
  echo "== $1 rc=$?"; tail -3 "$OUT/bench_$name.err"
  python3 - "$OUT/bench_$name.json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception as e:
    print("no json:", e); sys.exit()
for r in d["runs"]:
    print(f"{r['model']:<18} {r['dtype']:<8} {r['workload']:<8} naive {r['naive_s_per_request']:.4g}s/req engine "
          f"{r['engine_s_per_request']:.4g}s/req speedup {r['speedup']:.1f}x floor_speedup {r.get('floor_speedup') or 0:.1f}x "
          f"engine/floor {r.get('engine_over_floor') or 0:.2f} diff {r['max_abs_diff']:.2g} "
          f"fwd {r['forward_gflops']:.0f} GF/s matmul {r['matmul_gflops']:.0f} GF/s")
    if r.get("breakdown"):
        print("   ", {k: round(v, 4) for k, v in r["breakdown"].items()})
PY
done
for m in random:llama-1b random:llama-8b; do
  echo "== generation $m"
  timeout 120 python3 benchmarks/bench_generation.py --model "$m" --dtype bfloat16 --json >"$OUT/gen_${m#random:}.json" \
    2>"$OUT/gen_${m#random:}.err"; tail -2 "$OUT/gen_${m#random:}.err"; cat "$OUT/gen_${m#random:}.json"
done
