"""The re-ranking sweep (App. B.6, Figs 11-13): the estimator on a hand-computed example, the
Lambada training groups, the sweep end to end on tiny models (a valid document, a resume that
reruns nothing) and its report section; the same for the code-correctness task (Figs 11-12) on
tiny HumanEval/MBPP-format problems run in the sandbox."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from hhhlab.experiments.rerank import Passage, RerankConfig, run_rerank, training_groups
from hhhlab.results import read_results
from hhhlab.train.evaluate import acc_at_k, lambada_answer, rerank_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = "tiny:llama,layers=2@L1,tiny:llama,layers=2"
WORDS = ("dog", "fox", "capital", "model", "answer", "python", "history", "function", "numbers", "sky")



def _check_acc_at_k(r: dict, n_prompts: int) -> None:
    """A model record's acc@k for k = 1, 2, 4: four series with CIs over ``n_prompts``, neither
    ranking above the oracle, and k = 1 (one random sample) equal to no ranking."""
    for k in ("1", "2", "4"):
        per = r["acc_at_k"][k]
        assert set(per) == {"pm", "il", "oracle", "average"}
        for e in per.values():
            assert e["n"] == n_prompts and 0.0 <= e["lo"] <= e["value"] <= e["hi"] <= 1.0
        assert per["pm"]["value"] <= per["oracle"]["value"] + 1e-9
        assert per["il"]["value"] <= per["oracle"]["value"] + 1e-9
    assert r["acc_at_k"]["1"]["pm"]["value"] == pytest.approx(r["acc_at_k"]["1"]["average"]["value"])

def test_acc_at_k_and_the_three_lines_on_a_hand_computed_example():
    # ranked best first, correct at ranks 2 and 4 of 4: the best of a random pair is right in 2 of
    # the 6 pairs ({2,3}, {2,4}): (0·C(3,1) + 1·C(2,1) + 0·C(1,1) + 1·C(0,1)) / C(4,2) = 2/6
    assert acc_at_k([False, True, False, True], 2) == pytest.approx(1 / 3)
    assert acc_at_k([False, True, False, True], 1) == pytest.approx(0.5)
    assert acc_at_k([False, True, False, True], 4) == pytest.approx(0.0)  # the ranker's top is wrong
    scores = [[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]]
    correct = [[False, True, False, True], [True, False, False, False]]  # prompt 2's ranker puts it last
    out = rerank_accuracy(scores, correct, ks=(1, 2))
    assert out["2"]["ranked"]["value"] == pytest.approx((1 / 3 + 0) / 2)
    # oracle: pass@2 = 1 − C(n−c, 2)/C(4, 2): 1 − 1/6 and 1 − 3/6
    assert out["2"]["oracle"]["value"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert out["2"]["average"]["value"] == pytest.approx((0.5 + 0.25) / 2)
    assert out["1"]["ranked"]["value"] == pytest.approx(out["1"]["average"]["value"])
    assert out["2"]["ranked"]["n"] == 2


def test_training_groups_pair_the_target_with_up_to_two_distinct_wrong_answers():
    passages = [Passage("a", "The quick brown fox jumps over the lazy", "dog"),
                Passage("b", "Paris is the capital of", "France"),
                Passage("c", "A language model assigns", "probabilities")]
    samples = [[" dog.", " cat", " cat!", " dog and", " mouse", " horse"],  # 2 right; cat, mouse, horse wrong
               [" France", " France."],  # every sample right: no pair
               ["", "\n", " words here"]]  # answer-less samples are not wrong answers
    groups, counts = training_groups(passages, samples)
    assert [g.responses for g in groups] == [[" dog", " cat", " mouse"], [" probabilities", " words"]]
    assert all(g.kind == "binary" and g.scores[0] == 1 and set(g.scores[1:]) == {0} for g in groups)
    assert counts == {"passages": 3, "samples": 11, "correct_samples": 4, "no_wrong_answer": 1}
    assert groups[0].metadata["sampled_correct"] == 2 and groups[0].split_key == passages[0].context
    assert lambada_answer(' "Dog," she said') == "Dog"


def _lambada_dir(tmp_path, n=40):
    rng = random.Random(0)
    rows = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 12))]
        rows.append({"context": f"Story {i}: the " + " ".join(words) + " and then the",
                     "continuation": rng.choice(WORDS)})
    folder = tmp_path / "data" / "lambada"
    folder.mkdir(parents=True)
    (folder / "lambada_openai.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def tiny_rerank(tmp_path_factory):
    """One sweep over two tiny rungs through the CLI (the default store of the test's $HHHLAB_HOME
    is set per test, so this module-scoped run uses its own store explicitly)."""
    from hhhlab.store import ResultsStore

    tmp = tmp_path_factory.mktemp("rerank")
    cfg = RerankConfig(models=MODELS, output=str(tmp / "out"), data_dir=str(_lambada_dir(tmp)), train_prompts=12,
                       train_samples=3, eval_prompts=6, samples=4, max_new_tokens=3, max_steps=2, batch_size=4,
                       lr=1e-3, dtype="float32", progress=False, max_length=64)
    store = ResultsStore(tmp / "store")
    seen = []
    doc = run_rerank(cfg, store=store, on_model=lambda m, r, cached: seen.append((m, cached)))
    return cfg, store, doc, seen


def test_sweep_writes_a_valid_document_per_model(tiny_rerank):
    cfg, _, _, seen = tiny_rerank
    assert seen == [("tiny:llama,layers=2@L1", False), ("tiny:llama,layers=2", False)]
    read = read_results(cfg.output + "/results.json", kind="sweep_rerank")
    assert read.payload["task"] == "lambada" and read.payload["ks"] == [1, 2, 4]
    recs = read.payload["models"]
    assert [r["model"] for r in recs] == cfg.model_list()
    assert recs[0]["non_embedding_params"] < recs[1]["non_embedding_params"]
    for r in recs:
        assert r["n_eval_prompts"] == 6 and r["train_groups"] >= 2
        _check_acc_at_k(r, n_prompts=6)
        assert set(r["greedy"]) == {"il_greedy", "lm_greedy"} and r["greedy"]["il_greedy"]["n"] == 6
        assert set(r["pair_accuracy"]) == {"imitation", "preference"}
    keys = set(read.estimates)
    assert "lambada/tiny:llama,layers=2/pm@4" in keys and "lambada/tiny:llama,layers=2@L1/il_greedy" in keys
    assert len(keys) == 2 * (3 * 4 + 2)


def test_resume_reruns_nothing(tiny_rerank, monkeypatch):
    cfg, store, doc, _ = tiny_rerank
    from hhhlab.experiments import rerank

    def boom(*a, **k):
        raise AssertionError("a finished model was run again")

    monkeypatch.setattr(rerank, "run_model", boom)
    monkeypatch.setattr("hhhlab.evals.lambada.load_passages", boom)  # nothing to do: not even the data
    seen = []
    again = run_rerank(cfg, store=store, on_model=lambda m, r, cached: seen.append(cached))
    assert seen == [True, True] and again["payload"]["models"] == doc["payload"]["models"]
    [run] = store.runs("sweep_rerank")
    assert run["status"] == "finished" and run["results"].kind == "sweep_rerank"
    # other settings are another run: they never reuse these models' results
    with pytest.raises(AssertionError, match="run again"):
        run_rerank(cfg.model_copy(update={"samples": 8}), store=store)


def test_report_draws_figs_11_and_13_from_the_document(tiny_rerank, tmp_path):
    from hhhlab.report.collect import collect
    from hhhlab.report.html import build_report

    cfg, _, doc, _ = tiny_rerank
    path, results = build_report(collect([cfg.output]), tmp_path / "r.html")
    status = {r.section.id: r.status for r in results}
    assert status["rerank"] == "ok", [r.message for r in results if r.section.id == "rerank"]
    html = path.read_text()
    section = html[html.index('<section id="rerank"'):]
    section = section[: section.index("</section>")]
    assert 'data-paper-fig="11"' in section and 'data-paper-fig="13"' in section
    charts = re.findall(r'data-chart="([^"]+)" data-points="(\d+)"', section)
    assert {c for c, _ in charts} >= {"rerank-vs-k", "rerank-k2", "rerank-k4"}, charts
    assert all(int(n) > 0 for _, n in charts), charts
    # Fig 11: per model a solid PM and a dashed IL line over k = 1, 2, 4
    assert section.count('data-series="PM · tiny:llama,layers=2"') == 1
    assert "IL Sampled at T=0" in section and "Oracle" in section and "Average (No Ranking)" in section
    assert "code correctness" in section.lower()  # says what it does not measure
    top = doc["payload"]["models"][1]["acc_at_k"]["4"]["pm"]
    from hhhlab.report.svg import fmt

    assert f"{fmt(top['value'])} [{fmt(top['lo'])}, {fmt(top['hi'])}]" in section
    cov = html[html.index('data-table="coverage"'):]
    assert re.search(r'<tr data-fig="13">.*?<td>drawn</td>', cov)


def test_cli_flags_come_from_the_config():
    from typer.testing import CliRunner

    from hhhlab.cli import app

    res = CliRunner().invoke(app, ["sweep", "rerank", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for flag in ("--models", "--samples", "--eval-prompts", "--train-prompts", "--data-dir", "--config"):
        assert flag in res.output
    bad = CliRunner().invoke(app, ["sweep", "rerank", "--output", "x", "--samples", "0"])
    assert bad.exit_code != 0 and "samples" in str(bad.output) + str(bad.exception)


# --- code correctness (--task code) -----------------------------------------------------------

# A "text" problem: the completion lands inside a raw string, so almost any sample is a valid
# program and the test (its length mod m) passes for about 1/m of a random model's samples: the
# held-out problems get a mix of right and wrong samples, the ranking has something to rank.
TEXT_PROMPT = 'def text():\n    """The text below."""\n    return TEXT\n\n\nTEXT = r"""'


def _text_problem(task_id: str, m: int) -> dict:
    return {"task_id": task_id, "entry_point": "text", "prompt": TEXT_PROMPT, "canonical_solution": "x" * m,
            "test": f'"""\n\n\ndef check(candidate):\n    assert len(candidate()) % {m} == 0\n'}


# Split by task-id hash: Toy/0, Toy/2 and MBPP 900 train, Toy/9 and Toy/12 held out; in the sweep's
# own split of the training groups Toy/2 is held out (so both of its splits are non-empty).
CODE_PROBLEMS = [
    _text_problem("Toy/0", 2),
    {"task_id": "Toy/2", "entry_point": "add", "prompt": 'def add(a, b):\n    """Return a + b."""\n',
     "canonical_solution": "    return a + b\n", "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n"},
    _text_problem("Toy/9", 2),
    _text_problem("Toy/12", 3),
]
MBPP = [{"task_id": 900, "text": "Write a function to double a number.", "code": "def double(x):\n    return 2 * x",
         "test_list": ["assert double(2) == 4", "assert double(0) == 0"], "test_setup_code": ""}]


def _code_dir(root):
    (root / "humaneval").mkdir(parents=True)
    (root / "humaneval" / "HumanEval.jsonl").write_text("".join(json.dumps(p) + "\n" for p in CODE_PROBLEMS))
    (root / "mbpp").mkdir()
    (root / "mbpp" / "mbpp.jsonl").write_text("".join(json.dumps(p) + "\n" for p in MBPP))
    return root


def _code_cfg(tmp, data_dir, **over):
    # best-effort: runs on machines without the namespace layers (the default, strict, is tested below)
    base = dict(task="code", models=MODELS, output=str(tmp / "out"), data_dir=str(data_dir),
                code_datasets="humaneval,mbpp", train_samples=3, samples=4, max_new_tokens=12, max_steps=2,
                batch_size=2, lr=1e-3, dtype="float32", progress=False, max_length=128, sandbox="best-effort",
                timeout_s=5.0)
    return RerankConfig(**{**base, **over})


@pytest.fixture(scope="module")
def tiny_code_rerank(tmp_path_factory):
    from hhhlab.store import ResultsStore

    tmp = tmp_path_factory.mktemp("rerank-code")
    cfg = _code_cfg(tmp, _code_dir(tmp / "data"))
    store = ResultsStore(tmp / "store")
    seen = []
    doc = run_rerank(cfg, store=store, on_model=lambda m, r, cached: seen.append((m, cached)))
    return cfg, store, doc, seen


def test_code_problems_load_and_split_by_task_id(tmp_path):
    from hhhlab.experiments.rerank_code import CodeTask, load_problems

    cfg = _code_cfg(tmp_path, _code_dir(tmp_path / "data"))
    problems = load_problems(cfg)
    assert [p.id for p in problems] == ["humaneval:Toy/0", "humaneval:Toy/2", "humaneval:Toy/9", "humaneval:Toy/12",
                                        "mbpp:900"]
    add, mbpp = problems[1], problems[4]
    assert add.context == add.prompt == CODE_PROBLEMS[1]["prompt"] and add.reference == "    return a + b\n"
    assert mbpp.prompt == "" and "double a number" in mbpp.context and mbpp.reference.startswith("def double")
    assert "check(add)" in add.tests
    train, test = CodeTask().load(cfg)
    assert sorted(p.id for p in test) == ["humaneval:Toy/12", "humaneval:Toy/9"]
    assert sorted(p.id for p in train) == ["humaneval:Toy/0", "humaneval:Toy/2", "mbpp:900"]


def test_code_training_groups_pair_passing_with_failing_programs(tmp_path):
    from hhhlab.experiments.rerank_code import CodeTask, load_problems

    cfg = _code_cfg(tmp_path, _code_dir(tmp_path / "data"))
    text, add, _, _, mbpp = load_problems(cfg)
    samples = [["ab", "abc", "abc", "abcd"],  # 2 right (even length), 'abc' twice: run once, one response
               ["    return a - b\n", "    return b + a\n", "   "],  # one right; the blank one is not data
               ["def double(x):\n    return x + x\n"] * 2]  # every sample right: no pair
    groups, counts = CodeTask().training_groups(cfg, [text, add, mbpp], samples, tmp_path)
    assert [g.responses for g in groups] == [["ab", "abcd", "abc"], ["    return b + a\n", "    return a - b\n"]]
    assert [g.scores for g in groups] == [[1, 1, 0], [1, 0]]
    assert all(g.kind == "binary" for g in groups) and groups[1].split_key == "code:humaneval:Toy/2"
    assert counts == {"problems": 3, "samples": 9, "correct_samples": 5, "no_failing_sample": 1, "reference_added": 0}
    # no sample passes: the reference solution is the correct program
    groups, counts = CodeTask().training_groups(cfg, [add], [["    return 0\n"]], tmp_path / "b")
    assert groups[0].responses == ["    return a + b\n", "    return 0\n"] and counts["reference_added"] == 1
    assert groups[0].metadata["reference_added"] is True


CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_code_chat_format_asks_in_the_models_template_for_the_same_programs(tmp_path):
    from hhhlab.errors import DataError
    from hhhlab.experiments.rerank_code import CodeTask, load_problems
    from hhhlab.models.tiny import tiny_tokenizer

    cfg = _code_cfg(tmp_path, _code_dir(tmp_path / "data"))
    problems = load_problems(cfg)
    add, mbpp = problems[1], problems[4]
    plain_tok, chat_tok = tiny_tokenizer(), tiny_tokenizer()
    chat_tok.chat_template = CHAT_TEMPLATE
    task = CodeTask()
    # auto: the paper's contexts, unchanged, without a template; the chat format with one
    assert task.for_model(cfg, plain_tok, [add, mbpp]) == ([add, mbpp], {"code_format": "plain"})
    items, fmt = task.for_model(cfg, chat_tok, [add, mbpp])
    assert fmt == {"code_format": "chat"}
    assert items[0].context == (f"<user>Complete the following Python function.\n```python\n{add.prompt}```\n"
                                f"<assistant>```python\n{add.prompt}")
    assert items[1].context == ("<user>Write a function to double a number. Your code should pass this test:\n"
                                "assert double(2) == 4\n<assistant>```python\n")
    # the same programs run: only what the model (and the rankers) condition on changes
    assert [(p.id, p.prompt, p.tests, p.reference) for p in items] == [
        (p.id, p.prompt, p.tests, p.reference) for p in (add, mbpp)]
    assert task.for_model(cfg.model_copy(update={"code_format": "plain"}), chat_tok, [add]) == (
        [add], {"code_format": "plain"})
    with pytest.raises(DataError, match="--code-format chat: .*no chat template"):
        task.for_model(cfg.model_copy(update={"code_format": "chat"}), plain_tok, [add])
    # a chat answer is a whole program (imports, helpers) that ends at its closing fence
    assert "```" in task.stop(items) and "\ndef " not in task.stop(items) and "\ndef " in task.stop([add])
    assert all(p.format == "chat" for p in items) and add.format == "plain"


def test_code_sweep_writes_acc_at_k_series_with_cis(tiny_code_rerank):
    cfg, _, _, seen = tiny_code_rerank
    assert seen == [("tiny:llama,layers=2@L1", False), ("tiny:llama,layers=2", False)]
    read = read_results(cfg.output + "/results.json", kind="sweep_rerank")
    assert read.payload["task"] == "code" and read.payload["ks"] == [1, 2, 4]
    assert any("HumanEval" in n for n in read.payload["notes"])
    recs = read.payload["models"]
    assert [r["model"] for r in recs] == cfg.model_list()
    for r in recs:
        assert r["task"] == "code" and r["n_eval_prompts"] == 2 and r["train_groups"] >= 2
        assert r["greedy"] == {}  # Fig 12 has no greedy line
        assert r["train_counts"]["problems"] == 3 and r["train_counts"]["reference_added"] >= 1
        _check_acc_at_k(r, n_prompts=2)
        assert set(r["pair_accuracy"]) == {"imitation", "preference"}
        assert r["answers_example"]["sandbox_policy"] == "best-effort"
        assert r["code_format"] == "plain"  # auto: the tiny tokenizer has no chat template
    # the text problems give a random model right and wrong samples: there is something to rank
    assert any(0 < r["acc_at_k"]["1"]["average"]["value"] < 1 for r in recs)
    keys = set(read.estimates)
    assert "code/tiny:llama,layers=2/pm@4" in keys and "code/tiny:llama,layers=2@L1/oracle@1" in keys
    assert len(keys) == 2 * 3 * 4


def test_code_resume_reruns_nothing_and_judges_once(tiny_code_rerank, monkeypatch):
    cfg, store, doc, _ = tiny_code_rerank
    from hhhlab.experiments import rerank, rerank_code

    def boom(*a, **k):
        raise AssertionError("a finished model was run again")

    monkeypatch.setattr(rerank, "run_model", boom)
    monkeypatch.setattr(rerank_code, "load_problems", boom)  # nothing to do: not even the data
    seen = []
    again = run_rerank(cfg, store=store, on_model=lambda m, r, cached: seen.append(cached))
    assert seen == [True, True] and again["payload"]["models"] == doc["payload"]["models"]
    runs = [r for r in store.runs("sweep_rerank") if r["config"]["task"] == "code"]
    assert len(runs) == 1 and runs[0]["status"] == "finished"


def test_code_verdicts_are_cached_with_their_samples(tiny_code_rerank, monkeypatch):
    """A model killed after sampling re-reads its sandbox verdicts instead of running them again."""
    cfg, _, _, _ = tiny_code_rerank
    from pathlib import Path

    from hhhlab.experiments.rerank import settings_digest
    from hhhlab.experiments.rerank_code import CodeTask, load_problems

    work = next((Path(cfg.output) / "models" / settings_digest(cfg)).iterdir())
    data = json.loads((work / "eval_verdicts.json").read_text())
    monkeypatch.setattr("hhhlab.sandbox.run_many", lambda *a, **k: pytest.fail("ran the programs again"))
    problems = {p.id: p for p in load_problems(cfg)}
    items = [problems[i] for i in data["passages"]]
    statuses, sandbox = CodeTask().verdicts(cfg, items, data["samples"], work / "eval_verdicts.json")
    assert statuses == data["statuses"] and sandbox["policy"] == "best-effort"


def test_code_bad_input_is_a_clear_error(tmp_path):
    from hhhlab.errors import DataError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"code re-ranking \(humaneval\): dataset not found.*humaneval/HumanEval"):
        run_rerank(_code_cfg(tmp_path, empty, code_datasets="humaneval"))
    (empty / "humaneval").mkdir()
    (empty / "humaneval" / "HumanEval.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no humaneval problems in"):
        run_rerank(_code_cfg(tmp_path, empty, code_datasets="humaneval"))
    with pytest.raises(ValidationError, match="--code-datasets 'apps'"):  # refused with the config
        _code_cfg(tmp_path, empty, code_datasets="apps")
    with pytest.raises(DataError, match="not a folder"):
        run_rerank(_code_cfg(tmp_path, tmp_path / "nowhere"))


def test_code_is_strict_by_default_and_refuses_before_sampling(tmp_path, monkeypatch):
    from hhhlab import sandbox
    from hhhlab.sandbox import SandboxError

    def refuse(policy=None):
        assert sandbox.resolve_policy(policy) == "strict"
        raise SandboxError("strict sandbox policy: missing netns")

    monkeypatch.delenv(sandbox.POLICY_ENV, raising=False)
    monkeypatch.setattr(sandbox, "require", refuse)
    monkeypatch.setattr("hhhlab.models.load.load_model", lambda *a, **k: pytest.fail("sampled before the check"))
    cfg = _code_cfg(tmp_path, _code_dir(tmp_path / "data"), sandbox=None)
    assert RerankConfig(task="code", output="x").max_new_tokens == 256 and cfg.sandbox is None
    with pytest.raises(SandboxError, match="netns"):
        run_rerank(cfg)


def test_report_draws_code_figs_11_and_12_next_to_lambada(tiny_rerank, tiny_code_rerank, tmp_path):
    from hhhlab.report.collect import collect
    from hhhlab.report.html import build_report
    from hhhlab.report.svg import fmt

    lam, code = tiny_rerank[0], tiny_code_rerank[0]
    path, results = build_report(collect([lam.output, code.output]), tmp_path / "r.html")
    status = {r.section.id: r.status for r in results}
    assert status["rerank"] == "ok", [r.message for r in results if r.section.id == "rerank"]
    html = path.read_text()
    section = html[html.index('<section id="rerank"'):]
    section = section[: section.index("</section>")]
    charts = dict(re.findall(r'data-chart="([^"]+)" data-points="(\d+)"', section))
    assert {"rerank-code-vs-k", "rerank-code-k2", "rerank-code-k4", "rerank-vs-k", "rerank-k2", "rerank-k4"} <= set(charts)
    assert all(int(n) > 0 for n in charts.values()), charts
    assert section.index("rerank-code-vs-k") < section.index('data-chart="rerank-vs-k"')  # Fig 11 is code
    assert 'data-paper-fig="12"' in section and 'data-paper-fig="13"' in section
    assert "Code: re-ranking top-1 accuracy vs k" in section and "Code Correctness with 2 Samples" in section
    # Fig 11 on code: a solid PM and a dashed IL line per model; Fig 12's panels have no greedy line
    assert section.count('data-series="PM · tiny:llama,layers=2"') == 2  # one per task
    code_k2 = section[section.index('data-chart="rerank-code-k2"'):]
    code_k2 = code_k2[: code_k2.index("</svg>")]
    assert "Oracle" in code_k2 and "PM Scores" in code_k2 and "IL Sampled at T=0" not in code_k2
    assert "is not in these documents" not in section and "HumanEval" in section
    top = tiny_code_rerank[2]["payload"]["models"][1]["acc_at_k"]["4"]["il"]
    assert f"{fmt(top['value'])} [{fmt(top['lo'])}, {fmt(top['hi'])}]" in section
    cov = html[html.index('data-table="coverage"'):]
    assert re.search(r'<tr data-fig="12">.*?<td>drawn</td>', cov) and re.search(r'<tr data-fig="13">.*?<td>drawn</td>', cov)
    assert "in its chat template" not in section  # plain: the paper's format, nothing to say
    chat = json.loads((Path(code.output) / "results.json").read_text())
    chat["payload"]["models"][0]["code_format"] = "chat"
    (tmp_path / "chat.json").write_text(json.dumps(chat))
    path, _ = build_report(collect([str(tmp_path / "chat.json")]), tmp_path / "c.html")
    assert f"put to {chat['payload']['models'][0]['model']} in its chat template" in path.read_text()


def test_cli_task_code_flags_and_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from hhhlab.cli import app

    res = CliRunner().invoke(app, ["sweep", "rerank", "--help"], env={"COLUMNS": "200"})
    for flag in ("--task", "--code-datasets", "--sandbox", "--timeout-s"):
        assert flag in res.output
    (tmp_path / "data").mkdir()
    bad = CliRunner().invoke(app, ["sweep", "rerank", "--task", "code", "--data-dir", str(tmp_path / "data"),
                                   "--output", str(tmp_path / "out"), "--models", "tiny:llama,layers=2"])
    assert bad.exit_code != 0 and "dataset not found" in str(bad.output) + str(bad.exception)
    bad = CliRunner().invoke(app, ["sweep", "rerank", "--task", "apps", "--output", str(tmp_path / "out")])
    assert bad.exit_code != 0 and "task" in str(bad.output) + str(bad.exception)
