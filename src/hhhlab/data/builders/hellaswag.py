"""HellaSwag -> one ranked group per item: the gold ending scores 1, the three distractors 0.

Two input formats:
* the Hugging Face / original JSON Lines (``activity_label, ctx_a, ctx_b, endings[4], label``);
  the context is built as lm-evaluation-harness does: ``"{activity_label}: {ctx_a} {ctx_b
  capitalized}"`` with the WikiHow markup (``[header]``, ``[title]``, ``[step]``...) removed;
* the plain-text release used in ../shared/data (6 lines per item: ``"label: ctx"``, the gold
  index, four endings), already cleaned the same way but with ``ctx_b`` uncapitalised: its
  capital is restored, so both formats give lm-eval's context.

Both formats are read by `hhhlab.data.sources.hellaswag`, which the HellaSwag eval shares.

Each ending becomes ``" " + ending``. The paper pairs the correct ending with **one randomly
chosen** incorrect ending: that is ``pairs(group, "sample", seed)``; ``pairs(group, "all")``
gives all three. (The paper says "three choices" while the data has four endings; we keep all
four in the group and leave the choice to the consumer.) Items without a gold label (the
hidden test split) are skipped ("no gold label").
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from hhhlab.data.build import BuildOptions, Item, Reject, Skip, guard, map_jsonl
from hhhlab.data.schema import PreferenceGroup
from hhhlab.data.sources.hellaswag import fields_record, iter_text
from hhhlab.errors import DataError

PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.txt", "*.txt.bz2", "*.txt.gz")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)


def make_group(where_id: str, context: str, endings: list[str], gold: int, meta: dict) -> PreferenceGroup | Skip:
    if not isinstance(endings, list) or len(endings) < 2:
        raise DataError("'endings' must list at least two endings")
    if not 0 <= gold < len(endings):
        raise DataError(f"gold index {gold} is out of range for {len(endings)} endings")
    responses = [" " + str(e).strip() for e in endings]
    if any(r == responses[gold] for i, r in enumerate(responses) if i != gold):
        return Skip("a distractor equals the gold ending")
    return PreferenceGroup(id=where_id, context=context, responses=responses,
                           scores=[1 if i == gold else 0 for i in range(len(endings))], kind="ranked",
                           source="hellaswag", metadata=meta)


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    if ".txt" in path.suffixes:
        yield from _text_file(path)
        return

    def convert(obj: dict, where: str):
        rec = fields_record(obj)
        if rec["label"] is None:
            return Skip("no gold label")
        item_id = obj.get("ind", where.rsplit(":", 1)[1])
        return make_group(f"hellaswag:{path.stem}:{item_id}", rec["query"], rec["endings"], rec["label"],
                          {"ind": obj.get("ind"), "split": obj.get("split"),
                           "activity_label": obj.get("activity_label")})

    yield from map_jsonl(path, convert)


def _text_file(path: Path) -> Iterator[Item]:
    stem = path.name.split(".")[0]
    for where, raw, rec in iter_text(path):
        if isinstance(rec, DataError):
            yield Reject(where, str(rec), raw)
        elif rec["label"] is None:
            yield Skip("no gold label")
        else:
            yield from guard(where, raw, partial(_text_group, stem, rec))


def _text_group(stem: str, rec: dict) -> PreferenceGroup | Skip:
    """One text-file record as a group (called inside `guard`: a bad field becomes a Reject)."""
    return make_group(f"hellaswag:{stem}:{rec['index']}", rec["query"], rec["endings"], rec["label"],
                      {"index": rec["index"]})
