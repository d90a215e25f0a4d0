"""Splits without leakage, de-duplication, stats, and the ``hhhlab data`` commands."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hhhlab.data.cli import app
from hhhlab.data.schema import PreferenceGroup, read_jsonl, write_jsonl
from hhhlab.data.splits import SPLITS, assign_split, dedupe, parse_fractions, split_file
from hhhlab.data.stats import compute_stats
from hhhlab.errors import DataError


def G(i, context=None, **kw):
    base = dict(id=f"g{i}", context=context if context is not None else f"Question {i}?",
                responses=[" yes", " no"], scores=[1, 0], kind="ranked", source="t")
    return PreferenceGroup(**{**base, **kw})


@settings(max_examples=50, deadline=None)
@given(contexts=st.lists(st.sampled_from([f"c{i}" for i in range(12)] + ["C0 ", " c1"]), min_size=1, max_size=40),
       seed=st.integers(0, 5))
def test_a_context_is_never_in_two_splits(contexts, seed):
    seen: dict[str, str] = {}
    for i, c in enumerate(contexts):
        g = G(i, c)
        split = assign_split(g.split_key, (0.5, 0.25, 0.25), seed)
        assert seen.setdefault(g.split_key, split) == split
    assert assign_split("c0", seed=seed) == assign_split("C0 ", seed=seed)  # normalized context


def test_split_key_overrides_context():
    a = G(1, metadata={"split_key": "deontology:test:0"})
    b = G(2, metadata={"split_key": "deontology:test:0"})
    assert a.split_key == b.split_key == "deontology:test:0"
    assert all(assign_split(a.split_key, seed=s) == assign_split(b.split_key, seed=s) for s in range(20))


def test_fractions_seed_and_zero_fraction():
    keys = [f"k{i}" for i in range(4000)]
    counts = {s: 0 for s in SPLITS}
    for k in keys:
        counts[assign_split(k, (0.8, 0.1, 0.1), seed=0)] += 1
    assert 0.77 < counts["train"] / 4000 < 0.83 and 0.08 < counts["test"] / 4000 < 0.12
    moved = sum(assign_split(k, (0.8, 0.1, 0.1), 0) != assign_split(k, (0.8, 0.1, 0.1), 1) for k in keys)
    assert moved > 400  # another seed is another split
    assert {assign_split(k, (0.7, 0.0, 0.3)) for k in keys} == {"train", "test"}
    assert {assign_split(k, (0.0, 0.0, 1.0)) for k in keys} == {"test"}


@pytest.mark.parametrize("bad", ["0.9,0.1", "a,b,c", "0.5,0.5,0.5", "-0.1,0.6,0.5", "nan,0,1"])
def test_bad_fractions(bad):
    with pytest.raises(DataError, match="fractions"):
        parse_fractions(bad)


def test_split_file_is_deterministic_order_free_and_dedupes(tmp_path):
    groups = [G(i, f"ctx {i % 50}", responses=[f" r{i}", " no"]) for i in range(300)] + [G(999, "ctx 1", responses=[" r1", " no"])]
    write_jsonl(groups, tmp_path / "all.jsonl")
    shuffled = groups[:]
    random.Random(0).shuffle(shuffled)
    write_jsonl(shuffled, tmp_path / "shuffled.jsonl")
    counts = split_file(tmp_path / "all.jsonl", tmp_path / "a", (0.6, 0.2, 0.2), seed=3)
    split_file(tmp_path / "shuffled.jsonl", tmp_path / "b", (0.6, 0.2, 0.2), seed=3)
    assert counts["duplicates"] == 1 and sum(counts[s] for s in SPLITS) == 300
    where = {}
    for run in "ab":
        for s in SPLITS:
            for g in read_jsonl(tmp_path / run / f"{s}.jsonl"):
                assert where.setdefault((run, g.split_key), s) == s  # no context in two splits
                where[(run, g.id)] = s
    assert all(where[("a", f"g{i}")] == where[("b", f"g{i}")] for i in range(300))
    assert len({s for (run, k), s in where.items() if k.startswith("ctx")}) == 3  # all three used


def test_dedupe_keeps_first():
    counter: dict[str, int] = {}
    out = list(dedupe([G(1), G(2), G(1, responses=[" no", " yes"], scores=[0, 1])], counter))
    assert [g.id for g in out] == ["g1", "g2"] and counter == {"duplicates": 1}


def test_stats_exact(tmp_path):
    write_jsonl([G(1, "one two three", responses=[" a b", " c"], scores=[2, 0]),
                 G(2, "x", responses=[" d", " e f g", " h"], scores=[1, 0, 0], kind="binary", source="s")],
                tmp_path / "f.jsonl")
    stats = compute_stats(tmp_path / "f.jsonl")
    assert stats["groups"] == 2 and stats["responses"] == 5 and stats["pairs"] == 3
    assert stats["scores"] == {"0": 3, "1": 1, "2": 1}
    assert stats["sources"] == {"t": 1, "s": 1} and stats["kinds"] == {"ranked": 1, "binary": 1}
    assert stats["responses_per_group"] == {"2": 1, "3": 1}
    assert stats["token_lengths"]["context"]["p100"] == 3 and stats["token_lengths"]["response"]["p100"] == 3
    assert stats["token_lengths"]["sequence"]["p100"] == 5  # "one two three" + " a b"
    tiny = compute_stats(tmp_path / "f.jsonl", tokenizer="tiny")
    assert tiny["token_lengths"]["context"]["p100"] >= 3
    with pytest.raises(DataError, match="cannot load tokenizer"):
        compute_stats(tmp_path / "f.jsonl", tokenizer=str(tmp_path / "no-such-tokenizer"))


HH_OK = json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"})


def test_cli_build_split_stats(tmp_path):
    runner = CliRunner()
    src = tmp_path / "hh.jsonl"
    src.write_text(HH_OK + "\n{broken\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["build", "hh-rlhf", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 groups" in result.output and "1 rejected" in result.output
    assert json.loads((tmp_path / "out.rejects.jsonl").read_text())["where"] == f"{src}:2"
    result = runner.invoke(app, ["build", "hh-rlhf", "-i", str(src), "-o", str(out), "--strict"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["split", str(out), "--out-dir", str(tmp_path / "sp"), "--fractions", "0,0,1"])
    assert result.exit_code == 0 and "test: 1" in result.output
    result = runner.invoke(app, ["stats", str(out), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["groups"] == 1
    result = runner.invoke(app, ["stats", str(out)])
    assert result.exit_code == 0 and "score histogram" in result.output
    result = runner.invoke(app, ["build", "nope", "-i", str(src), "-o", str(out)])
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
