"""The distillation corpus: text documents -> one token stream -> fixed-length windows.

Sources (``spec``):
- ``mix``: the paper's recipe (App. B.5), a 50/50 mix *by tokens* of general text and
  StackExchange questions with their answers written as a Human/Assistant exchange. General text
  is every ``*.txt``/``*.raw`` file under ``DATA_DIR/wikitext`` (WikiText-2: ``wiki.valid.raw``
  trains, ``wiki.test.raw`` is held out); StackExchange is every ``*Posts.xml`` dump under
  ``DATA_DIR/stackexchange``, read with the data layer's builder
  (``data/builders/stackexchange.py``) and rendered ``"Human: {title}\\n{body}\\n\\nAssistant:
  {best answer}"`` (the answer with the highest paper score, the accepted one on ties).
- a file: ``.jsonl`` (one ``{"text": ...}`` object per line) or ``.txt``/``.raw`` (WikiText
  articles split at their `` = Title = `` lines, other text at blank lines).

Packing: every document is tokenised alone (no special tokens), documents are joined by the
tokens of ``"\\n\\n"`` into one stream, and the stream is cut into windows of exactly
``context_length`` tokens, the last partial window dropped. A window may start or end inside a
document, as in ordinary LM pre-training packing. The paper fills ~1,500 tokens after its ~6k
prompt (a 8k window); for small models we default to 256 (see docs/distillation.md).

Held-out text (for the held-out KL): documents whose text hashes into the lowest 5% (seed-free,
so the split never moves), and every file with ``test`` in its name. They never reach training
windows.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from hhhlab.errors import DataError

HELDOUT_FRACTION = 0.05
JOINER = "\n\n"
_WIKI_TITLE = re.compile(r"^ = [^=].* = $")
TEXT_SUFFIXES = (".txt", ".raw")


@dataclass(frozen=True)
class Document:
    text: str
    source: str  # "general" | "stackexchange" | the file it came from


@dataclass
class PackedCorpus:
    """Token windows ready for the teacher and the student, and what they are made of."""

    windows: np.ndarray  # [n_windows, context_length] int32
    description: str
    tokens_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def checksum(self) -> str:
        """sha256 of the windows' int32 bytes: identifies corpus, split, packing and tokenizer."""
        return hashlib.sha256(np.ascontiguousarray(self.windows, dtype="<i4").tobytes()).hexdigest()

    @property
    def n_tokens(self) -> int:
        return int(self.windows.size)


def is_heldout(text: str) -> bool:
    """The fixed 5% of documents kept out of training (by content hash, so it never moves)."""
    return hashlib.sha256(text.encode("utf-8")).digest()[0] < 256 * HELDOUT_FRACTION


def split_text_file(path: Path) -> list[str]:
    """Documents of a plain-text file: WikiText articles when it has title lines, else
    paragraphs separated by blank lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: corpus file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines)
              if _WIKI_TITLE.match(line) and (i == 0 or not lines[i - 1].strip())
              and (i + 1 == len(lines) or not lines[i + 1].strip())]
    if starts:
        bounds = [*starts, len(lines)]
        docs = ["\n".join(lines[a:b]).strip() for a, b in pairwise(bounds)]
        head = "\n".join(lines[: starts[0]]).strip()
        docs = [head, *docs] if head else docs
    else:
        docs = [d.strip() for d in re.split(r"\n[ \t]*\n", text)]
    return [d for d in docs if d]


def read_jsonl(path: Path) -> list[str]:
    """``{"text": str}`` per line; a malformed line is an error naming the file and the line."""
    docs = []
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: corpus file not found") from None
    with handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f'{path}:{n}: expected an object with a string "text" field')
            if row["text"].strip():
                docs.append(row["text"])
    return docs


def read_file(path: Path) -> list[Document]:
    if path.suffix == ".jsonl":
        texts = read_jsonl(path)
    elif path.suffix in TEXT_SUFFIXES:
        texts = split_text_file(path)
    else:
        raise DataError(f"{path}: corpus files are .jsonl ({{\"text\": ...}} per line), .txt or .raw")
    return [Document(t, str(path)) for t in texts]


def stackexchange_documents(folder: Path) -> Iterator[Document]:
    """Each question with its best answer as one Human/Assistant exchange, via the data builder."""
    from hhhlab.data.build import BuildOptions, input_files
    from hhhlab.data.builders import stackexchange
    from hhhlab.data.schema import PreferenceGroup

    for path in input_files(folder, stackexchange.PATTERNS):
        for item in stackexchange.build_file(path, BuildOptions()):
            if not isinstance(item, PreferenceGroup):
                continue
            question = item.context.removeprefix("Question: ").removesuffix("\nAnswer:").strip()
            best = max(range(len(item.responses)), key=lambda i: item.scores[i])
            yield Document(f"Human: {question}\n\nAssistant:{item.responses[best]}", "stackexchange")


def general_documents(folder: Path) -> list[Document]:
    files = sorted(p for p in folder.rglob("*") if p.suffix in TEXT_SUFFIXES or p.suffix == ".jsonl")
    if not files:
        raise DataError(f"{folder}: no general-text files (*.txt, *.raw, *.jsonl) for the mix")
    docs = []
    for f in files:
        held = "test" in f.name
        docs += [Document(d.text, "general:heldout" if held else "general") for d in read_file(f)]
    return docs


def _shuffled(docs: list[Document], seed: int) -> list[Document]:
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    return docs


def _in_split(doc: Document, split: str) -> bool:
    held = doc.source.endswith(":heldout") or (
        not doc.source.startswith("general") and is_heldout(doc.text))
    return held == (split == "heldout")


class _Tokens:
    """Tokenise documents lazily and keep a per-source count."""

    def __init__(self, encode: Callable[[list[str]], list[list[int]]]):
        self.encode = encode
        self.joiner = encode([JOINER])[0]

    def stream(self, docs: Sequence[Document], need: int | None) -> tuple[list[int], int]:
        """Tokens of ``docs`` joined by ``JOINER``, stopping once ``need`` tokens are reached."""
        out: list[int] = []
        used = 0
        for start in range(0, len(docs), 256):
            chunk = docs[start : start + 256]
            for ids in self.encode([d.text for d in chunk]):
                out += (self.joiner if out else []) + ids
                used += 1
                if need is not None and len(out) >= need:
                    return out, used
        return out, used


def build_corpus(
    spec: str,
    encode: Callable[[list[str]], list[list[int]]],
    *,
    context_length: int,
    n_windows: int | None = None,
    data_dir: Path | None = None,
    split: str = "train",
    seed: int = 0,
) -> PackedCorpus:
    """Pack ``spec`` (``mix`` or a file) into ``n_windows`` windows of ``context_length`` tokens
    (``None``: as many as the text fills). ``encode(texts) -> token ids`` is the model's
    tokenisation (no special tokens). Too little text for ``n_windows`` is a DataError."""
    if split not in ("train", "heldout"):
        raise ValueError("split must be 'train' or 'heldout'")
    if context_length < 2:
        raise DataError(f"context length {context_length} is too short (at least 2 tokens)")
    tok = _Tokens(encode)
    need = None if n_windows is None else n_windows * context_length
    counts: dict[str, int] = {}
    if spec == "mix":
        if data_dir is None:
            raise DataError("--corpus mix needs --data-dir: a folder with wikitext/ (general text) and "
                            "stackexchange/ (*Posts.xml dumps), laid out like shared/data")
        general = [d for d in general_documents(Path(data_dir) / "wikitext") if _in_split(d, split)]
        se_folder = Path(data_dir) / "stackexchange"
        if not se_folder.exists():
            raise DataError(f"{se_folder}: no StackExchange folder for the mix")
        half = None if need is None else (need + 1) // 2
        g_stream, _ = tok.stream(_shuffled(general, seed), half)
        se_docs = [d for d in stackexchange_documents(se_folder) if _in_split(d, split)]
        s_stream, _ = tok.stream(_shuffled(se_docs, seed), half)
        if need is None:
            half = min(len(g_stream), len(s_stream))
        assert half is not None
        counts = {"general": min(half, len(g_stream)), "stackexchange": min(half, len(s_stream))}
        stream = _interleave(g_stream[:half], s_stream[:half], context_length)
        description = f"mix of {data_dir}/wikitext and {data_dir}/stackexchange ({split})"
    else:
        path = Path(spec)
        docs = [d for d in read_file(path) if is_heldout(d.text) == (split == "heldout")]
        stream, _ = tok.stream(_shuffled(docs, seed), need)
        counts = {str(path): len(stream)}
        description = f"{path} ({split})"
    available = len(stream) // context_length
    if n_windows is not None and available < n_windows:
        have = sum(counts.values())
        raise DataError(
            f"corpus {description} holds {have:,} tokens, fewer than the {need:,} asked for "
            f"({n_windows} windows of {context_length}); ask for fewer tokens or give more text"
            + (" (the mix needs half of them from each source)" if spec == "mix" else ""))
    n = available if n_windows is None else n_windows
    windows = np.asarray(stream[: n * context_length], dtype=np.int32).reshape(n, context_length)
    return PackedCorpus(windows=windows, description=description, tokens_by_source=counts)


def _interleave(a: list[int], b: list[int], context_length: int) -> list[int]:
    """Alternate the two streams window by window, so every stretch of the corpus is ~50/50."""
    out: list[int] = []
    for start in range(0, max(len(a), len(b)), context_length):
        out += a[start : start + context_length] + b[start : start + context_length]
    return out
