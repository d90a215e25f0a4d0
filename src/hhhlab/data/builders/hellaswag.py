"""HellaSwag -> one ranked group per item: the gold ending scores 1, the three distractors 0.

Two input formats:
* the Hugging Face / original JSON Lines (``activity_label, ctx_a, ctx_b, endings[4], label``);
  the context is built as lm-evaluation-harness does: ``"{activity_label}: {ctx_a} {ctx_b
  capitalized}"`` with the WikiHow markup (``[header]``, ``[title]``, ``[step]``...) removed;
* the plain-text release used in ../shared/data (6 lines per item: ``"label: ctx"``, the gold
  index, four endings), already cleaned the same way.

Each ending becomes ``" " + ending``. The paper pairs the correct ending with **one randomly
chosen** incorrect ending: that is ``pairs(group, "sample", seed)``; ``pairs(group, "all")``
gives all three. (The paper says "three choices" while the data has four endings; we keep all
four in the group and leave the choice to the consumer.) Items without a gold label (the
hidden test split) are skipped ("no gold label").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from hhhlab.data.build import (
    map_jsonl,
    BuildOptions,
    Item,
    Reject,
    Skip,
    guard,
    iter_lines,
)
from hhhlab.data.schema import PreferenceGroup
from hhhlab.errors import DataError

PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.txt", "*.txt.bz2", "*.txt.gz")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)


def preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag cleaning of WikiHow markup."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


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


def _gold(value) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise DataError(f"label must be an ending index, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a label of inf
        raise DataError(f"label must be an ending index, got {value!r}") from None


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    if ".txt" in path.suffixes:
        yield from _text_file(path)
        return
    def convert(obj: dict, where: str):
        gold = _gold(obj.get("label"))
        if gold is None:
            return Skip("no gold label")
        ctx = obj["ctx_a"] + " " + str(obj.get("ctx_b", "")).capitalize() if "ctx_a" in obj else obj["ctx"]
        context = preprocess(f"{obj.get('activity_label', '')}: {ctx}")
        endings = [preprocess(str(e)) for e in obj["endings"]]
        item_id = obj.get("ind", where.rsplit(":", 1)[1])
        return make_group(f"hellaswag:{path.stem}:{item_id}", context, endings, gold,
                          {"ind": obj.get("ind"), "split": obj.get("split"),
                           "activity_label": obj.get("activity_label")})

    yield from map_jsonl(path, convert)


def _text_file(path: Path) -> Iterator[Item]:
    block: list[str | None] = []
    start = 1
    for lineno, line in iter_lines(path):
        if not block:
            start = lineno
        block.append(None if line is None else line.rstrip("\r\n"))
        if len(block) == 6:
            yield from _text_item(path, start, block)
            block = []
    if block:
        yield Reject(f"{path}:{start}", f"incomplete item at end of file ({len(block)} of 6 lines)",
                     "\n".join(b or "" for b in block))


def _text_item(path: Path, start: int, block: list[str | None]) -> list[Item]:
    where = f"{path}:{start}"
    if any(line is None for line in block):
        return [Reject(where, "not valid UTF-8", None)]

    def convert():
        gold = _gold(block[1].strip())
        if gold is None:
            return Skip("no gold label")
        if not block[0].strip():
            raise DataError("empty context line")
        return make_group(f"hellaswag:{path.name.split('.')[0]}:{(start - 1) // 6}", block[0], block[2:6], gold,
                          {"index": (start - 1) // 6})

    return guard(where, "\n".join(block), convert)  # type: ignore[arg-type]
