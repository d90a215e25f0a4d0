"""TruthfulQA -> one binary group per question: every true answer scores 1, every false one 0.

Inputs: the original ``TruthfulQA.csv`` (``Question, Best Answer, Correct Answers, Incorrect
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
from pathlib import Path

from hhhlab.data.build import BuildOptions, Item, Reject, Skip, guard, map_jsonl
from hhhlab.data.builders.ethics import iter_csv
from hhhlab.data.schema import PreferenceGroup
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
                           scores=[1] * len(true) + [0] * len(false), kind="binary", source="truthfulqa",
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
    header: list[str] | None = None
    index = 0
    for entry in iter_csv(path):
        if isinstance(entry, Reject):
            yield entry
            continue
        where, row = entry
        if not any(c.strip() for c in row):
            continue
        if header is None:
            header = [h.strip() for h in row]
            missing = {"Question", "Best Answer", "Correct Answers", "Incorrect Answers"} - set(header)
            if missing:
                yield Reject(where, f"header lacks column(s) {', '.join(sorted(missing))}; file skipped", ",".join(row))
                return
            continue
        i = index
        index += 1

        def convert(row=row, i=i, header=header):
            if len(row) != len(header):
                raise DataError(f"expected {len(header)} columns, got {len(row)}")
            rec = dict(zip(header, row))
            true = [rec["Best Answer"], *rec["Correct Answers"].split(";")]
            false = rec["Incorrect Answers"].split(";")
            return make_group(f"truthfulqa:{i}", rec["Question"], true, false,
                              {"type": rec.get("Type"), "category": rec.get("Category"), "row": i})

        yield from guard(where, row, convert)
