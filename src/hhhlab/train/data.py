"""Training and evaluation data: preference-group JSONL -> tokenised groups, with bad input counted.

Policy for bad input (issue 5):
* a group whose responses all have the same score carries no preference: skipped and counted;
* an empty response, malformed JSON or a bad field: `DataError` naming the file and line;
* a sequence longer than the window: context tokens dropped from the left (counted);
* a response too long to fit even with one context token: skipped and counted, its id logged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hhhlab.data.schema import PreferenceGroup, open_text, parse_group
from hhhlab.errors import DataError
from hhhlab.train.batching import EncodedGroup, ResponseTooLong, encode_group


@dataclass
class DataStats:
    """What happened to the input: reported in metrics.json and the run log."""

    groups_read: int = 0
    skipped_no_preference: int = 0
    skipped_response_too_long: int = 0
    truncated_groups: int = 0
    truncated_context_tokens: int = 0
    pairs: int = 0
    too_long_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["too_long_ids"] = d["too_long_ids"][:20]
        return d


def read_groups(path: str | Path, *, limit: int | None = None,
                stats: DataStats | None = None) -> list[PreferenceGroup]:
    """Groups from a JSONL file. Groups without two distinct scores are skipped and counted (the
    schema would reject them); any other invalid record is a DataError naming ``file:line``."""
    stats = stats if stats is not None else DataStats()
    out: list[PreferenceGroup] = []
    if not Path(path).exists():
        raise DataError(f"{path}: file not found")
    with open_text(path) as fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError:
                    raw = None  # parse_group reports it with the position
                scores = raw.get("scores") if isinstance(raw, dict) else None
                if isinstance(scores, list) and len(scores) >= 1 and len(set(map(_num, scores))) < 2:
                    stats.skipped_no_preference += 1
                    continue
                group = parse_group(line, f"{path}:{lineno}")
                for i, r in enumerate(group.responses):
                    if not r.strip():
                        raise DataError(f"{path}:{lineno}: group {group.id!r}: response {i} is empty")
                out.append(group)
                stats.groups_read += 1
                if limit and len(out) >= limit:
                    break
        except (UnicodeDecodeError, EOFError, OSError) as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None
    if not out:
        raise DataError(f"{path}: no usable preference groups (skipped {stats.skipped_no_preference} "
                        "without two distinct scores)")
    return out


def _num(x):
    return x if isinstance(x, (int, float)) else str(x)


def encode_groups(groups: list[PreferenceGroup], tokenizer, *, max_length: int,
                  stats: DataStats | None = None) -> list[EncodedGroup]:
    """Tokenise groups for tree rows (`hhhlab.train.batching`), counting truncation and skips."""
    stats = stats if stats is not None else DataStats()
    out: list[EncodedGroup] = []
    for i, g in enumerate(groups):
        try:
            enc = encode_group(tokenizer, g.context, g.responses, g.scores, max_length=max_length, index=i,
                               group_id=g.id, metadata=g.metadata)
        except ResponseTooLong:
            stats.skipped_response_too_long += 1
            stats.too_long_ids.append(g.id)
            continue
        if enc.truncated:
            stats.truncated_groups += 1
            stats.truncated_context_tokens += enc.truncated
        stats.pairs += len(enc.pairs())
        out.append(enc)
    if not out:
        raise DataError(f"no group fits the window of {max_length} tokens "
                        f"({stats.skipped_response_too_long} responses too long)")
    return out
