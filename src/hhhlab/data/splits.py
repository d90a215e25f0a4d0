"""Train/validation/test splits without leakage, and de-duplication.

A group's split is a pure function of ``(seed, group.split_key)``: the key (the normalized
context, or ``metadata['split_key']`` where several groups must stay together — an ETHICS group,
the posts of summarize, a code problem, the two halves of a binarized pair) is hashed with the
seed into [0, 1) and compared with the cumulative fractions. So:

* a context is never in two splits, whatever else is in the file;
* the split of a group does not depend on file order or on the other groups (streaming, and a
  dataset that grows keeps every old group in its split);
* another seed gives another, equally deterministic, split.

The realised fractions are those of *contexts*, so they deviate from the requested ones by
sampling noise (and by the size of large shared-key clusters).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from hhhlab.data.schema import JsonlWriter, PreferenceGroup, read_jsonl, stable_hash
from hhhlab.errors import DataError

SPLITS = ("train", "validation", "test")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.9,0.05,0.05"`` -> (0.9, 0.05, 0.05); they must be three non-negative numbers summing to 1."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise DataError(f"fractions must be three numbers like 0.9,0.05,0.05, got {text!r}") from None
    if len(values) != 3 or any(not (v >= 0) for v in values) or abs(sum(values) - 1) > 1e-6:
        raise DataError(f"fractions must be three non-negative numbers that sum to 1, got {text!r}")
    return values


def assign_split(key: str, fractions: tuple[float, float, float] = (0.9, 0.05, 0.05), seed: int = 0) -> str:
    """The split of a context key (see the module docstring)."""
    u = stable_hash("split", seed, key) / 2**64
    cumulative = 0.0
    for name, fraction in zip(SPLITS, fractions):
        cumulative += fraction
        if u < cumulative:
            return name
    return next(name for name, f in zip(reversed(SPLITS), reversed(fractions)) if f > 0)


def dedupe(groups: Iterable[PreferenceGroup], counter: dict[str, int] | None = None) -> Iterator[PreferenceGroup]:
    """Drop exact duplicates (`PreferenceGroup.fingerprint`), keeping the first; counts them in
    ``counter['duplicates']``. Holds one 8-byte digest per distinct group."""
    seen: set[bytes] = set()
    for g in groups:
        digest = bytes.fromhex(g.fingerprint())[:8]
        if digest in seen:
            if counter is not None:
                counter["duplicates"] = counter.get("duplicates", 0) + 1
            continue
        seen.add(digest)
        yield g


def split_groups(groups: Iterable[PreferenceGroup], fractions=(0.9, 0.05, 0.05), seed: int = 0
                 ) -> Iterator[tuple[str, PreferenceGroup]]:
    """``(split name, group)`` for each group, streaming."""
    for g in groups:
        yield assign_split(g.split_key, fractions, seed), g


def split_file(input: Path, out_dir: Path, fractions=(0.9, 0.05, 0.05), seed: int = 0,
               dedupe_groups: bool = True) -> dict[str, int]:
    """Split a JSONL file into ``out_dir/{train,validation,test}.jsonl``; returns the counts
    (plus ``duplicates`` dropped)."""
    out_dir = Path(out_dir)
    counts: dict[str, int] = {name: 0 for name in SPLITS}
    writers = {name: JsonlWriter(out_dir / f"{name}.jsonl") for name in SPLITS}
    try:
        groups: Iterable[PreferenceGroup] = read_jsonl(input)
        if dedupe_groups:
            groups = _dedupe_counting(groups, counts)
        for name, g in split_groups(groups, fractions, seed):
            writers[name].write(g)
            counts[name] += 1
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.close()
    return counts


def _dedupe_counting(groups, counts):
    counter: dict[str, int] = {}
    yield from dedupe(groups, counter)
    counts["duplicates"] = counter.get("duplicates", 0)
