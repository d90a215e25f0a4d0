"""A tiny demo run shared by the report, demo and browser tests: the demo's own stages on a
tiny model, the miniature eval data of test_evals and the generated arithmetic task."""

from __future__ import annotations

from pathlib import Path

TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"


def tiny_demo_config(data_dir: Path, prompt: Path, **kw):
    from hhhlab.demo import DemoConfig

    return DemoConfig(model=TINY, eval_ladder="@L1,full", pm_ladder="@L1,full", evals="hhh_alignment,lambada",
                      prompt=str(prompt), data_dir=str(data_dir), pm_data="arithmetic", eval_items=6, pm_train_pairs=16,
                      pm_eval_pairs=16, pm_steps=2, pm_batch_size=4, max_length=48, dtype="float32",
                      distill_rung="@L1", distill_tokens=64, distill_heldout_tokens=64, distill_context=16,
                      pmp_rung="@L1", pmp_pairs=32, pmp_sizes="0,8", pmp_conditions="none,Tb",
                      stages="sanity,evals,pm_vs_il,distill,pmp,elo", **kw)


def make_tiny_run(root: Path):
    """Run the demo's stages on the tiny model into ``root/work`` with its results store in
    ``root/home``; returns (config, workdir, status, store root)."""
    import json
    import os
    import random

    from test_evals import PROMPT, make_data

    from hhhlab.demo import run_demo

    data = make_data(root / "data")
    # enough text for a short distillation: 40 question/answer pairs
    (data / "bigbench" / "truthful_qa" / "task_mc.json").write_text(json.dumps({"examples": [
        {"input": f"What is {i} plus {i}?", "target_scores": {f"It is {2 * i}.": 1, "No idea.": 0}}
        for i in range(40)]}))
    prompt = root / "prompt.txt"
    prompt.write_text(PROMPT)
    rng = random.Random(0)  # simulated raters who prefer the full model 3 times in 4
    battles = [{"model_a": "tiny-full", "model_b": "tiny-L1", "rating": rng.choice([1, 2, 3, 6])} for _ in range(40)]
    comparisons = root / "comparisons.jsonl"
    comparisons.write_text("".join(json.dumps(b) + "\n" for b in battles))
    cfg = tiny_demo_config(data, prompt, feedback_db=str(comparisons))
    work = root / "work"
    home, old = root / "home", os.environ.get("HHHLAB_HOME")
    os.environ["HHHLAB_HOME"] = str(home)
    try:
        status = run_demo(cfg, work)
    finally:
        if old is None:
            os.environ.pop("HHHLAB_HOME", None)
        else:
            os.environ["HHHLAB_HOME"] = old
    return cfg, work, status, home


def tiny_study(root: Path, name: str = "tiny", **overrides):
    """A two-rung tiny study (evals + PM vs IL on the generated arithmetic task) for reproduce."""
    import json

    from test_evals import PROMPT, make_data

    from hhhlab.demo import arithmetic_groups
    from hhhlab.experiments.reproduce import load_study

    data = root / "data"
    if not data.exists():
        make_data(data)
    (root / "prompt.txt").write_text(PROMPT)
    groups = root / "arith.jsonl"
    groups.write_text("".join(json.dumps(g) + "\n" for g in arithmetic_groups(48, 0)))
    sets = [f"output={root / name}", f"models={TINY}@L1,{TINY}", f"data_dir={data}", "dtype=float32",
            "evals.evals=[hhh_alignment, lambada]", f"evals.prompt={root / 'prompt.txt'}", "evals.limit=6",
            f"pm_vs_il.datasets=[arith={groups}]", "pm_vs_il.train_size=16", "pm_vs_il.eval_size=16",
            "pm_vs_il.max_steps=2", "pm_vs_il.batch_size=4", "pm_vs_il.max_length=48",
            "pm_vs_il.checkpoint_every=1"]
    sets += [f"{k}={v}" for k, v in overrides.items()]
    return load_study(None, {}, sets)


def flaky(marker: str, fail_times: int, value: int) -> int:
    """Fails the first ``fail_times`` calls (counted in a file), then returns ``value``."""
    p = Path(marker)
    n = int(p.read_text()) if p.exists() else 0
    p.write_text(str(n + 1))
    if n < fail_times:
        raise RuntimeError(f"flaky failure {n + 1}")
    return value
