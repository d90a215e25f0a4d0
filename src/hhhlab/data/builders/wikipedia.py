"""MediaWiki history exports (``pages-meta-history*.xml[.bz2|.gz|.xz|.lzma]``, or a ``.7z``
unpacked to plain XML) -> vandalism-revert pairs.

The paper's rules (App. C.1, digest §5.1): take edits whose comment says they revert suspected
vandalism; the restored version is better than the vandalized one; keep only the edited
sections, one pair per section, formatted::

    PAGE TITLE: ...
    SECTION TITLE: ...
    SECTION BODY: ...

with hyperlinks, citations, tables and image placeholders stripped and sections such as
references and bibliography dropped.

Choices the paper leaves open, and ours:
* which revisions are reverts (``--reverts``):
  - ``comment`` (default, the paper's): the ``<comment>`` matches ``--comment-regex`` (default
    ``(?i)\\bvandal|\\brvv\\b``: "vandalism", "vandal", "rvv"); the paper's regex is unconfirmed;
  - ``identity``: the revision's text is byte-identical to one 2..``--identity-radius`` (15)
    revisions back on the same page (an undo or rollback, whatever the comment says); the
    revisions in between are what it reverted. This finds reverts with no or an unhelpful
    comment, but also reverts in edit wars that were not vandalism;
  - ``both``: either. Metadata ``revert_by`` says which rule(s) matched, ``identical_to`` the
    earlier revision an identity revert restored;
* the vandalized version is the revision just before the revert in the dump (its parent); a
  revert whose ``<parentid>`` is not that revision is skipped ("parent revision not in dump").
  Schema 0.4 dumps (no ``<parentid>``) are taken in dump order, which is chronological;
* sections are matched by title (and occurrence, for repeated titles); the lead section is
  titled "Introduction". A section present (or non-empty) in only one version gives no pair
  (skipped: "section blank on one side", the schema's rule that an empty reply is not data),
  though vandals do blank sections. Sections equal after cleaning give no pair;
* the context is ``"PAGE TITLE: {page}\\nSECTION TITLE: {section}\\nSECTION BODY:"`` and the
  response is ``" " + body``; cleaning is `hhhlab.data.text.strip_wikitext` (mwparserfromhell);
* only articles (namespace 0); each other revision is counted as skipped by its reason.

Streaming, constant memory: expat in 1 MiB chunks over the decompressed stream; in memory are
the current and the previous revision's text and, for identity reverts, 8-byte hashes of the
last ``--identity-radius`` revisions' texts (never the texts), and a bounded cache of cleaned
sections. Only sections whose raw wikitext differs are cleaned, and each distinct section once
while it stays in the cache (cleaning is the slow part: ~70 KB pages, thousands of reverts).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from xml.parsers import expat

from hhhlab.data.build import BuildOptions, Item, Reject, Skip, guard, stream_xml
from hhhlab.data.schema import PreferenceGroup, stable_hash
from hhhlab.data.text import DROPPED_SECTIONS, split_sections, strip_wikitext
from hhhlab.errors import DataError

PATTERNS = ("*.xml", "*.xml.gz", "*.xml.bz2", "*.xml.xz", "*.xml.lzma", "*.xml-p*.bz2", "*.xml-p*.gz",
            "*.xml-p*.xz")
REVERT_MODES = ("comment", "identity", "both")
LEAD_TITLE = "Introduction"
_FIELDS = {("page", "title"), ("page", "ns"), ("revision", "id"), ("revision", "parentid"),
           ("revision", "comment"), ("revision", "text"), ("revision", "timestamp")}


def iter_revisions(path: Path) -> Iterator[tuple[int, dict] | Reject]:
    """``(line, revision)`` in dump order; each revision dict has the page's title and ns."""
    out: list[tuple[int, dict]] = []
    stack: list[str] = []
    page: dict = {}
    rev: dict = {}
    buf: list[str] = []
    parser = expat.ParserCreate()
    capturing = [False]

    def start(name, attrs):
        parent = stack[-1] if stack else ""
        stack.append(name)
        if name == "page":
            page.clear()
        elif name == "revision":
            rev.clear()
            rev["line"] = parser.CurrentLineNumber
        capturing[0] = (parent, name) in _FIELDS
        buf.clear()

    def end(name):
        stack.pop()
        parent = stack[-1] if stack else ""
        if (parent, name) in _FIELDS:
            value = "".join(buf)
            (page if parent == "page" else rev)[name] = value
        elif name == "revision":
            out.append((rev["line"], {**rev, "page_title": page.get("title", ""), "ns": page.get("ns", "0")}))
        capturing[0] = False
        buf.clear()

    def chars(data):
        if capturing[0]:
            buf.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    yield from stream_xml(path, parser, out)


@functools.lru_cache(maxsize=4096)
def _clean_title(title: str) -> str:
    return strip_wikitext(title) if title else LEAD_TITLE


@functools.lru_cache(maxsize=1024)
def _clean_body(body: str) -> str:
    """`strip_wikitext`, memoized: reverts restore the same sections over and over (edit wars,
    repeated blanking), and cleaning is the slow step. Bounded, so memory stays constant."""
    return strip_wikitext(body)


def raw_sections(wikitext: str) -> dict[tuple[str, int], str]:
    """``{(title, occurrence): raw wikitext body}`` without the dropped sections (references, ...)."""
    seen: Counter = Counter()
    out: dict[tuple[str, int], str] = {}
    for title, body in split_sections(wikitext):
        title = _clean_title(title)
        if title.strip().casefold() in DROPPED_SECTIONS:
            continue
        key = (title, seen[title])
        seen[title] += 1
        out[key] = body
    return out


def keyed_sections(wikitext: str) -> dict[tuple[str, int], str]:
    """``{(title, occurrence): cleaned body}`` without the dropped sections (references, ...)."""
    return {key: strip_wikitext(body) for key, body in raw_sections(wikitext).items()}


def section_pairs(page_title: str, before: str, after: str, rev_id: str, meta: dict
                  ) -> list[PreferenceGroup | Skip]:
    """One group per section that differs between the vandalized ``before`` and restored ``after``.

    Sections with equal raw wikitext are equal after cleaning too, so only the others are cleaned."""
    old, new = raw_sections(before), raw_sections(after)
    groups: list[PreferenceGroup | Skip] = []
    for key in list(new) + [k for k in old if k not in new]:
        if new.get(key) == old.get(key):
            continue
        good, bad = _clean_body(new.get(key, "")), _clean_body(old.get(key, ""))
        if good == bad:
            continue
        if not good or not bad:  # the schema's rule: an empty reply is not data (docs/data.md)
            groups.append(Skip("section blank on one side (empty reply)"))
            continue
        title, occurrence = key
        groups.append(PreferenceGroup(
            id=f"wikipedia:{rev_id}:{stable_hash(title, occurrence):016x}",
            context=f"PAGE TITLE: {page_title}\nSECTION TITLE: {title}\nSECTION BODY:",
            responses=[" " + good, " " + bad], scores=[1, 0], kind="ranked",
            source="wikipedia", metadata={**meta, "section": title}))
    return groups


def check_options(options: BuildOptions) -> re.Pattern:
    """The compiled comment regex; DataError (before any file is read) if an option is invalid."""
    if options.wiki_reverts not in REVERT_MODES:
        raise DataError(f"--reverts must be one of {', '.join(REVERT_MODES)}, not {options.wiki_reverts!r}")
    if options.wiki_identity_radius < 2:
        raise DataError(f"--identity-radius must be at least 2, not {options.wiki_identity_radius}")
    try:
        return re.compile(options.wiki_comment_regex)
    except re.error as exc:
        raise DataError(f"invalid --comment-regex {options.wiki_comment_regex!r}: {exc}") from None


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    pattern = check_options(options)
    by_comment = options.wiki_reverts in {"comment", "both"}
    by_identity = options.wiki_reverts in {"identity", "both"}
    not_revert = ("revision without a vandalism-revert comment" if options.wiki_reverts == "comment"
                  else "revision that is not a revert")
    prev: dict | None = None
    recent: deque[tuple[bytes, str]] = deque(maxlen=options.wiki_identity_radius)  # (text hash, revision id)
    for entry in iter_revisions(path):
        if isinstance(entry, Reject):
            yield entry
            continue
        line, rev = entry
        previous, prev = prev, rev
        if previous is not None and previous["page_title"] != rev["page_title"]:
            previous = None
            recent.clear()
        identical_to = None
        if by_identity:
            digest = text_hash(rev.get("text", ""))
            # revisions 2..radius back: equal to the one just before is a null edit, not a revert
            identical_to = next((rid for h, rid in list(recent)[:-1][::-1] if h == digest), None)
            recent.append((digest, rev.get("id", "")))
        where = f"{path}:{line}"
        if rev.get("ns", "0").strip() != "0":
            yield Skip("revision outside the article namespace")
            continue
        matched = [rule for rule, hit in (("comment", by_comment and bool(pattern.search(rev.get("comment", "")))),
                                          ("identity", identical_to is not None)) if hit]
        if not matched:
            yield Skip(not_revert)
            continue
        if previous is None or (rev.get("parentid") and rev["parentid"] != previous.get("id")):
            yield Skip("parent revision not in dump")
            continue

        def convert(rev=rev, previous=previous, matched=matched, identical_to=identical_to):
            meta = {"page_title": rev["page_title"], "revision_id": rev.get("id"),
                    "vandalized_revision_id": previous.get("id"), "comment": rev.get("comment"),
                    "timestamp": rev.get("timestamp"), "revert_by": "+".join(matched)}
            if identical_to is not None:
                meta["identical_to"] = identical_to
            groups = section_pairs(rev["page_title"], previous.get("text", ""), rev.get("text", ""),
                                   rev.get("id", ""), meta)
            return groups or Skip("revert with no section changed after cleaning")

        yield from guard(where, {"revision_id": rev.get("id"), "page": rev.get("page_title")}, convert)
