"""Fidelity check: hhhlab vs lm-evaluation-harness on the same model, data and items.

Runs lm-eval (``pip install torch==2.13.0 lm-eval``; its ``hf`` backend) and hhhlab on the same
local checkpoint (default: the embedded smollm2-135m, ``~/.cache/hhhlab/models/smollm2-135m``)
and the same items of lambada, truthfulqa_mc1 and hellaswag read from a local data folder laid
out like shared/data, and prints both numbers side by side (they should agree within 0.5
points) plus how often the two tools agree item by item.

lm-eval is pointed at local data through task YAMLs written to a temporary folder: copies of its
own ``lambada_openai``, ``truthfulqa_mc1`` and ``hellaswag`` configs with ``dataset_path: json``
and the selected items as JSON Lines. For HellaSwag the local file is already preprocessed with
lm-eval's rules, so the copy reads ``query``/``choices`` directly instead of calling
``process_docs``. hhhlab runs TruthfulQA in its ``lm-eval`` format (the 6-shot QA primer);
its paper format is different on purpose.

    python benchmarks/compare_lm_eval.py --data-dir ../shared/data --limit 200
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

TASKS = ("lambada", "truthfulqa_mc1", "hellaswag")
LM_EVAL_NAME = {"lambada": "local_lambada_openai", "truthfulqa_mc1": "local_truthfulqa_mc1",
                "hellaswag": "local_hellaswag"}


def write_lm_eval_task(task: str, items: list, folder: Path) -> None:
    """The selected items as JSON Lines, and an lm-eval task config that reads them."""
    from hhhlab.evals.truthfulqa import QA_PRIMER

    data = folder / f"{task}.jsonl"
    with open(data, "w") as fh:
        for it in items:
            d = it.data
            if task == "lambada":
                rec = {"text": d["context"] + " " + d["word"]}
            elif task == "truthfulqa_mc1":
                rec = {"question": d["question"], "mc1_targets": {"choices": d["choices"], "labels": d["labels"]}}
            else:
                rec = {"query": d["query"], "choices": d["choices"], "gold": d["labels"].index(1)}
            fh.write(json.dumps(rec) + "\n")
    base = {"task": LM_EVAL_NAME[task], "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}
    if task == "lambada":  # lm_eval/tasks/lambada/lambada_openai.yaml
        cfg = {**base, "output_type": "loglikelihood", "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
               "doc_to_target": "{{' '+text.split(' ')[-1]}}"}
    elif task == "truthfulqa_mc1":  # lm_eval/tasks/truthfulqa/truthfulqa_mc1.yaml
        primer = QA_PRIMER.replace("\n", "\\n").replace("'", "\\'")
        cfg = {**base, "output_type": "multiple_choice",
               "doc_to_text": "{% set prompt_qa = '" + primer + "' %}{{prompt_qa + '\\n\\nQ: ' + question + '\\nA:'}}",
               "doc_to_target": 0, "doc_to_choice": "{{mc1_targets.choices}}"}
    else:  # lm_eval/tasks/hellaswag/hellaswag.yaml, docs already preprocessed
        cfg = {**base, "output_type": "multiple_choice", "doc_to_text": "{{query}}", "doc_to_target": "{{gold}}",
               "doc_to_choice": "choices",
               "metric_list": base["metric_list"] + [{"metric": "acc_norm", "aggregation": "mean",
                                                      "higher_is_better": True}]}
    (folder / f"{task}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False, width=10**6))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the embedded smollm2-135m)")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--limit", type=int, default=200, help="items per task (seeded subset)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--output", type=Path, default=None, help="write the comparison as JSON")
    args = ap.parse_args()

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from hhhlab.evals.base import EvalContext, get_eval, select
    from hhhlab.evals.runner import run_eval
    from hhhlab.models.default import ensure_default_model
    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model

    model_path = args.model or str(ensure_default_model())
    lm = load_model(model_path, dtype="float32")
    engine = Engine(lm, batch_size=args.batch_size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hhhlab-lmeval-") as tmp:
        folder = Path(tmp)
        chosen = {}
        for task in args.tasks.split(","):
            ev = get_eval(task, format="lm-eval") if task.startswith("truthfulqa") else get_eval(task)
            ctx = EvalContext(engine=engine, data_dir=args.data_dir, limit=args.limit, batch_size=args.batch_size)
            chosen[task] = select(ev.load(ctx), args.limit, 0)
            write_lm_eval_task(task, chosen[task], folder)
            t0 = time.perf_counter()
            ours = run_eval(ev, ctx, model=model_path)
            rows.append({"task": task, "ours": ours, "ours_s": time.perf_counter() - t0})
        t0 = time.perf_counter()
        res = simple_evaluate(model="hf", model_args={"pretrained": model_path, "dtype": "float32"},
                              tasks=[LM_EVAL_NAME[r["task"]] for r in rows], batch_size=args.batch_size,
                              device="cpu", task_manager=TaskManager(include_path=str(folder)), log_samples=True,
                              bootstrap_iters=0)
        lm_eval_s = time.perf_counter() - t0

    report = []
    ours_s = sum(r["ours_s"] for r in rows)
    print(f"\nmodel: {model_path} (float32, CPU); {args.limit} items per task; "
          f"hhhlab took {ours_s:.0f}s, lm-eval {lm_eval_s:.0f}s")
    for caveat in lm.caveats:
        print(f"caveat: {caveat}")
    print(f"{'task':<16}{'metric':<10}{'hhhlab':>9}{'lm-eval':>9}{'diff (pts)':>12}{'item agreement':>16}")
    for r in rows:
        task, ours = r["task"], r["ours"]
        name = LM_EVAL_NAME[task]
        theirs = res["results"][name]
        samples = res["samples"][name]
        for metric in ("acc", "acc_norm"):
            key = f"{metric},none"
            if key not in theirs or metric not in ours.metrics:
                continue
            a, b = ours.metrics[metric].value, float(theirs[key])
            by_doc = {s["doc_id"]: float(s[metric]) for s in samples}
            ids = [it.id for it in chosen[task]]
            per_item = ours.values[metric]
            agree = sum(per_item[i] == by_doc[k] for k, i in enumerate(ids)) / len(ids)
            print(f"{task:<16}{metric:<10}{a:>9.4f}{b:>9.4f}{100 * (a - b):>12.2f}{agree:>16.1%}")
            report.append({"task": task, "metric": metric, "hhhlab": a, "lm_eval": b, "diff_points": 100 * (a - b),
                           "item_agreement": agree, "n": len(ids)})
    worst = max(abs(x["diff_points"]) for x in report)
    print(f"largest difference: {worst:.2f} points ({'within' if worst <= 0.5 else 'OUTSIDE'} the 0.5-point bound)")
    if args.output:
        args.output.write_text(json.dumps({"model": model_path, "limit": args.limit, "rows": report}, indent=2))


if __name__ == "__main__":
    main()
