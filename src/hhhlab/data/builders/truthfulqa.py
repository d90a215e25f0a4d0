"""TruthfulQA -> one binary group per question: every true answer scores 1, every false one 0.

Inputs (the CSV read by `hhhlab.data.sources.truthfulqa`, shared with the eval): the original ``TruthfulQA.csv`` (``Question, Best Answer, Correct Answers, Incorrect
Answers``; answer lists are separated by ``"; "``) or the Hugging Face ``multiple_choice``
config as JSON Lines (``question, mc2_targets{choices, labels}``, falling back to
``mc1_targets``).

Context ``"Q: {question}\\nA:"`` (the QA format of the TruthfulQA paper, without its few-shot
prefix); each answer is ``" " + answer``. The best answer is one of the true answers (it is
added if the list lacks it); duplicates within a list are removed. Kind ``binary``: the labels
are true/false, not a ranking. A question with no true or no false answer is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from hhhlab.data.build import BuildOptions, Item, Reject, Skip, guard, map_jsonl
from hhhlab.data.schema import PreferenceGroup
from hhhlab.data.sources.truthfulqa import iter_csv_rows
from hhhlab.errors import DataError

PATTERNS = ("*.csv", "*.jsonl", "*.jsonl.gz")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)


def make_group(item_id: str, question: str, true: list[str], false: list[str], meta: dict) -> PreferenceGroup | Skip:
    if not str(question).strip():
        raise DataError("empty question")
    true = list(dict.fromkeys(" " + str(a).strip() for a in true if str(a).strip()))
    false = [a for a in dict.fromkeys(" " + str(a).strip() for a in false if str(a).strip()) if a not in true]
    if not true or not false:
        return Skip("question without both a true and a false answer")
    return PreferenceGroup(id=item_id, context=f"Q: {str(question).strip()}\nA:", responses=true + false,
                           scores=[1.0] * len(true) + [0.0] * len(false), kind="binary", source="truthfulqa",
                           metadata=meta)


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    if path.name.endswith(".csv"):
        yield from _csv_file(path)
        return
    def convert(obj: dict, where: str):
        targets = obj.get("mc2_targets") or obj["mc1_targets"]
        choices, labels = targets["choices"], targets["labels"]
        if len(choices) != len(labels):
            raise DataError(f"{len(choices)} choices but {len(labels)} labels")
        true = [c for c, lab in zip(choices, labels) if lab == 1]
        false = [c for c, lab in zip(choices, labels) if lab == 0]
        return make_group(f"truthfulqa:{path.stem}:{where.rsplit(':', 1)[1]}", obj["question"], true, false, {})

    yield from map_jsonl(path, convert)


def _csv_file(path: Path) -> Iterator[Item]:
    for where, raw, rec in iter_csv_rows(path):
        if isinstance(rec, DataError):
            yield Reject(where, str(rec), raw or None)
            continue
        yield from guard(where, raw, partial(_csv_group, rec))


def _csv_group(rec: dict) -> PreferenceGroup | Skip:
    """One CSV row as a group (called inside `guard`: a bad field becomes a Reject)."""
    return make_group(f"truthfulqa:{rec['index']}", rec["question"], [rec["best"], *rec["correct"]],
                      rec["incorrect"], {"type": rec["type"], "category": rec["category"], "row": rec["index"]})
