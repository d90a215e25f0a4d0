"""HellaSwag's two formats and lm-evaluation-harness's query rule, for the eval and the builder.

lm-evaluation-harness (``hellaswag.yaml``, ``utils.py``) scores each item with the query
``preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`` and the endings
``preprocess(ending)``. ``str.capitalize`` upper-cases the first character of ``ctx_b`` *and
lower-cases the rest* ("the man in the Santa hat" -> "The man in the santa hat").

* **Fields** (the original / Hugging Face JSON: ``activity_label, ctx_a, ctx_b, endings, label``):
  `query_from_fields` is that rule exactly.
* **Text** (llama.cpp's ``hellaswag_val_full.txt``: 6 lines per item, ``"<activity_label>: <ctx>"``,
  the gold index, four endings): the context line was written as ``ctx_a + " " + ctx_b``
  *uncapitalised*, and the fields are gone. `restore_ctx_b` reconstructs lm-eval's query: in
  HellaSwag, ``ctx_a`` is whole sentences and ``ctx_b`` is the start of the next one (a subject
  such as ``"the boy"``, or empty for most WikiHow items), so the fragment after the context's
  last sentence end (``.``, ``!`` or ``?``, optionally closing quotes, then a space) is ``ctx_b``
  and gets ``capitalize()``. A context that ends in a sentence end has an empty ``ctx_b`` and is
  unchanged. Without this, 3,296 of the 10,042 validation queries differ from lm-eval's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hhhlab.errors import DataError

_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+")


def preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag cleaning of WikiHow markup."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def query_from_fields(activity_label: str, ctx_a: str, ctx_b: str) -> str:
    """lm-eval's query from the original fields."""
    return preprocess(f"{activity_label}: {ctx_a} {str(ctx_b).capitalize()}")


def restore_ctx_b(context_line: str) -> str:
    """lm-eval's query from a text-format context line (``ctx_b`` capitalised again; see above)."""
    label, sep, ctx = context_line.partition(": ")
    body = ctx if sep else context_line
    ends = list(_SENTENCE_END.finditer(body))
    start = ends[-1].end() if ends else 0
    fragment = body[start:]
    if not fragment:
        return context_line
    body = body[:start] + fragment.capitalize()
    return f"{label}{sep}{body}" if sep else body


def _gold(value: Any) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise DataError(f"label must be an ending index, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a label of inf
        raise DataError(f"label must be an ending index, got {value!r}") from None


def text_record(block: list[str | None], index: int) -> dict:
    """One 6-line text item as ``{query, endings, label, index}`` (``label`` None when the line
    is empty: the hidden test split); DataError when it is malformed."""
    if any(line is None for line in block):
        raise DataError("not valid UTF-8")
    ctx, gold, *endings = [str(line) for line in block]
    label = _gold(gold.strip())
    if label is not None and not 0 <= label < len(endings):
        raise DataError(f"gold index {gold!r} is not 0-{len(endings) - 1}")
    if not ctx.strip():
        raise DataError("empty context line")
    if any(not e.strip() for e in endings):
        raise DataError("empty ending")
    return {"query": restore_ctx_b(ctx), "endings": endings, "label": label, "index": index}


def iter_text(path: Path) -> Iterator[tuple[str, str, dict | DataError]]:
    """``(file:first line, raw text, record or error)`` per 6-line item of a text-format file
    (plain, .gz, .bz2, .xz), streaming; an incomplete last item is an error."""
    from hhhlab.data.build import iter_lines

    block: list[str | None] = []
    start = 1
    for lineno, line in iter_lines(path):
        if not block:
            start = lineno
        block.append(None if line is None else line.rstrip("\r\n"))
        if len(block) == 6:
            raw = "\n".join(b or "" for b in block)
            try:
                yield f"{path}:{start}", raw, text_record(block, (start - 1) // 6)
            except DataError as exc:
                yield f"{path}:{start}", raw, exc
            block = []
    if block and any(b for b in block):
        yield (f"{path}:{start}", "\n".join(b or "" for b in block),
               DataError(f"incomplete item at end of file ({len(block)} of 6 lines)"))


def fields_record(obj: dict) -> dict:
    """An original / Hugging Face JSON record as ``{query, endings, label}`` (lm-eval's rule;
    a record with only the joined ``ctx`` is treated like the text format)."""
    label = _gold(obj.get("label"))
    if "ctx_a" in obj:
        query = query_from_fields(obj.get("activity_label", ""), obj["ctx_a"], obj.get("ctx_b", "") or "")
    else:
        query = restore_ctx_b(preprocess(f"{obj.get('activity_label', '')}: {obj['ctx']}"))
    endings = obj["endings"]
    if not isinstance(endings, list) or len(endings) < 2:
        raise DataError("'endings' must list at least two endings")
    if label is not None and not 0 <= label < len(endings):
        raise DataError(f"gold index {label} is out of range for {len(endings)} endings")
    return {"query": query, "endings": [preprocess(str(e)) for e in endings], "label": label}
