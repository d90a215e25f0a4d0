"""QuixBugs recast as function synthesis (paper §2.2, Fig 6): the model writes each function from
its signature and docstring; pass@1 and pass@10 from sandboxed test runs (protocol in
``evals/code.py``).

Recasting (our reading of the paper, which gives no details): the prompt is the *fixed*
program's lines up to and including ``def NAME(...):`` (its imports), then the problem's
description (the docstring QuixBugs keeps at the end of each buggy file) as the function's
docstring. The tests are QuixBugs' JSON cases ``[args, expected]`` (generators and tuples
compared as lists, floats with a relative tolerance, as in ``data.builders.code``). The 9 graph
programs have no JSON cases (upstream tests them with pytest code that builds node objects), so
31 of the 40 problems are evaluated.

Data: ``--data-dir DIR`` → ``DIR/quixbugs/quixbugs.jsonl`` (one record per program:
``name, buggy, fixed, testcases``; shared/data's conversion of jkoppel/QuixBugs). There is no
canonical hub copy, so without a local file the error says how to build one.
"""

from __future__ import annotations

import re

from hhhlab.errors import DataError
from hhhlab.evals.base import EvalContext, Item, register
from hhhlab.evals.code import CodeEval, CodeProblem
from hhhlab.evals.sources import find_local, missing

RELS = ["quixbugs/quixbugs.jsonl", "quixbugs/quixbugs.jsonl.gz"]


def quixbugs_problem(rec: object, where: str) -> CodeProblem | None:
    """The synthesis problem of one QuixBugs record, or None when it has no test cases."""
    from hhhlab.data.builders.code import _split_docstring, problem

    try:
        p = problem(rec, where)
    except (DataError, KeyError) as exc:
        raise DataError(f"{where}: not a QuixBugs record ({exc})") from None
    if p["dataset"] != "quixbugs":
        raise DataError(f"{where}: not a QuixBugs record (needs name, buggy, fixed, testcases)")
    if not p["tests"]:
        return None
    name = p["task_id"]
    fixed = dict(p["programs"])["fixed"]
    m = re.search(rf"(?m)^def {re.escape(name)}\(.*\):[ \t]*$", fixed)
    if m is None:
        raise DataError(f"{where}: the fixed program has no top-level 'def {name}(...):' line")
    assert isinstance(rec, dict)  # `problem` refuses anything else
    doc = _split_docstring(rec["buggy"])[1].strip("\n")
    if '"""' in doc:
        raise DataError(f"{where}: the description contains a triple quote")
    body = (
        "".join(f"    {line}".rstrip() + "\n" for line in doc.splitlines())
        if doc.strip()
        else f"    {name}\n"
    )
    prompt = f'{fixed[: m.end()]}\n    """\n{body}    """\n'
    return CodeProblem(name, prompt, p["tests"])


@register("quixbugs")
class QuixBugs(CodeEval):
    description = "QuixBugs as function synthesis: pass@1/pass@10 (T=0.6, top-p 0.95), sandboxed"

    def load(self, ctx: EvalContext) -> list[Item]:
        path = find_local(ctx.data_dir, *RELS)
        if path is None:
            raise missing(
                "quixbugs",
                ctx.data_dir,
                RELS,
                None,
                None,
                "convert jkoppel/QuixBugs (python_programs/, correct_python_programs/, "
                "json_testcases/) to JSON Lines {name, buggy, fixed, testcases}",
            )
        from hhhlab.data.build import Reject, iter_jsonl_objects

        items = []
        for entry in iter_jsonl_objects(path):
            if isinstance(entry, Reject):
                raise DataError(f"{entry.where}: {entry.reason}")
            prob = quixbugs_problem(entry[1], entry[0])
            if prob is not None:
                items.append(prob.item())
        return items
