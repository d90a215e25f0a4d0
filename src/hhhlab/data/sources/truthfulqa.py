"""TruthfulQA's CSV (``TruthfulQA.csv``: Type, Category, Question, Best Answer, Correct Answers,
Incorrect Answers, Source; answer lists separated by ``";"``), for the eval and the builder.

Each data row becomes ``{index, question, best, correct, incorrect, type, category}`` with the
answers stripped and empty ones dropped; ``index`` counts the non-blank data rows from 0 (the
eval's ``q<index>`` and the builder's ``truthfulqa:<index>`` ids). What a consumer requires of a
row (a true and a false answer) stays with the consumer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from hhhlab.errors import DataError

COLUMNS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")


def split_answers(text: str) -> list[str]:
    return [a.strip() for a in str(text).split(";") if a.strip()]


def iter_csv_rows(path: Path) -> Iterator[tuple[str, str, dict | DataError]]:
    """``(file:line, raw row, record or error)`` per data row, streaming. A header without the
    needed columns is one error for the file (nothing after it is read)."""
    from hhhlab.data.build import Reject
    from hhhlab.data.builders.ethics import iter_csv

    header: list[str] | None = None
    index = 0
    for entry in iter_csv(path):
        if isinstance(entry, Reject):
            yield entry.where, entry.record or "", DataError(entry.reason)
            continue
        where, row = entry
        if not any(c.strip() for c in row):
            continue
        raw = ",".join(row)
        if header is None:
            header = [h.strip() for h in row]
            absent = sorted(set(COLUMNS) - set(header))
            if absent:
                yield where, raw, DataError(f"header lacks column(s) {', '.join(absent)}; file skipped")
                return
            continue
        i, index = index, index + 1
        if len(row) != len(header):
            yield where, raw, DataError(f"expected {len(header)} columns, got {len(row)}")
            continue
        rec = dict(zip(header, row))
        yield where, raw, {"index": i, "question": rec["Question"].strip(), "best": rec["Best Answer"].strip(),
                           "correct": split_answers(rec["Correct Answers"]),
                           "incorrect": split_answers(rec["Incorrect Answers"]),
                           "type": rec.get("Type"), "category": rec.get("Category")}
