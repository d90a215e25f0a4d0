"""The preference-group schema: validation, JSONL / HF round trips, pairs, binarize, recast."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hhhlab.data.schema import (
    JsonlWriter,
    PreferenceGroup,
    binarize,
    from_hf_dataset,
    pairs,
    read_jsonl,
    recast_binary,
    to_hf_dataset,
    write_jsonl,
)
from hhhlab.errors import DataError

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
# a response has text (the schema rejects empty/whitespace replies, docs/data.md)
reply = text.filter(lambda t: t.strip() != "")


@st.composite
def groups(draw, kind=None):
    n = draw(st.integers(2, 6))
    kind = kind or draw(st.sampled_from(["ranked", "binary"]))
    if kind == "binary":
        scores = draw(st.lists(st.sampled_from([0, 1]), min_size=n, max_size=n).filter(lambda s: len(set(s)) == 2))
    else:
        scores = draw(st.lists(st.integers(-3, 8), min_size=n, max_size=n).filter(lambda s: len(set(s)) >= 2))
    return PreferenceGroup(
        id=draw(st.text(min_size=1, max_size=10)), context=draw(text),
        responses=draw(st.lists(reply, min_size=n, max_size=n)), scores=scores, kind=kind,
        source=draw(st.sampled_from(["stackexchange", "ethics", "x"])),
        metadata=draw(st.dictionaries(st.sampled_from(["group_id", "site", "n"]), st.integers() | text, max_size=3)))


def G(**kw):
    base = dict(id="g", context="Q:", responses=[" a", " b"], scores=[1, 0], kind="ranked", source="t")
    return PreferenceGroup(**{**base, **kw})


@pytest.mark.parametrize("kw, reason", [
    (dict(responses=[" a"], scores=[1]), "at least 2"),
    (dict(responses=[" a", " b"], scores=[1, 0, 2]), "3 scores"),
    (dict(scores=[1, 1]), "same score"),
    (dict(scores=[1, float("nan")]), "not finite"),
    (dict(kind="binary", scores=[2, 0]), "0/1"),
    (dict(kind="sorted"), "kind"),
    (dict(id=""), "id"),
])
def test_invalid_groups_are_refused_with_a_reason(kw, reason):
    with pytest.raises(ValueError, match=reason):
        G(**kw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gs=st.lists(groups(), max_size=5), suffix=st.sampled_from([".jsonl", ".jsonl.gz", ".jsonl.bz2"]))
def test_jsonl_round_trip(tmp_path, gs, suffix):
    path = tmp_path / f"out{suffix}"
    assert write_jsonl(gs, path) == len(gs)
    assert list(read_jsonl(path)) == gs


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(G().to_json() + "\n\n" + '{"id": "b", "context": "c"\n')
    it = read_jsonl(path)
    assert next(it) == G()
    with pytest.raises(DataError, match=r"x\.jsonl:3: not valid JSON"):
        next(it)
    path.write_text(json.dumps({**G().model_dump(), "scores": [1]}) + "\n")
    with pytest.raises(DataError, match=r"x\.jsonl:1: invalid preference group .*scores"):
        list(read_jsonl(path))


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), JsonlWriter(path) as w:
        w.write(G())
        raise RuntimeError("crash")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_hf_dataset_round_trip():
    gs = [G(), G(id="h", metadata={"group_id": "deontology:test:0", "nested": {"a": [1, 2]}}, kind="binary")]
    ds = to_hf_dataset(gs)
    assert ds.num_rows == 2 and set(ds.column_names) == set(PreferenceGroup.model_fields)
    assert list(from_hf_dataset(ds)) == gs


def test_from_hf_reports_bad_rows():
    with pytest.raises(DataError, match="row 0: invalid preference group"):
        list(from_hf_dataset([{"id": "x", "context": "", "responses": ["a"], "scores": [1], "kind": "ranked",
                               "source": "s", "metadata": "{}"}]))


@settings(max_examples=100, deadline=None)
@given(g=groups(), seed=st.integers(0, 10))
def test_pairs_all_and_sample(g, seed):
    all_pairs = pairs(g, "all")
    expected = sum(1 for a in g.scores for b in g.scores if a > b)
    assert len(all_pairs) == expected
    score = {}
    for r, s in zip(g.responses, g.scores):
        score.setdefault(r, set()).add(s)
    for p in all_pairs:
        assert max(score[p.chosen]) > min(score[p.rejected])
        assert p.context == g.context and p.group_id == g.id
    sampled = pairs(g, "sample", seed=seed)
    assert len(sampled) == 1 and sampled[0] in all_pairs
    assert pairs(g, "sample", seed=seed) == sampled  # deterministic


def test_sample_depends_on_seed_and_id_not_order():
    g = G(responses=[" a", " b", " c", " d", " e"], scores=[4, 3, 2, 1, 0])
    picks = {(pairs(g, "sample", seed=s)[0].chosen, pairs(g, "sample", seed=s)[0].rejected) for s in range(40)}
    assert len(picks) > 3  # the seed matters
    with pytest.raises(ValueError):
        pairs(g, "some")


def test_binarize_exact_format():
    g = G(context="Question: Why?\nAnswer:", responses=[" Because.", " No."], scores=[3, 1])
    (p,) = pairs(g)
    good_a, bad_b = binarize(p)
    assert good_a.context == bad_b.context == ""
    assert good_a.responses == ["GOOD: Question: Why?\nAnswer: Because.", "BAD: Question: Why?\nAnswer: Because."]
    assert bad_b.responses == ["BAD: Question: Why?\nAnswer: No.", "GOOD: Question: Why?\nAnswer: No."]
    assert good_a.scores == bad_b.scores == [1, 0] and good_a.kind == "binary"
    # both halves keep the original context as split key, so a split never separates them
    assert good_a.split_key == bad_b.split_key == g.split_key == "question: why? answer:"
    assert binarize(p, good="GOOD:", bad="BAD:")[0].responses[0] == "GOOD:Question: Why?\nAnswer: Because."


def test_recast_binary():
    g = recast_binary("e:1", "I lied.\nQuestion: Is this wrong?\nAnswer:", " yes", " no", source="ethics",
                      metadata={"group_id": "x"})
    (p,) = pairs(g)
    assert (p.context + p.chosen, p.context + p.rejected) == (
        "I lied.\nQuestion: Is this wrong?\nAnswer: yes", "I lied.\nQuestion: Is this wrong?\nAnswer: no")
    assert g.kind == "binary" and g.metadata["group_id"] == "x"


def test_fingerprint_ignores_order_and_whitespace_but_not_groups():
    a = G(responses=[" a", " b"], scores=[1, 0])
    b = G(id="other", context="  Q: ", responses=[" b", "a "], scores=[0, 1])
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != G(metadata={"group_id": 1}).fingerprint()
    assert a.fingerprint() != G(scores=[0, 1]).fingerprint()


def test_unicode_line_separators_stay_inside_one_line(tmp_path):
    g = G(context="a\x85b\u2028c\u2029d", responses=[" é", " 😀"])
    path = tmp_path / "u.jsonl"
    write_jsonl([g], path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1
    assert list(read_jsonl(path)) == [g]


@settings(max_examples=100, deadline=None)
@given(g=groups(kind="ranked"), good=st.sampled_from(["GOOD: ", "GOOD:"]), bad=st.sampled_from(["BAD: ", "BAD:"]))
def test_binarize_properties(g, good, bad):
    for p in pairs(g):
        first, second = binarize(p, good=good, bad=bad)
        a, b = p.context + p.chosen, p.context + p.rejected
        assert first.responses == [good + a, bad + a] and second.responses == [bad + b, good + b]
        assert pairs(first)[0].chosen == good + a and pairs(second)[0].chosen == bad + b
        assert first.split_key == second.split_key and first.id != second.id
        assert first.metadata["binarized_from"] == g.id


@settings(max_examples=200, deadline=None)
@given(u=st.integers(-10**6, 10**6), v=st.integers(-10**6, 10**6))
def test_answer_score_is_monotone_and_accepted_adds_one(u, v):
    from hhhlab.data.builders.stackexchange import answer_score

    lo, hi = sorted((u, v))
    assert answer_score(lo, False) <= answer_score(hi, False)
    assert answer_score(u, True) == answer_score(u, False) + 1
    assert answer_score(u, False) >= -1


@pytest.mark.parametrize("reply", ["", " ", "\n\t"])
def test_an_empty_reply_is_rejected_by_the_schema(reply):
    with pytest.raises(ValidationError, match="response 1 is empty"):
        PreferenceGroup(id="g", context="Q:", responses=[" a", reply], scores=[1, 0], kind="ranked", source="t")
