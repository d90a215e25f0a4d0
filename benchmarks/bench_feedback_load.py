"""Bounded load test of the A/B app: a fixed number of simulated raters for a fixed duration,
over loopback only, against a real ``hhhlab serve`` process generating with real models.

Each rater signs in, then loops until the deadline: start a conversation, send a message (the
POST waits for both replies: *generation latency*, queue wait included), load the pair page
(*page latency*), rate it (POST + redirect: *rating latency*), continue for ``--turns`` turns.
It stops by itself: no request starts after the deadline, and the server is stopped after the
last one. Then every acknowledged rating (the server answered 303) is looked up in the database:
``lost`` must be 0.

    python benchmarks/bench_feedback_load.py --raters 4 --duration 30
    python benchmarks/bench_feedback_load.py --models smollm2-135m --conditions plain,prompt --raters 2 \\
        --duration 60 --max-new-tokens 32 --out benchmarks/results/feedback_load_cpu_smollm2.json
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from feedback_server import TWO_TINY, Rater, Server, add_rater

MESSAGES = ["What is the capital of France?", "Can you help me write a short poem about rain?",
            "How do I boil an egg?", "Why is the sky blue?", "Tell me a fact about octopuses."]


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def rater_loop(base: str, token: str, deadline: float, turns: int, out: dict) -> None:
    r = Rater(base, token, timeout=600)
    i = 0
    while time.monotonic() < deadline:
        r.new_conversation()
        for turn in range(turns):
            if time.monotonic() >= deadline:
                break
            t0 = time.perf_counter()
            resp = r.send(MESSAGES[(i + turn) % len(MESSAGES)])
            if resp.status_code != 200:
                out["errors"].append(f"message {resp.status_code}")
                break
            out["generation"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page = r.http.get(f"/c/{r.conv}")
            out["page"].append(time.perf_counter() - t0)
            assert page.status_code == 200
            r.page = page.text
            pid = r.pending_id()
            t0 = time.perf_counter()
            resp = r.rate(1 + (i + turn) % 8)
            if resp.status_code != 200:
                out["errors"].append(f"rate {resp.status_code}")
                break
            out["rate"].append(time.perf_counter() - t0)
            out["acked"].append(pid)
        i += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=TWO_TINY)
    ap.add_argument("--conditions", default="plain")
    ap.add_argument("--raters", type=int, default=4)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds during which raters start requests")
    ap.add_argument("--turns", type=int, default=3, help="turns per conversation")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    ap.add_argument("--out", type=Path, default=None, help="write a results document (kind benchmark) here")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fb-load-"))
    db = tmp / "feedback.sqlite"
    tokens = [add_rater(db, f"sim{i}") for i in range(args.raters)]
    t_start = time.perf_counter()
    srv = Server(db, models=args.models, conditions=args.conditions, max_new_tokens=args.max_new_tokens,
                 messages_per_minute=0, ratings_per_minute=0, max_turns=args.turns, threads=args.threads,
                 ready_timeout=1800)
    startup_s = time.perf_counter() - t_start
    outs = [{"generation": [], "page": [], "rate": [], "acked": [], "errors": []} for _ in tokens]
    deadline = time.monotonic() + args.duration
    t0 = time.perf_counter()
    threads = [threading.Thread(target=rater_loop, args=(srv.url, tok, deadline, args.turns, o))
               for tok, o in zip(tokens, outs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    srv.stop()
    merged = {k: [x for o in outs for x in o[k]] for k in outs[0]}
    con = sqlite3.connect(db)
    stored = {u for (u,) in con.execute("SELECT uid FROM comparisons")}
    queue = [q for (q,) in con.execute("SELECT queue_s FROM comparisons")]
    gen_model = [a + b for a, b in con.execute("SELECT latency_a_s, latency_b_s FROM comparisons")]
    lost = [u for u in merged["acked"] if u not in stored]
    summary = {
        "models": args.models, "conditions": args.conditions, "raters": args.raters, "duration_s": args.duration,
        "wall_s": round(wall, 1), "server_startup_s": round(startup_s, 1), "max_new_tokens": args.max_new_tokens,
        "comparisons_acknowledged": len(merged["acked"]), "comparisons_stored": len(stored), "lost": len(lost),
        "errors": merged["errors"], "comparisons_per_min": round(60 * len(merged["acked"]) / wall, 1),
        **{f"{k}_p50_s": pct(merged[k], 0.5) for k in ("page", "rate", "generation")},
        **{f"{k}_p95_s": pct(merged[k], 0.95) for k in ("page", "rate", "generation")},
        "model_time_per_pair_p50_s": pct(gen_model, 0.5), "queue_wait_p50_s": pct(queue, 0.5),
        "queue_wait_p95_s": pct(queue, 0.95),
        "mean_generation_s": statistics.mean(merged["generation"]) if merged["generation"] else None,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        from hhhlab.results import write_results

        write_results(args.out, "benchmark", config=vars(args) | {"out": str(args.out)}, payload=summary,
                      benchmark="feedback_load")
    if lost:
        raise SystemExit(f"{len(lost)} acknowledged comparisons missing from the database")


if __name__ == "__main__":
    main()
