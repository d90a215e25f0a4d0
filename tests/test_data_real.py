"""Slow: build every source from ../shared/data and check the counts against its SOURCE.md."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from hhhlab.data.build import BuildOptions, build, rejects_path_for
from hhhlab.data.schema import pairs, read_jsonl

pytestmark = pytest.mark.slow


def source_table(path, first_col: str) -> dict[str, list[str]]:
    """Rows of the markdown table in SOURCE.md whose header starts with ``first_col``."""
    rows, inside = {}, False
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_col:
            inside = True
            continue
        if inside and line.startswith("|") and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
        elif inside and not line.startswith("|"):
            inside = False
    return rows


def test_stackexchange_counts(shared_data, tmp_path):
    d = shared_data / "stackexchange"
    table = source_table(d / "SOURCE.md", "file")
    for file in sorted(d.glob("*Posts.xml")):
        key = file.name.split(".")[0]
        rows, questions, answers, multi, _pairs = (int(x) for x in table[key])
        report = build("stackexchange", file, tmp_path / f"{key}.jsonl", BuildOptions(dedupe=False))
        other = sum(n for reason, n in report.skipped.items() if reason.startswith("post type"))
        assert questions + answers + other == rows, key
        assert report.rejected == 0
        # every question with >= 2 answers is a group or skipped for ties (or lost answers to empty bodies)
        ties = report.skipped["no two answers with different scores"]
        empty = report.skipped["empty answer after HTML stripping"]
        assert report.written + ties <= multi <= report.written + ties + empty, key
        groups = list(read_jsonl(tmp_path / f"{key}.jsonl"))
        raw_pairs = sum(sum(a != b for i, a in enumerate(g.metadata["votes"]) for b in g.metadata["votes"][i + 1:])
                        for g in groups)
        assert raw_pairs <= _pairs
        assert all(len(pairs(g, "sample", seed=0)) == 1 for g in groups)


def test_hh_rlhf_counts(shared_data, tmp_path):
    d = shared_data / "hh-rlhf"
    text = (d / "SOURCE.md").read_text()
    expected = sum(int(re.search(rf"{sub.name} (\d+)", text).group(1)) for sub in d.iterdir() if sub.is_dir())
    report = build("hh-rlhf", d, tmp_path / "hh.jsonl", BuildOptions(dedupe=False))
    # the schema's rule for empty replies (docs/data.md): 4 helpful-base + 4 harmless-base records
    rejects = [json.loads(line) for line in rejects_path_for(tmp_path / "hh.jsonl").read_text().splitlines()]
    assert report.rejected == len(rejects) == 8 and all("is empty" in r["reason"] for r in rejects)
    assert "helpful-base/test.jsonl.gz:121" in {r["where"].split("hh-rlhf/", 1)[1] for r in rejects}
    assert report.written + sum(report.skipped.values()) + report.rejected == expected


def test_ethics_counts(shared_data, tmp_path):
    d = shared_data / "ethics"
    text = (d / "SOURCE.md").read_text()
    report = build("ethics", d, tmp_path / "e.jsonl", BuildOptions(dedupe=False))
    assert report.rejected == 0
    per_file = Counter((g.metadata["subset"], g.metadata["split"]) for g in read_jsonl(tmp_path / "e.jsonl"))
    assert per_file[("commonsense", "test")] == int(re.search(r"cm_test (\d+)", text).group(1))
    assert per_file[("commonsense", "test_hard")] == int(re.search(r"cm_test_hard (\d+)", text).group(1))
    m = re.search(r"deontology train (\d+) / test (\d+) / hard (\d+)", text)
    assert [per_file[("deontology", s)] for s in ("train", "test", "test_hard")] == [int(x) for x in m.groups()]
    m = re.search(r"util test (\d+) pairs / util test_hard (\d+) pairs", text)
    assert [per_file[("utilitarianism", s)] for s in ("test", "test_hard")] == [int(x) for x in m.groups()]
    assert report.skipped["unlabelled (commonsense ambiguous)"] == int(re.search(r"cm_ambig (\d+)", text).group(1))
    groups = Counter(g.metadata["group_id"] for g in read_jsonl(tmp_path / "e.jsonl") if "group_id" in g.metadata)
    assert set(groups.values()) == {4}  # deontology: groups of four


@pytest.mark.parametrize("source, folder, expected", [
    ("hellaswag", "hellaswag", 10042), ("truthfulqa", "truthfulqa", 817)])
def test_eval_sets_counts(shared_data, tmp_path, source, folder, expected):
    report = build(source, shared_data / folder, tmp_path / "o.jsonl", BuildOptions(dedupe=False))
    assert (report.written, report.rejected, sum(report.skipped.values())) == (expected, 0, 0)


def test_summarize_counts(shared_data, tmp_path):
    d = shared_data / "summarize-from-feedback"
    table = source_table(d / "SOURCE.md", "file")
    expected = sum(int(table[f"comparisons/{f.name}"][0]) for f in (d / "comparisons").iterdir())
    report = build("summarize", d, tmp_path / "s.jsonl", BuildOptions(dedupe=False))
    assert report.rejected == 0 and report.written + sum(report.skipped.values()) == expected


def test_wikipedia_counts(shared_data, tmp_path):
    d = shared_data / "wikipedia-edits"
    text = (d / "SOURCE.md").read_text()
    revisions = int(re.search(r"(\d+) revisions", text).group(1))
    reverts = int(re.search(r"(\d+) with revert comments", text).group(1))
    report = build("wikipedia", d / "enwiki-20140102.tiny.xml.gz", tmp_path / "w.jsonl",
                   BuildOptions(wiki_comment_regex="(?i)revert"))  # the Anarchism history: test_data_pmp_sources
    assert report.rejected == 0
    assert report.skipped["revision without a vandalism-revert comment"] == revisions - reverts
    groups = list(read_jsonl(tmp_path / "w.jsonl"))
    reverted = {g.metadata["revision_id"] for g in groups}
    assert len(reverted) + report.skipped["revert with no section changed after cleaning"] == reverts


def test_code_quixbugs(shared_data, tmp_path):
    report = build("code", shared_data / "quixbugs", tmp_path / "c.jsonl")
    assert report.rejected == 0 and report.skipped["no tests to run"] == 9  # SOURCE.md: 31 of 40 have JSON tests
    groups = list(read_jsonl(tmp_path / "c.jsonl"))
    assert len(groups) + report.skipped["no program passes"] == 31
    assert all(g.metadata["origins"] == ["fixed", "buggy"] and g.scores == [1, 0] for g in groups)
