"""The build driver: source files -> builder -> preference groups, rejects and skip counts.

Every builder (``hhhlab.data.builders.<source>``) is a generator over one input file that
yields three kinds of item:

* a `PreferenceGroup` — written to the output;
* a `Reject(where, reason, record)` — a malformed record: written to ``OUT.rejects.jsonl``
  with its file, line and reason, and counted;
* a `Skip(reason)` — a well-formed record that the paper's rules leave out (a question with no
  two differently-scored answers, a tie, a deleted comment): counted by reason.

So every input record is accounted for: written, rejected or skipped by a named rule; nothing
is dropped silently. A file that cannot be read at all (bad gzip, XML syntax error) becomes
one reject naming the file and where reading stopped; the build goes on with the next file.

Exact duplicates (`PreferenceGroup.fingerprint`) are dropped and counted; that keeps one
8-byte digest per written group in memory, the only state that grows with the input
(``dedupe=False`` turns it off).
"""

from __future__ import annotations

import fnmatch
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hhhlab.data.schema import JsonlWriter, PreferenceGroup
from hhhlab.errors import DataError, describe_validation_error

XML_CHUNK = 1 << 20
"""Bytes per read when streaming XML dumps."""

MAX_RECORD_CHARS = 2000
"""How much of a rejected record the rejects file keeps (enough to find and fix it)."""


@dataclass(frozen=True)
class Reject:
    """A malformed input record: where it is, why it was refused, and (a prefix of) its text."""

    where: str
    reason: str
    record: str | None = None


@dataclass(frozen=True)
class Skip:
    """A valid record that a documented rule of the builder leaves out."""

    reason: str


Item = PreferenceGroup | Reject | Skip


@dataclass
class BuildOptions:
    """Options shared by the builders; each builder reads the ones it needs (see its docstring)."""

    seed: int = 0
    dedupe: bool = True
    # wikipedia: edit comments that mark a vandalism revert (the paper's regex is unconfirmed)
    wiki_comment_regex: str = r"(?i)\bvandal|\brvv\b"
    # wikipedia: which revisions count as reverts: by comment (the paper's), by identity (text equal
    # to a revision 2..wiki_identity_radius back), or either
    wiki_reverts: str = "comment"
    wiki_identity_radius: int = 15
    # reddit: restrict to the paper's subreddit whitelist (SHP's subreddits mostly are not in it)
    reddit_paper_whitelist: bool = False
    # code: sandbox limits, and an optional JSONL of model samples {task_id, completion}
    code_timeout_s: float = 10.0
    code_memory_mb: int = 512
    code_samples: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildReport:
    """What a build did, for the CLI summary and the tests."""

    source: str
    output: Path
    rejects_path: Path
    files: int = 0
    written: int = 0
    rejected: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common()) or "none"
        return (f"{self.source}: {self.written} groups from {self.files} file(s) -> {self.output} "
                f"in {self.seconds:.1f}s; {self.rejected} rejected (-> {self.rejects_path}); "
                f"{self.duplicates} duplicates dropped; skipped by rule: {skipped}")


FileBuilder = Callable[[Path, BuildOptions], Iterator[Item]]


def describe_error(exc: BaseException) -> str:
    """One line saying why a record was refused (pydantic errors condensed to field: message)."""
    if isinstance(exc, ValidationError):
        return describe_validation_error(exc)
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return str(exc) or type(exc).__name__


RECORD_ERRORS = (DataError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                 ArithmeticError)
"""What converting one malformed record can raise; a builder turns these into a `Reject`."""


def guard(where: str, raw: Any, convert: Callable[[], Iterable[Item] | Item | None]) -> list[Item]:
    """Run ``convert`` for one record; a malformed record becomes a `Reject` instead of a traceback."""
    try:
        out = convert()
    except RECORD_ERRORS as exc:
        return [Reject(where, describe_error(exc), _clip(raw))]
    if out is None:
        return []
    if isinstance(out, (PreferenceGroup, Reject, Skip)):
        return [out]
    return list(out)


def map_jsonl(path: Path, convert: Callable[[dict, str], Iterable[Item] | Item | None]) -> Iterator[Item]:
    """``convert(record, where)`` over the JSON records of a JSON Lines file, streaming: a line
    that is not a JSON object, or a record that ``convert`` cannot handle, becomes a `Reject`."""
    for entry in iter_jsonl_objects(path):
        if isinstance(entry, Reject):
            yield entry
            continue
        where, obj = entry
        yield from guard(where, obj, partial(convert, obj, where))


def stream_xml(path: Path, parser, out: list) -> Iterator[Any]:
    """Feed ``path`` to an expat ``parser`` in chunks and yield what its handlers appended to ``out``
    after each chunk (constant memory); an XML syntax error yields what was parsed, then one Reject
    for the unreadable rest of the file."""
    from xml.parsers import expat

    from hhhlab.data.schema import open_binary

    with open_binary(path) as f:
        try:
            while chunk := f.read(XML_CHUNK):
                parser.Parse(chunk, False)
                yield from out
                out.clear()
            parser.Parse(b"", True)
            yield from out
        except expat.ExpatError as exc:
            yield from out
            yield Reject(f"{path}:{exc.lineno}", f"XML syntax error ({expat.ErrorString(exc.code)}); "
                         "the rest of the file is unreadable", None)


def _clip(raw: Any) -> str | None:
    if raw is None:
        return None
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False, default=str)
    return text[:MAX_RECORD_CHARS]


def iter_lines(path: Path) -> Iterator[tuple[int, str | None]]:
    """``(line number, text)`` of a plain or compressed text file, streaming; a line that is not
    valid UTF-8 comes as ``(line, None)`` so the caller rejects that record alone and goes on."""
    from hhhlab.data.schema import open_binary

    with open_binary(path) as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError:
                yield lineno, None


@dataclass(frozen=True)
class HubInput:
    """``--input hf:NAME[:CONFIG][@SPLIT]``: rows of a Hugging Face dataset, streamed, instead of a
    local file. CONFIG is a config name, or ``key=value[,key=value]`` keyword arguments of
    ``datasets.load_dataset`` (``hf:Anthropic/hh-rlhf:data_dir=harmless-base@test``). NAME may be a
    local folder of data files. Only the JSON-record builders accept it (``HUB_INPUT = True``).

    It quacks like the `Path` of a file (``name``, ``stem``, ``parent.name``, ``suffixes``) so a
    builder names its groups after it exactly as after a file."""

    spec: str

    def parts(self) -> tuple[str, str | None, str]:
        body = self.spec.removeprefix("hf:")
        body, _, split = body.partition("@")
        name, _, config = body.partition(":") if not body.startswith("/") else (body, "", "")
        if not name:
            raise DataError(f"bad hub input {self.spec!r}: expected hf:NAME[:CONFIG][@SPLIT]")
        return name, config or None, split or "train"

    @property
    def name(self) -> str:
        name, config, split = self.parts()
        return ".".join(p.strip("/").replace("/", "__") for p in (name, config or "", split) if p)

    stem = name

    @property
    def parent(self) -> Path:
        name, config, _ = self.parts()
        return Path((config or name).split("=")[-1])

    suffixes: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.spec

    def load(self):
        """The streaming dataset; DataError (naming the input) if it cannot be opened."""
        import datasets

        name, config, split = self.parts()
        kwargs: dict[str, Any] = {}
        if config and "=" in config:
            kwargs = dict(kv.split("=", 1) for kv in config.split(","))
            config = None
        try:
            ds = datasets.load_dataset(name, config, split=split, streaming=True, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the hub client raises many types: network, auth, missing files
            raise DataError(f"cannot load {self.spec}: {type(exc).__name__}: {exc}") from None
        return ds

    def records(self) -> Iterator[tuple[str, Any]]:
        for i, row in enumerate(self.load()):
            yield f"{self.spec}:{i}", row


def iter_jsonl_objects(path: Path | HubInput) -> Iterator[tuple[str, Any] | Reject]:
    """``(where, object)`` for each non-blank line of a JSON Lines file (or each row of a
    `HubInput`); bad JSON -> `Reject`."""
    if isinstance(path, HubInput):
        yield from path.records()
        return
    for lineno, line in iter_lines(path):
        where = f"{path}:{lineno}"
        if line is None:
            yield Reject(where, "not valid UTF-8", None)
            continue
        if not line.strip():
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            yield Reject(where, f"not valid JSON ({exc.msg} at column {exc.colno})", _clip(line))
        except RecursionError:
            yield Reject(where, "JSON nested too deeply", _clip(line))


def input_files(path: Path | str, patterns: tuple[str, ...]) -> list[Path]:
    """The input: one file, or every file under a folder whose name matches ``patterns``.

    Sorted, so a build is deterministic. A folder with no matching file is an error (a wrong
    path should not build an empty dataset)."""
    if str(path).startswith("hf:"):
        return [HubInput(str(path))]  # type: ignore[list-item]
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.exists():
        raise DataError(f"input {path} does not exist")
    files = sorted(p for p in path.rglob("*") if p.is_file() and any(fnmatch.fnmatch(p.name, pat) for pat in patterns))
    if not files:
        raise DataError(f"no input files under {path} match {', '.join(patterns)}")
    return files


def rejects_path_for(output: Path) -> Path:
    """``out.jsonl`` / ``out.jsonl.gz`` -> ``out.rejects.jsonl`` beside it."""
    name = output.name
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    return output.with_name(name.removesuffix(".jsonl") + ".rejects.jsonl")


def build(source: str, input_path: Path | str, output: Path, options: BuildOptions | None = None,
          progress: Callable[[BuildReport], None] | None = None) -> BuildReport:
    """Build ``output`` from ``input_path`` with the named builder; see the module docstring."""
    from hhhlab.data.builders import get_builder

    options = options or BuildOptions()
    module = get_builder(source)
    if hasattr(module, "check_options"):  # bad options fail before any output is written
        module.check_options(options)
    if str(input_path).startswith("hf:") and not getattr(module, "HUB_INPUT", False):
        raise DataError(f"{source} reads its dump files; hf: input works for hh-rlhf, reddit, summarize, "
                        "hellaswag, truthfulqa and code")
    # A builder reading something other than files (a database URL) names its own inputs.
    files = module.input_files(input_path) if hasattr(module, "input_files") else input_files(input_path, module.PATTERNS)
    for f in files:
        if isinstance(f, HubInput):
            f.load()  # an unreachable or misnamed dataset is an error before any output is written
    output = Path(output)
    report = BuildReport(source, output, rejects_path_for(output), files=len(files))
    seen: set[bytes] = set()
    t0 = time.perf_counter()
    with JsonlWriter(output) as out, JsonlWriter(report.rejects_path) as rejects:
        for file in files:
            items = module.build_file(file, options)
            while True:
                try:
                    item = next(items)
                except StopIteration:
                    break
                except (DataError, OSError, EOFError, UnicodeDecodeError, *RECORD_ERRORS) as exc:
                    # The file itself is unreadable past this point (bad compression, XML syntax).
                    report.rejected += 1
                    rejects.write_raw({"where": str(file), "reason": f"cannot read the rest of the file: "
                                       f"{describe_error(exc)}", "record": None})
                    break
                if isinstance(item, PreferenceGroup):
                    if options.dedupe:
                        digest = bytes.fromhex(item.fingerprint())[:8]
                        if digest in seen:
                            report.duplicates += 1
                            continue
                        seen.add(digest)
                    out.write(item)
                    report.written += 1
                    if progress and report.written % 10000 == 0:
                        progress(report)
                elif isinstance(item, Reject):
                    report.rejected += 1
                    rejects.write_raw({"where": item.where, "reason": item.reason, "record": item.record})
                else:
                    report.skipped[item.reason] += 1
    report.seconds = time.perf_counter() - t0
    return report
