"""Properties of the text cleaners the builders rely on (HTML bodies, wikitext sections)."""

from __future__ import annotations

import html

from hypothesis import given, settings
from hypothesis import strategies as st

from hhhlab.data.text import html_to_text, split_sections, strip_wikitext

line_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"),
                    max_size=40)
TAGS = ["p", "b", "i", "code", "pre", "li", "ul", "blockquote", "h2", "a href='x'", "span class=\"y\""]


@settings(max_examples=200, deadline=None)
@given(s=line_text)
def test_escaped_text_survives_exactly(s):
    assert html_to_text(html.escape(s)) == s.strip()


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(st.tuples(st.sampled_from(TAGS), line_text), max_size=6))
def test_tags_are_removed_and_text_kept(parts):
    fragment = "".join(f"<{tag}>{html.escape(text)}</{tag.split()[0]}>" for tag, text in parts)
    out = html_to_text(fragment)
    squashed = "".join(out.split())
    for _, text in parts:
        assert "".join(text.split()) in squashed
    assert "<" not in out or any("<" in t for _, t in parts)


def test_html_blocks_and_entities():
    assert html_to_text("<p>Hi &amp; there<br/>x</p><pre><code>a &lt; b\n  c</code></pre><ul><li>one</li><li>two</li></ul>"
                        "<script>evil()</script>") == "Hi & there\nx\n\na < b\n  c\n\n- one\n- two"


@settings(max_examples=100, deadline=None)
@given(titles=st.lists(st.text("abcdef XYZ", min_size=1, max_size=8).map(str.strip).filter(bool), max_size=5),
       lead=st.text("lorem ipsum\n", max_size=20))
def test_split_sections_finds_every_heading(titles, lead):
    text = lead + "".join(f"\n== {t} ==\nbody {i}\n" for i, t in enumerate(titles))
    sections = split_sections(text)
    assert [t for t, _ in sections] == ["", *titles]
    assert all(f"body {i}" in body for i, (_, body) in enumerate(sections[1:]))


@settings(max_examples=150, deadline=None)
@given(s=st.text(st.sampled_from(list("[]{}|<>=/'ab: \nrefFile")), max_size=60))
def test_strip_wikitext_never_raises(s):
    assert isinstance(strip_wikitext(s), str)


def test_strip_wikitext_rules():
    text = ("Lead [[Link|shown]] and [[plain]] {{cite web|url=x}} a<ref>cite</ref>.\n[[File:X.jpg|thumb|cap]]\n"
            "{| class=wikitable\n| a || b\n|}\nSome '''bold''' [http://x.com ext link]. <!-- c -->")
    assert strip_wikitext(text) == "Lead shown and plain a.\n\nSome bold ext link."
