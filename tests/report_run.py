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
                      stages="sanity,evals,pm_vs_il,distill,pmp,elo", **kw)


def make_tiny_run(root: Path):
    """Run the demo's stages on the tiny model into ``root/work`` with its results store in
    ``root/home``; returns (config, workdir, status, store root)."""
    import os

    from test_evals import PROMPT, make_data

    from hhhlab.demo import run_demo

    data = make_data(root / "data")
    prompt = root / "prompt.txt"
    prompt.write_text(PROMPT)
    cfg = tiny_demo_config(data, prompt)
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
