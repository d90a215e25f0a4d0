"""One schema for every preference dataset: the `PreferenceGroup`.

A preference group is one context with two or more responses and a score per response:

    PreferenceGroup(id="stackexchange:beer:42", context="Question: ...\\nAnswer:",
                    responses=[" Use a ...", " Never ..."], scores=[3, 1],
                    kind="ranked", source="stackexchange", metadata={"site": "beer"})

A model sees ``context + response`` (plain concatenation: builders put any separating space at
the start of the response, as lm-eval-harness does). A higher score is better; only the order of
scores matters. ``kind`` says how the scores arose:

* ``ranked`` — scores from a ranking (votes, human comparisons, the gold ending of HellaSwag).
* ``binary`` — a good/bad label; by convention score 1 = the correct/good response and
  0 = the incorrect/bad one. Binary items are stored already recast as the pair ``C:A > C:B``
  (`recast_binary`), so every consumer handles one shape.

``metadata`` is free-form JSON (the source's ids, the site, the subset). Two keys have a meaning:

* ``group_id`` — items whose accuracy is judged together (ETHICS deontology, justice and virtue:
  a group counts as correct only if every item in it is).
* ``split_key`` — what `hhhlab.data.splits` hashes to assign a split (defaults to the normalized
  context). Set it where several groups must stay together: ETHICS groups, binarized pairs.

The small public API that trainers and evals import:

* `PreferenceGroup`, `Pair` — the records;
* `read_jsonl(path)` / `write_jsonl(groups, path)` / `JsonlWriter` — streaming JSON Lines
  (plain, ``.gz`` or ``.bz2``), with errors that name the file and line;
* `to_hf_dataset(groups)` / `from_hf_dataset(ds)` — Hugging Face `datasets` export and import;
* `pairs(group, mode="all"|"sample", seed=0)` — the pairwise view a PM loss needs;
* `binarize(pair)` — the paper's binary PMP transform (§5.2): ``A > B`` becomes
  ``GOOD:A > BAD:A`` and ``BAD:B > GOOD:B``;
* `recast_binary(context, correct, incorrect, ...)` — a binary-labelled item as ``C:A > C:B``.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import math
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hhhlab.errors import DataError, describe_validation_error

Kind = Literal["ranked", "binary"]

GOOD_PREFIX = "GOOD: "
"""Binary-PMP label prefixes. The paper writes ``GOOD:A``; how it spaced and tokenized the label
is unconfirmed (digest §5.2). We put one space after the colon so the label is a separate word
for BPE tokenizers; pass other prefixes to `binarize` to try alternatives."""
BAD_PREFIX = "BAD: "


def is_empty_reply(text: str) -> bool:
    """The one rule for empty replies (docs/data.md): a response of nothing but white space is
    not data. It has no tokens to imitate (IL) or score as a continuation (the engine), and a PM
    would score the bare context, so every consumer would need its own special case; the schema
    refuses such a group, and code that encodes responses without the schema asks this."""
    return not text.strip()


class PreferenceGroup(BaseModel):
    """One context, >= 2 responses, one score per response (higher = better)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    context: str
    responses: list[str] = Field(min_length=2)
    scores: list[float] = Field(min_length=2)
    kind: Kind
    source: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("responses")
    @classmethod
    def _responses_have_text(cls, responses: list[str]) -> list[str]:
        # A builder rejects a record with an empty reply, with this reason in its rejects file.
        for i, r in enumerate(responses):
            if is_empty_reply(r):
                raise ValueError(f"response {i} is empty (whitespace only); an empty reply is rejected, "
                                 "see docs/data.md")
        return responses

    @field_validator("scores")
    @classmethod
    def _scores_finite(cls, scores: list[float]) -> list[float]:
        for i, s in enumerate(scores):
            if not math.isfinite(s):
                raise ValueError(f"score {i} is not finite: {s}")
        return scores

    @model_validator(mode="after")
    def _consistent(self) -> PreferenceGroup:
        if len(self.responses) != len(self.scores):
            raise ValueError(f"{len(self.responses)} responses but {len(self.scores)} scores")
        if len(set(self.scores)) < 2:
            raise ValueError("all responses have the same score: the group carries no preference")
        if self.kind == "binary" and not set(self.scores) <= {0.0, 1.0}:
            raise ValueError(f"binary group scores must be 0/1, got {self.scores}")
        return self

    def to_json(self) -> str:
        """One JSON Lines record (UTF-8 text, no newline)."""
        return dumps_line(self.model_dump())

    @property
    def split_key(self) -> str:
        """What decides this group's split: ``metadata['split_key']`` or the normalized context."""
        key = self.metadata.get("split_key")
        return str(key) if key is not None else normalize_text(self.context)

    def fingerprint(self) -> str:
        """Content hash for de-duplication: same context and same scored responses, in any order
        and up to whitespace.

        ``metadata['group_id']`` and ``metadata['split']`` (a released split) are part of it:
        two equal items in different ETHICS groups are both needed for group accuracy, and an
        item in both a released test and test_hard set belongs to both evaluations."""
        h = hashlib.blake2b(digest_size=16)
        for part in (str(self.metadata.get("group_id")), str(self.metadata.get("split")), _squash(self.context),
                     *sorted(f"{s!r}\x1e{_squash(r)}" for r, s in zip(self.responses, self.scores))):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        return h.hexdigest()


def _squash(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Pair:
    """One comparison: ``context + chosen`` is preferred to ``context + rejected``."""

    context: str
    chosen: str
    rejected: str
    group_id: str
    kind: Kind
    source: str
    metadata: dict[str, Any]


_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dumps_line(obj: Any) -> str:
    """JSON for one JSON Lines record: UTF-8 text kept readable, but the characters that
    ``str.splitlines`` and some editors treat as line breaks (U+0085, U+2028, U+2029) escaped,
    so every reader sees exactly one record per line."""
    text = json.dumps(obj, ensure_ascii=False, default=str)
    for char, escape in _LINE_BREAKS.items():
        if char in text:
            text = text.replace(char, escape)
    return text


def normalize_text(text: str) -> str:
    """Whitespace-collapsed, case-folded text: the identity used for splits and de-duplication."""
    return " ".join(text.split()).casefold()


def stable_hash(*parts: object) -> int:
    """A 64-bit hash that is the same on every machine and Python run (unlike ``hash``)."""
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x1f")
    return int.from_bytes(h.digest(), "big")


def make_id(source: str, *parts: object) -> str:
    """A readable, deterministic id: ``source:part:part``."""
    return ":".join([source, *(str(p) for p in parts)])


# --------------------------------------------------------------------------------------------
# Pairs, binarization, recasting


def pairs(group: PreferenceGroup, mode: Literal["all", "sample"] = "all", seed: int = 0) -> list[Pair]:
    """The pairwise view of a group.

    ``all``: every ordered pair (better, worse) with different scores. ``sample``: the paper's
    one pair per context — two responses with different scores drawn uniformly among such pairs,
    with a generator seeded by ``(seed, group.id)`` so the choice does not depend on the order
    in which groups are read (streaming, parallel workers, resumed runs all agree). For
    HellaSwag (gold 1, distractors 0) this is the paper's "correct ending vs one randomly chosen
    incorrect ending".
    """
    ordered = [
        (i, j)
        for i in range(len(group.responses))
        for j in range(len(group.responses))
        if group.scores[i] > group.scores[j]
    ]
    if mode == "sample":
        rng = random.Random(stable_hash(seed, group.id))
        ordered = [rng.choice(ordered)]
    elif mode != "all":
        raise ValueError(f"pairs mode must be 'all' or 'sample', not {mode!r}")
    return [
        Pair(group.context, group.responses[i], group.responses[j], group.id, group.kind, group.source,
             group.metadata)
        for i, j in ordered
    ]


def binarize(pair: Pair, good: str = GOOD_PREFIX, bad: str = BAD_PREFIX) -> list[PreferenceGroup]:
    """The paper's binary PMP (§5.2): ranked ``A > B`` becomes ``GOOD:A > BAD:A`` and ``BAD:B > GOOD:B``.

    A and B are whole samples (context + response), so the label goes before the context and
    the two sequences of each new pair share no prefix: the groups have an empty context and
    carry the label inside each response. ``split_key`` keeps the original context, so a split
    made after binarizing still never separates the two halves of one source pair (split
    before binarizing anyway: it is cheaper).
    """
    a = pair.context + pair.chosen
    b = pair.context + pair.rejected
    meta = {**pair.metadata, "split_key": pair.metadata.get("split_key") or normalize_text(pair.context),
            "binarized_from": pair.group_id}
    return [
        PreferenceGroup(id=f"{pair.group_id}:bin:{stable_hash(a, b):016x}:good", context="",
                        responses=[good + a, bad + a], scores=[1, 0], kind="binary", source=pair.source,
                        metadata=meta),
        PreferenceGroup(id=f"{pair.group_id}:bin:{stable_hash(a, b):016x}:bad", context="",
                        responses=[bad + b, good + b], scores=[1, 0], kind="binary", source=pair.source,
                        metadata=meta),
    ]


def recast_binary(
    id: str, context: str, correct: str, incorrect: str, *, source: str,
    metadata: dict[str, Any] | None = None,
) -> PreferenceGroup:
    """A binary-labelled item as the pair ``C:A > C:B`` (digest §4.1).

    ``correct`` is the text of the right label (e.g. " yes"), ``incorrect`` the wrong one; the
    label strings per dataset are the builders' documented choice (the paper's are unconfirmed).
    """
    return PreferenceGroup(id=id, context=context, responses=[correct, incorrect], scores=[1, 0],
                           kind="binary", source=source, metadata=metadata or {})


# --------------------------------------------------------------------------------------------
# Files


# Callable[..., Any]: the openers differ in their overloads; each is called as open(path, mode, ...)
_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".lzma": lzma.open}  # lzma.open reads .xz and LZMA-alone


def open_binary(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    """Open plain, ``.gz``, ``.bz2`` or ``.xz`` bytes for reading by extension (streaming)."""
    opener = _OPENERS.get(Path(path).suffix, open)
    try:
        return opener(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot open {path}: {exc.strerror or exc}") from exc


def open_text(path: str | os.PathLike[str], mode: Literal["r", "w"] = "r", *,
              like: str | os.PathLike[str] | None = None) -> io.TextIOBase:
    """Open plain, ``.gz``, ``.bz2`` or ``.xz`` text by extension (UTF-8, streaming).

    ``like``: take the compression from this name instead (for temporary files)."""
    p = str(path)
    opener = _OPENERS.get(Path(like or p).suffix, None)
    try:
        if opener is None:
            return open(p, mode, encoding="utf-8", newline="" if mode == "w" else None)
        return opener(p, mode + "t", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot open {p}: {exc.strerror or exc}") from exc


def parse_group(line: str, where: str) -> PreferenceGroup:
    """Parse one JSON Lines record; a DataError names ``where`` (``file:line``) and the reason."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    try:
        return PreferenceGroup.model_validate(obj)
    except ValidationError as exc:
        raise DataError(f"{where}: invalid preference group ({describe_validation_error(exc)})") from None


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[PreferenceGroup]:
    """Stream groups from a JSON Lines file; the first bad line raises DataError(file:line: why).

    Blank lines are skipped. Use `hhhlab.data.validate` to collect every bad line instead.
    """
    with open_text(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                if line.strip():
                    yield parse_group(line, f"{path}:{lineno}")
        except (UnicodeDecodeError, EOFError, OSError) as exc:
            raise DataError(f"{path}: cannot read ({exc})") from None


class JsonlWriter:
    """Write groups as JSON Lines, atomically: the file appears complete or not at all.

    Writes go to ``<path>.partial`` and are renamed on a clean close, so a crash never leaves a
    truncated file that looks finished.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(self.path.name + ".partial")
        self._f = open_text(self._tmp, "w", like=self.path)
        self.count = 0

    def write(self, group: PreferenceGroup) -> None:
        self._f.write(group.to_json())
        self._f.write("\n")
        self.count += 1

    def write_raw(self, obj: dict[str, Any]) -> None:
        """Write any JSON object (used for the rejects file)."""
        self._f.write(dumps_line(obj))
        self._f.write("\n")
        self.count += 1

    def close(self) -> None:
        self._f.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._f.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_jsonl(groups: Iterable[PreferenceGroup], path: str | os.PathLike[str]) -> int:
    """Write groups to ``path`` (atomically); returns the number written."""
    with JsonlWriter(path) as w:
        for g in groups:
            w.write(g)
    return w.count


# --------------------------------------------------------------------------------------------
# Hugging Face datasets

def to_hf_dataset(groups: Iterable[PreferenceGroup]):
    """A `datasets.Dataset` with our fields; ``metadata`` is a JSON string (Arrow needs one
    schema for every row, and metadata differs between sources)."""
    import datasets

    def gen():
        for g in groups:
            d = g.model_dump()
            d["metadata"] = json.dumps(d["metadata"], ensure_ascii=False)
            yield d

    features = datasets.Features({
        "id": datasets.Value("string"), "context": datasets.Value("string"),
        "responses": datasets.Sequence(datasets.Value("string")),
        "scores": datasets.Sequence(datasets.Value("float64")),
        "kind": datasets.Value("string"), "source": datasets.Value("string"),
        "metadata": datasets.Value("string"),
    })
    return datasets.Dataset.from_generator(gen, features=features)


def from_hf_dataset(ds: Iterable[dict[str, Any]], name: str = "dataset") -> Iterator[PreferenceGroup]:
    """Groups from a `datasets.Dataset` (or any iterable of row dicts) written by `to_hf_dataset`."""
    for i, row in enumerate(ds):
        row = dict(row)
        if isinstance(row.get("metadata"), str):
            try:
                row["metadata"] = json.loads(row["metadata"])
            except json.JSONDecodeError:
                raise DataError(f"{name} row {i}: metadata is not valid JSON") from None
        try:
            yield PreferenceGroup.model_validate(row)
        except ValidationError as exc:
            raise DataError(f"{name} row {i}: invalid preference group ({describe_validation_error(exc)})") from None
