"""MediaWiki history exports (``pages-meta-history*.xml[.bz2]``) -> vandalism-revert pairs.

The paper's rules (App. C.1, digest §5.1): take edits whose comment says they revert suspected
vandalism; the restored version is better than the vandalized one; keep only the edited
sections, one pair per section, formatted::

    PAGE TITLE: ...
    SECTION TITLE: ...
    SECTION BODY: ...

with hyperlinks, citations, tables and image placeholders stripped and sections such as
references and bibliography dropped.

Choices the paper leaves open, and ours:
* a revert is a revision whose ``<comment>`` matches ``--comment-regex`` (default
  ``(?i)\\bvandal|\\brvv\\b``: "vandalism", "vandal", "rvv"); the paper's regex is unconfirmed.
  The vandalized version is the revision just before it in the dump (its parent); a revert
  whose ``<parentid>`` is not that revision is skipped ("parent revision not in dump");
* sections are matched by title (and occurrence, for repeated titles); the lead section is
  titled "Introduction". A section present in only one version is paired with an empty body
  (vandals blank sections and add junk ones). Sections equal after cleaning give no pair;
* the context is ``"PAGE TITLE: {page}\\nSECTION TITLE: {section}\\nSECTION BODY:"`` and the
  response is ``" " + body``; cleaning is `hhhlab.data.text.strip_wikitext` (mwparserfromhell);
* only articles (namespace 0); each other revision is counted as skipped by its reason.

Streaming: expat in 1 MiB chunks; only the previous revision's text is held in memory.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from xml.parsers import expat

from hhhlab.data.build import BuildOptions, Item, Reject, Skip, guard, stream_xml
from hhhlab.data.schema import PreferenceGroup, stable_hash
from hhhlab.data.text import DROPPED_SECTIONS, split_sections, strip_wikitext
from hhhlab.errors import DataError

PATTERNS = ("*.xml", "*.xml.gz", "*.xml.bz2", "*.xml.xz")
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


def keyed_sections(wikitext: str) -> dict[tuple[str, int], str]:
    """``{(title, occurrence): cleaned body}`` without the dropped sections (references, ...)."""
    seen: Counter = Counter()
    out: dict[tuple[str, int], str] = {}
    for title, body in split_sections(wikitext):
        title = strip_wikitext(title) if title else LEAD_TITLE
        if title.strip().casefold() in DROPPED_SECTIONS:
            continue
        key = (title, seen[title])
        seen[title] += 1
        out[key] = strip_wikitext(body)
    return out


def section_pairs(page_title: str, before: str, after: str, rev_id: str, meta: dict) -> list[PreferenceGroup]:
    """One group per section that differs between the vandalized ``before`` and restored ``after``."""
    old, new = keyed_sections(before), keyed_sections(after)
    groups = []
    for key in list(new) + [k for k in old if k not in new]:
        good, bad = new.get(key, ""), old.get(key, "")
        if good == bad:
            continue
        title, occurrence = key
        groups.append(PreferenceGroup(
            id=f"wikipedia:{rev_id}:{stable_hash(title, occurrence):016x}",
            context=f"PAGE TITLE: {page_title}\nSECTION TITLE: {title}\nSECTION BODY:",
            responses=[" " + good if good else "", " " + bad if bad else ""], scores=[1, 0], kind="ranked",
            source="wikipedia", metadata={**meta, "section": title}))
    return groups


def check_options(options: BuildOptions) -> re.Pattern:
    """The compiled comment regex; DataError (before any file is read) if it is invalid."""
    try:
        return re.compile(options.wiki_comment_regex)
    except re.error as exc:
        raise DataError(f"invalid --comment-regex {options.wiki_comment_regex!r}: {exc}") from None


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    pattern = check_options(options)
    prev: dict | None = None
    for entry in iter_revisions(path):
        if isinstance(entry, Reject):
            yield entry
            continue
        line, rev = entry
        previous, prev = prev, rev
        if previous is not None and previous["page_title"] != rev["page_title"]:
            previous = None
        where = f"{path}:{line}"
        if rev.get("ns", "0").strip() != "0":
            yield Skip("revision outside the article namespace")
            continue
        if not pattern.search(rev.get("comment", "")):
            yield Skip("revision without a vandalism-revert comment")
            continue
        if previous is None or (rev.get("parentid") and rev["parentid"] != previous.get("id")):
            yield Skip("parent revision not in dump")
            continue

        def convert(rev=rev, previous=previous):
            groups = section_pairs(rev["page_title"], previous.get("text", ""), rev.get("text", ""), rev.get("id", ""),
                                   {"page_title": rev["page_title"], "revision_id": rev.get("id"),
                                    "vandalized_revision_id": previous.get("id"), "comment": rev.get("comment"),
                                    "timestamp": rev.get("timestamp")})
            return groups or Skip("revert with no section changed after cleaning")

        yield from guard(where, {"revision_id": rev.get("id"), "page": rev.get("page_title")}, convert)
