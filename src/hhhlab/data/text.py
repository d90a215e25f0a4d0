"""Text cleaning for the builders: HTML (StackExchange bodies) and wikitext (Wikipedia).

HTML: tags dropped, entities decoded, block elements (p, br, li, pre, headings) become line
breaks so paragraphs and code stay readable; the text inside <code>/<pre> is kept.

Wikitext: parsed with mwparserfromhell; links become their visible text, while citations
(<ref>), templates ({{...}}: infoboxes, citation templates), tables, files/images, categories,
comments and HTML tags are removed (the paper: "strip hyperlinks, citations, tables and image
placeholders").
"""

from __future__ import annotations

import html
import re

_SKIP = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_LI = re.compile(r"<li\b[^>]*>", re.IGNORECASE)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_BLOCK = re.compile(r"</?(?:p|div|pre|blockquote|h[1-6]|tr|hr|ul|ol|table)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_BLANK_LINES = re.compile(r"\n[ \t]*(\n[ \t]*)+")


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags stripped, entities decoded, paragraphs kept.

    Regular expressions rather than an HTML parser: StackExchange bodies are sanitized HTML in
    which every literal ``<`` of the text is escaped, so a tag is exactly ``<...>``; this is
    ~10x faster than ``html.parser`` on real dumps. A stray unescaped ``<`` (other sources) loses
    the text up to the next ``>``."""
    text = _SKIP.sub("", fragment)
    text = _LI.sub("\n- ", text)
    text = _BR.sub("\n", text)
    text = _BLOCK.sub("\n", text)
    text = html.unescape(_TAG.sub("", text))
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


# --------------------------------------------------------------------------------------------
# Wikitext

DROPPED_SECTIONS = {
    "references", "bibliography", "external links", "see also", "further reading", "notes",
    "sources", "footnotes", "citations", "notes and references", "works cited", "literature",
}
"""Section titles (case-folded) left out: the paper drops "sections such as references and
bibliography"; we extend that to the other lists of links and sources."""

_HEADING = re.compile(r"^(={2,6})\s*(.*?)\s*\1\s*$", re.MULTILINE)
_TABLE = re.compile(r"^\{\|.*?^\|\}", re.MULTILINE | re.DOTALL)
_FILE_PREFIXES = ("file:", "image:", "category:", "media:")


def split_sections(wikitext: str) -> list[tuple[str, str]]:
    """``[(title, body), ...]`` in page order; the lead (text before the first heading) has title ""."""
    sections: list[tuple[str, str]] = []
    pos, title = 0, ""
    for m in _HEADING.finditer(wikitext):
        sections.append((title, wikitext[pos:m.start()]))
        title, pos = m.group(2), m.end()
    sections.append((title, wikitext[pos:]))
    return sections


def strip_wikitext(wikitext: str) -> str:
    """Visible prose of a wikitext fragment: see the module docstring for what goes."""
    import mwparserfromhell

    text = _TABLE.sub("", wikitext)
    code = mwparserfromhell.parse(text)
    for node in list(code.filter_tags(recursive=False)):
        if str(node.tag).lower() in {"ref", "gallery", "references", "math", "table"}:
            _remove(code, node)
    for template in list(code.filter_templates(recursive=False)):
        _remove(code, template)
    for link in list(code.filter_wikilinks(recursive=False)):
        if str(link.title).strip().lower().lstrip(":").startswith(_FILE_PREFIXES):
            _remove(code, link)
    text = code.strip_code(normalize=True, collapse=True, keep_template_params=False)
    text = re.sub(r"[ \t]+", " ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return "\n".join(line.strip() for line in text.strip().splitlines())


def _remove(code, node) -> None:
    try:
        code.remove(node)
    except ValueError:  # already removed with its parent
        pass
