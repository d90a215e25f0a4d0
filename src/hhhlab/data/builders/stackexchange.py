"""StackExchange data dumps (``Posts.xml``: one ``<row .../>`` per post) -> one group per question.

The paper's rules (App. C.1, digest §5.1):
* answer score = ``round(log2(1 + upvotes))``, ``+1`` if it is the accepted answer, and ``-1``
  (instead of the log) when upvotes are negative — the same formula as the HF
  ``stack-exchange-preferences`` card;
* context ``Question: ...`` newline ``Answer: ...``;
* questions where no two answers have different scores are skipped.

Choices the paper leaves open, and ours:
* "upvotes" is the post's ``Score`` attribute, i.e. up minus down votes: the public dumps carry
  no separate up-vote count;
* the group keeps *every* answer of the question with its score; the paper's "sample two
  answers with different scores" is ``pairs(group, "sample", seed)`` (one pair per question,
  seeded) and ``pairs(group, "all")`` gives every ordered pair with different scores;
* text: HTML stripped with the standard-library parser (paragraphs and code blocks kept as
  lines, entities decoded); the context is ``"Question: {title}\\n{body}\\nAnswer:"`` and each
  response is ``" " + answer``; answers that are empty after stripping are skipped;
* all sites are used; the site name comes from the file name (``beer.stackexchange.com.Posts.xml``)
  or, for a plain ``Posts.xml``, from its folder.

The Hugging Face copy ``HuggingFaceH4/stack-exchange-preferences`` (``--input hf:...`` or its
JSON Lines files: ``qid, question, answers[{answer_id, pm_score, selected, text}], metadata``)
already carries the paper's score as ``pm_score``: one group per row, HTML stripped the same way,
context ``"Question: {question}\nAnswer:"`` (the copy has no separate title).

Streaming: the XML is read with expat in 1 MiB chunks (constant memory, line numbers for
rejects); posts go to a temporary SQLite file so that answers can be grouped with their
question however far apart they are in the dump (a 10 GB dump needs disk, not RAM). Posts that
are neither questions nor answers (tag wikis, ...) and answers whose question is not in the
dump are counted as skipped.
"""

from __future__ import annotations

import math
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from xml.parsers import expat

from hhhlab.data.build import (
    BuildOptions,
    HubInput,
    Item,
    Reject,
    Skip,
    guard,
    map_jsonl,
    stream_xml,
)
from hhhlab.data.schema import PreferenceGroup
from hhhlab.data.text import html_to_text

PATTERNS = ("*Posts.xml", "*Posts.xml.gz", "*Posts.xml.bz2", "*Posts.xml.xz")
HUB_INPUT = True  # hf:HuggingFaceH4/stack-exchange-preferences (rows, see the module docstring)


def answer_score(upvotes: int, accepted: bool) -> int:
    """The paper's preference score of an answer (see the module docstring)."""
    base = -1 if upvotes < 0 else round(math.log2(1 + upvotes))
    return base + (1 if accepted else 0)


def site_name(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    name = name.removesuffix("Posts.xml").rstrip(".")
    return (name or path.parent.name).removesuffix(".stackexchange.com")


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, str]] | Reject]:
    """``(line, attributes)`` for each ``<row>``; an XML syntax error ends the file with a Reject."""
    rows: list[tuple[int, dict[str, str]]] = []
    parser = expat.ParserCreate()

    def start(name: str, attrs: dict[str, str]) -> None:
        if name == "row":
            rows.append((parser.CurrentLineNumber, attrs))

    parser.StartElementHandler = start
    yield from stream_xml(path, parser, rows)


_SCHEMA = """
CREATE TABLE q (id INTEGER PRIMARY KEY, title TEXT, body TEXT, accepted INTEGER, line INTEGER);
CREATE TABLE a (id INTEGER PRIMARY KEY, parent INTEGER, score INTEGER, body TEXT, line INTEGER);
"""


def _int(attrs: dict[str, str], key: str, required: bool = True) -> int | None:
    value = attrs.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"missing attribute {key}")
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"attribute {key}={value!r} is not an integer") from None


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    if isinstance(path, HubInput) or ".jsonl" in path.suffixes or ".json" in path.suffixes:
        yield from map_jsonl(path, _h4_row)
        return
    site = site_name(path)
    with tempfile.TemporaryDirectory(prefix="hhhlab-se-") as tmp:
        db = sqlite3.connect(Path(tmp) / "posts.sqlite")
        db.executescript(_SCHEMA)
        yield from _load(path, db)
        db.commit()
        yield from _groups(path, site, db)
        db.close()


def _load(path: Path, db: sqlite3.Connection) -> Iterator[Item]:
    for entry in iter_rows(path):
        if isinstance(entry, Reject):
            yield entry
            continue
        line, attrs = entry
        where = f"{path}:{line}"

        def insert(attrs=attrs, line=line):
            post_id = _int(attrs, "Id")
            kind = _int(attrs, "PostTypeId")
            try:
                if kind == 1:
                    db.execute("INSERT INTO q VALUES (?,?,?,?,?)", (post_id, attrs.get("Title", ""),
                               attrs.get("Body", ""), _int(attrs, "AcceptedAnswerId", False), line))
                elif kind == 2:
                    db.execute("INSERT INTO a VALUES (?,?,?,?,?)", (post_id, _int(attrs, "ParentId"),
                               _int(attrs, "Score"), attrs.get("Body", ""), line))
                else:
                    return Skip(f"post type {kind} (not a question or answer)")
            except sqlite3.IntegrityError:
                raise ValueError(f"duplicate post Id {post_id}") from None
            return None

        yield from guard(where, attrs, insert)


def _groups(path: Path, site: str, db: sqlite3.Connection) -> Iterator[Item]:
    answers = db.execute("SELECT parent, id, score, body, line FROM a ORDER BY parent, id")
    current: int | None = None
    batch: list[tuple] = []
    for row in answers:
        if row[0] != current and batch:
            yield from _question(path, site, db, current, batch)
            batch = []
        current = row[0]
        batch.append(row)
    if batch:
        yield from _question(path, site, db, current, batch)
    # questions that received no answer at all
    for (n,) in db.execute("SELECT COUNT(*) FROM q WHERE id NOT IN (SELECT parent FROM a)"):
        for _ in range(n):
            yield Skip("question with fewer than two answers")


def _question(path: Path, site: str, db: sqlite3.Connection, qid: int | None, answers: list[tuple]) -> Iterator[Item]:
    q = db.execute("SELECT title, body, accepted, line FROM q WHERE id = ?", (qid,)).fetchone()
    if q is None:
        for _ in answers:
            yield Skip("answer to a question not in this dump")
        return
    title, body, accepted, line = q
    where = f"{path}:{line}"

    def convert():
        texts, scores, ids, votes = [], [], [], []
        skips: list[Item] = []
        for _, aid, upvotes, abody, _aline in answers:
            text = html_to_text(abody)
            if not text:
                skips.append(Skip("empty answer after HTML stripping"))
                continue
            texts.append(" " + text)
            scores.append(answer_score(upvotes, aid == accepted))
            ids.append(aid)
            votes.append(upvotes)
        if len(texts) < 2:
            return [*skips, Skip("question with fewer than two answers")]
        if len(set(scores)) < 2:
            return [*skips, Skip("no two answers with different scores")]
        context = f"Question: {title.strip()}\n{html_to_text(body)}\nAnswer:"  # titles are plain text
        group = PreferenceGroup(id=f"stackexchange:{site}:{qid}", context=context, responses=texts,
                                scores=scores, kind="ranked", source="stackexchange",
                                metadata={"site": site, "question_id": qid, "answer_ids": ids, "votes": votes,
                                          "accepted_answer_id": accepted})
        return [*skips, group]

    yield from guard(where, {"question_id": qid, "title": title}, convert)


def _h4_row(obj: dict, where: str) -> Item:
    """One ``stack-exchange-preferences`` row -> one group (its ``pm_score`` is the paper's score)."""
    answers = obj["answers"]
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise TypeError("'answers' must be a list of objects")
    texts, scores, ids = [], [], []
    for a in answers:
        text = html_to_text(str(a["text"]))
        score = a["pm_score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)):
            raise TypeError(f"pm_score must be a number, got {score!r}")
        if text:
            texts.append(" " + text)
            scores.append(float(score))
            ids.append(a.get("answer_id"))
    if len(texts) < 2:
        return Skip("question with fewer than two answers")
    if len(set(scores)) < 2:
        return Skip("no two answers with different scores")
    question = obj["question"]
    if not isinstance(question, str):
        raise TypeError("'question' must be a string")
    meta = obj.get("metadata")
    return PreferenceGroup(id=f"stackexchange:h4:{obj['qid']}", context=f"Question: {html_to_text(question)}\nAnswer:",
                           responses=texts, scores=scores, kind="ranked", source="stackexchange",
                           metadata={"question_id": obj["qid"], "answer_ids": ids,
                                     "site": meta[0] if isinstance(meta, list) and meta else None})
