"""Training and evaluation data: preference-group JSONL or text corpora -> tokenised items,
with bad input counted.

Policy for bad input (issue 5):
* a group whose responses all have the same score carries no preference: skipped and counted;
* an empty response (the schema's rule), malformed JSON or a bad field: `DataError` naming the
  file and line;
* a sequence longer than the window: context tokens dropped from the left (counted);
* a response too long to fit even with one context token: skipped and counted, its id logged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hhhlab.data.schema import PreferenceGroup, open_text, parse_group
from hhhlab.errors import DataError
from hhhlab.train.batching import EncodedGroup, ResponseTooLong, encode_group, encode_text


@dataclass
class DataStats:
    """What happened to the input: reported in metrics.json and the run log."""

    groups_read: int = 0
    skipped_no_preference: int = 0
    skipped_response_too_long: int = 0
    truncated_groups: int = 0
    truncated_context_tokens: int = 0
    pairs: int = 0
    texts_read: int = 0
    skipped_empty_text: int = 0
    too_long_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["too_long_ids"] = d["too_long_ids"][:20]
        return d


@dataclass
class TextRecord:
    """One plain text of a text corpus (language modelling, distillation)."""

    id: str
    text: str


def parse_group_line(line: str, where: str, stats: DataStats) -> PreferenceGroup | None:
    """One JSONL line -> a group; None for a blank line or a group without two distinct scores
    (counted); any other invalid record is a DataError naming ``where`` (``file:line``)."""
    if not line.strip():
        return None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError:
        raw = None  # parse_group reports it with the position
    scores = raw.get("scores") if isinstance(raw, dict) else None
    if isinstance(scores, list) and len(scores) >= 1 and len(set(map(_num, scores))) < 2:
        stats.skipped_no_preference += 1
        return None
    group = parse_group(line, where)  # the schema refuses an empty response (docs/data.md)
    stats.groups_read += 1
    return group


def is_plain_text(path: str | Path) -> bool:
    """``.txt`` (optionally compressed): one text per non-blank line; anything else is JSONL."""
    name = Path(path).name.lower()
    for ext in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(ext)
    return name.endswith(".txt")


def parse_text_line(line: str, where: str, stats: DataStats, *, plain: bool) -> TextRecord | None:
    """One line of a text corpus: plain text (``.txt``) or JSONL ``{"text": ..., "id": ...}``;
    None for a blank line (or an empty text, counted); a malformed record is a DataError."""
    if not line.strip():
        return None
    if plain:
        text, rid = line.rstrip("\n"), where
    else:
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
            raise DataError(f"{where}: expected a JSON object with a string field 'text'")
        text, rid = raw["text"], str(raw.get("id") or where)
    if not text.strip():
        stats.skipped_empty_text += 1
        return None
    stats.texts_read += 1
    return TextRecord(id=rid, text=text)


def iter_lines(path: str | Path):
    """``(line number, line)`` of a text file (gz/bz2/xz/zst too), streamed; read errors name it."""
    if not Path(path).exists():
        raise DataError(f"{path}: file not found")
    try:
        with open_text(path) as fh:
            yield from enumerate(fh, 1)
    except (UnicodeDecodeError, EOFError, OSError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def parse_line(line: str, where: str, stats: DataStats, kind: str, plain: bool) -> PreferenceGroup | TextRecord | None:
    """A line of a source of ``kind`` ``"groups"`` or ``"text"``."""
    if kind == "text":
        return parse_text_line(line, where, stats, plain=plain)
    return parse_group_line(line, where, stats)


def read_records(path: str | Path, kind: str = "groups", *, limit: int | None = None,
                 stats: DataStats | None = None) -> list:
    """Every record of a file (groups or texts), in order; a file without any is a DataError."""
    stats = stats if stats is not None else DataStats()
    out: list = []
    plain = kind == "text" and is_plain_text(path)
    for lineno, line in iter_lines(path):
        rec = parse_line(line, f"{path}:{lineno}", stats, kind, plain)
        if rec is None:
            continue
        out.append(rec)
        if limit and len(out) >= limit:
            break
    if not out:
        if kind == "text":
            raise DataError(f"{path}: no usable texts (skipped {stats.skipped_empty_text} empty)")
        raise DataError(f"{path}: no usable preference groups (skipped {stats.skipped_no_preference} "
                        "without two distinct scores)")
    return out


def read_groups(path: str | Path, *, limit: int | None = None,
                stats: DataStats | None = None) -> list[PreferenceGroup]:
    """Groups from a JSONL file. Groups without two distinct scores are skipped and counted (the
    schema would reject them); any other invalid record is a DataError naming ``file:line``."""
    return read_records(path, "groups", limit=limit, stats=stats)


def _num(x):
    return x if isinstance(x, (int, float)) else str(x)


def encode_record(record: PreferenceGroup | TextRecord, index: int, tokenizer, max_length: int,
                  stats: DataStats) -> EncodedGroup | None:
    """Tokenise one record (`hhhlab.train.batching`), counting truncation and skips; None = skipped."""
    if isinstance(record, TextRecord):
        enc = encode_text(tokenizer, record.text, max_length=max_length, index=index, text_id=record.id)
        if not enc.responses[0]:
            stats.skipped_empty_text += 1
            return None
        if enc.truncated:
            stats.truncated_groups += 1
            stats.truncated_context_tokens += enc.truncated
        return enc
    g = record
    try:
        enc = encode_group(tokenizer, g.context, g.responses, g.scores, max_length=max_length, index=index,
                           group_id=g.id, metadata=g.metadata)
    except ResponseTooLong:
        stats.skipped_response_too_long += 1
        stats.too_long_ids.append(g.id)
        return None
    if enc.truncated:
        stats.truncated_groups += 1
        stats.truncated_context_tokens += enc.truncated
    stats.pairs += len(enc.pairs())
    return enc


def encode_groups(groups: list, tokenizer, *, max_length: int, stats: DataStats | None = None,
                  encode=None) -> list[EncodedGroup]:
    """Tokenise records (groups or texts), counting truncation and skips; ``encode`` defaults
    to `encode_record` (an objective passes its own)."""
    stats = stats if stats is not None else DataStats()
    encode = encode or encode_record
    out: list[EncodedGroup] = []
    for i, g in enumerate(groups):
        enc = encode(g, i, tokenizer, max_length, stats)
        if enc is not None:
            out.append(enc)
    if not out:
        raise DataError(f"no record fits the window of {max_length} tokens "
                        f"({stats.skipped_response_too_long} responses too long)")
    return out
