"""Each builder on a small inline sample of its source's real format: exact outputs, rejects, skips."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pytest

from hhhlab.data.build import BuildOptions, build, rejects_path_for
from hhhlab.data.builders.stackexchange import answer_score
from hhhlab.data.schema import pairs, read_jsonl
from hhhlab.errors import DataError


def run(source, path, tmp_path, **opts):
    out = tmp_path / f"{source}.jsonl"
    report = build(source, path, out, BuildOptions(**opts))
    groups = list(read_jsonl(out))
    rejects = [json.loads(line) for line in rejects_path_for(out).read_text().splitlines()]
    assert report.written == len(groups) and report.rejected == len(rejects)
    return report, groups, rejects


# ---------------------------------------------------------------------------------------------
# StackExchange

SE_XML = """\ufeff<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" AcceptedAnswerId="3" Score="5" Body="&lt;p&gt;How do I &lt;b&gt;brew&lt;/b&gt;?&lt;/p&gt;" Title="Brewing &amp;amp; you" />
  <row Id="2" PostTypeId="2" ParentId="1" Score="7" Body="&lt;p&gt;Use malt.&lt;/p&gt;&lt;pre&gt;&lt;code&gt;boil(x)&#xA;&lt;/code&gt;&lt;/pre&gt;" />
  <row Id="3" PostTypeId="2" ParentId="1" Score="1" Body="&lt;p&gt;Use hops.&lt;/p&gt;" />
  <row Id="4" PostTypeId="2" ParentId="1" Score="-3" Body="&lt;p&gt;Buy it.&lt;/p&gt;" />
  <row Id="5" PostTypeId="1" Score="1" Body="&lt;p&gt;Tie?&lt;/p&gt;" Title="Tie" />
  <row Id="6" PostTypeId="2" ParentId="5" Score="1" Body="&lt;p&gt;A&lt;/p&gt;" />
  <row Id="7" PostTypeId="2" ParentId="5" Score="1" Body="&lt;p&gt;B&lt;/p&gt;" />
  <row Id="8" PostTypeId="4" Score="0" Body="tag wiki" />
  <row Id="9" PostTypeId="2" ParentId="99" Score="2" Body="orphan" />
  <row Id="10" PostTypeId="2" ParentId="1" Score="lots" Body="bad score" />
  <row Id="11" PostTypeId="1" Score="0" Body="&lt;p&gt;Alone&lt;/p&gt;" Title="Unanswered" />
</posts>
"""


@pytest.mark.parametrize("upvotes, accepted, score", [
    (0, False, 0), (1, False, 1), (2, False, 2), (3, False, 2), (7, False, 3), (100, False, 7),
    (-1, False, -1), (-50, False, -1), (-2, True, 0), (0, True, 1), (7, True, 4)])
def test_stackexchange_score_formula(upvotes, accepted, score):
    assert answer_score(upvotes, accepted) == score


@pytest.mark.parametrize("compress", [None, "gz", "bz2"])
def test_stackexchange(tmp_path, compress):
    data = SE_XML.encode()
    name = "beer.stackexchange.com.Posts.xml"
    if compress:
        data = {"gz": gzip.compress, "bz2": bz2.compress}[compress](data)
        name += "." + compress
    (tmp_path / "dump").mkdir()
    (tmp_path / "dump" / name).write_bytes(data)
    report, groups, rejects = run("stackexchange", tmp_path / "dump", tmp_path)
    (g,) = groups
    assert g.id == "stackexchange:beer:1" and g.metadata["site"] == "beer"
    assert g.context == "Question: Brewing &amp; you\nHow do I brew?\nAnswer:"
    assert g.responses == [" Use malt.\n\nboil(x)", " Use hops.", " Buy it."]
    assert g.scores == [3, 2, -1]  # log2(8)=3; log2(2)=1 +1 accepted; negative -> -1
    assert len(pairs(g)) == 3
    assert [r["reason"] for r in rejects] == ["attribute Score='lots' is not an integer"]
    assert rejects[0]["where"].endswith(f"{name}:12")
    assert report.skipped == {"no two answers with different scores": 1, "post type 4 (not a question or answer)": 1,
                              "answer to a question not in this dump": 1, "question with fewer than two answers": 1}


def test_stackexchange_truncated_xml_keeps_what_was_read(tmp_path):
    path = tmp_path / "Posts.xml"
    path.write_text(SE_XML[: SE_XML.index('<row Id="5"')] + '<row Id="5" PostTy')
    _report, groups, rejects = run("stackexchange", path, tmp_path)
    assert [g.id for g in groups] == ["stackexchange:tmp_path:1".replace("tmp_path", tmp_path.name)]
    assert len(rejects) == 1 and "XML syntax error" in rejects[0]["reason"]


# ---------------------------------------------------------------------------------------------
# HH-RLHF

def test_hh_rlhf(tmp_path):
    ctx = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Help me?"
    lines = [
        json.dumps({"chosen": ctx + "\n\nAssistant: Sure.", "rejected": ctx + "\n\nAssistant: No."}),
        "{not json",
        json.dumps({"chosen": ctx + "\n\nAssistant: Same", "rejected": ctx + "\n\nAssistant: Same"}),
        json.dumps({"chosen": "no turns", "rejected": "at all"}),
        json.dumps({"chosen": ctx + "\n\nAssistant: A\n\nHuman: more\n\nAssistant: B",
                    "rejected": ctx + "\n\nAssistant: C"}),
        json.dumps({"rejected": "x"}),
        "",
    ]
    (tmp_path / "helpful-base").mkdir()
    path = tmp_path / "helpful-base" / "test.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    report, groups, rejects = run("hh-rlhf", tmp_path / "helpful-base", tmp_path)
    assert [g.responses for g in groups] == [[" Sure.", " No."], [" A\n\nHuman: more\n\nAssistant: B", " C"]]
    assert all(g.context == ctx + "\n\nAssistant:" for g in groups)
    assert groups[0].id == "hh-rlhf:helpful-base/test:1" and groups[0].scores == [1, 0]
    assert [r["where"].rsplit(":", 1)[1] for r in rejects] == ["2", "4", "6"]
    assert "not valid JSON" in rejects[0]["reason"] and "missing field 'chosen'" in rejects[2]["reason"]
    assert report.skipped == {"identical responses": 1}


# ---------------------------------------------------------------------------------------------
# Reddit (SHP)

def shp(**kw):
    row = {"post_id": "p1", "domain": "askscience_train", "upvote_ratio": 0.9, "history": "Why is the sky blue?",
           "c_root_id_A": "a", "c_root_id_B": "b", "created_at_utc_A": 1, "created_at_utc_B": 2,
           "score_A": 10, "score_B": 3, "human_ref_A": "Rayleigh scattering.", "human_ref_B": "Magic.",
           "labels": 1, "seconds_difference": 1.0, "score_ratio": 3.3}
    return json.dumps({**row, **kw})


def test_reddit(tmp_path):
    path = tmp_path / "train.json"
    path.write_text("\n".join([
        shp(), shp(score_A=2, score_B=9, c_root_id_A="c"), shp(score_B=10), shp(human_ref_B="[deleted]"),
        shp(human_ref_A="I am a bot, beep."), shp(domain="AmItheAsshole_train"), shp(score_A="many"),
        shp(domain="legaladvice_train", c_root_id_A="z", human_ref_A="Ask a lawyer.")]))
    report, groups, rejects = run("reddit", path, tmp_path)
    g = groups[0]
    assert g.context == "SUBMISSION by user_1: Why is the sky blue?\nCOMMENT by user_2:"
    assert g.responses == [" Rayleigh scattering.", " Magic."] and g.scores == [10, 3]
    assert g.metadata["subreddit"] == "askscience" and g.metadata["split"] == "train"
    assert pairs(groups[1])[0].chosen == " Magic."
    assert len(groups) == 3 and len(rejects) == 1 and "score must be a number" in rejects[0]["reason"]
    assert report.skipped == {"tie": 1, "deleted comment": 1, "bot comment": 1,
                              "subreddit excluded (overlaps ETHICS)": 1}
    report, groups, _ = run("reddit", path, tmp_path, reddit_paper_whitelist=True)
    assert len(groups) == 2 and report.skipped["subreddit not in the paper's whitelist"] == 1


# ---------------------------------------------------------------------------------------------
# Wikipedia

def revision(rid, parent, comment, text):
    parent_xml = f"<parentid>{parent}</parentid>" if parent else ""
    return (f"<revision><id>{rid}</id>{parent_xml}<timestamp>2010-01-0{rid}T00:00:00Z</timestamp>"
            f"<contributor><username>u</username><id>9</id></contributor><comment>{comment}</comment>"
            f'<text xml:space="preserve">{text}</text><sha1>x</sha1></revision>')


GOOD_TEXT = ("'''Beer''' is a [[drink|beverage]].&lt;ref&gt;Cite&lt;/ref&gt;\n== History ==\nBrewed since "
             "[[Mesopotamia]]. {{cite web|url=x}}\n[[File:Beer.jpg|thumb|A beer]]\n== Styles ==\nAle and lager."
             "\n== References ==\n{{reflist}}")
BAD_TEXT = ("'''Beer''' is a [[drink|beverage]].&lt;ref&gt;Cite&lt;/ref&gt;\n== History ==\nBEER IS POOP LOL"
            "\n== Styles ==\nAle and lager.\n== References ==\n{{reflist}} spam")


def wiki_xml(extra=""):
    return ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.8/" version="0.8"><siteinfo><sitename>W'
            '</sitename></siteinfo><page><title>Beer</title><ns>0</ns><id>1</id>'
            + revision(1, None, "start", GOOD_TEXT) + revision(2, 1, "lol", BAD_TEXT)
            + revision(3, 2, "Reverted edits by [[Special:Contributions/1.2.3.4]] identified as vandalism", GOOD_TEXT)
            + revision(4, 3, "rvv", GOOD_TEXT) + revision(5, 77, "rv vandalism", BAD_TEXT)
            + "</page><page><title>Talk:Beer</title><ns>1</ns><id>2</id>" + revision(6, None, "rvv", "x")
            + "</page>" + extra + "</mediawiki>")


def test_wikipedia(tmp_path):
    path = tmp_path / "enwiki-history.xml.bz2"
    path.write_bytes(bz2.compress(wiki_xml().encode()))
    report, groups, rejects = run("wikipedia", path, tmp_path)
    (g,) = groups
    assert g.context == "PAGE TITLE: Beer\nSECTION TITLE: History\nSECTION BODY:"
    assert g.responses == [" Brewed since Mesopotamia.", " BEER IS POOP LOL"] and g.scores == [1, 0]
    assert g.metadata["revision_id"] == "3" and g.metadata["vandalized_revision_id"] == "2"
    assert rejects == []
    assert report.skipped == {"revision without a vandalism-revert comment": 2,
                              "revert with no section changed after cleaning": 1,
                              "parent revision not in dump": 1, "revision outside the article namespace": 1}


def test_wikipedia_comment_regex_and_bad_regex(tmp_path):
    path = tmp_path / "h.xml"
    path.write_text(wiki_xml())
    _, groups, _ = run("wikipedia", path, tmp_path, wiki_comment_regex="(?i)^lol$")
    # the regex alone decides which edits count as restoring ones: here the vandal's own edit
    assert [g.metadata["revision_id"] for g in groups] == ["2"] and groups[0].responses[0] == " BEER IS POOP LOL"
    with pytest.raises(DataError, match="invalid --comment-regex"):
        build("wikipedia", path, tmp_path / "x.jsonl", BuildOptions(wiki_comment_regex="(unclosed"))


# ---------------------------------------------------------------------------------------------
# Summarize from feedback

def comparison(**kw):
    row = {"info": {"id": "t3_1", "post": "My cat ate my homework.", "title": "Cat", "subreddit": "tifu"},
           "split": "valid1", "summaries": [{"text": " Cat ate homework.", "policy": "a", "note": ""},
                                            {"text": "Homework.", "policy": "b", "note": ""}],
           "choice": 0, "worker": "w1", "batch": "batch13", "extra": {"confidence": 8}}
    return json.dumps({**row, **kw})


def test_summarize(tmp_path):
    path = tmp_path / "batch13.json"
    path.write_text("\n".join([comparison(), comparison(choice=1), comparison(worker="w2"),
                               comparison(choice=2), comparison(summaries=[{"text": "x"}]),
                               comparison(info={"id": "cnn1", "site": "cnn", "title": "T", "article": "Art."})]))
    report, groups, rejects = run("summarize", path, tmp_path)
    g = groups[0]
    assert g.context == "SUBREDDIT: r/tifu\nTITLE: Cat\nPOST: My cat ate my homework.\nTL;DR:"
    assert g.responses == [" Cat ate homework.", " Homework."] and g.scores == [1, 0]
    assert groups[1].scores == [0, 1]  # the opposite judgment is kept
    assert groups[2].context == "ARTICLE: T\nArt.\nTL;DR:"
    assert report.duplicates == 1  # worker w2 agreeing with w1 is an exact duplicate
    assert [r["reason"] for r in rejects] == ["'choice' must be 0 or 1, got 2",
                                             "'summaries' must be a list of two summaries"]
    assert g.metadata["split_key"] == "summarize-post:t3_1"


# ---------------------------------------------------------------------------------------------
# ETHICS

def test_ethics(tmp_path):
    d = tmp_path / "ethics"
    d.mkdir()
    (d / "cm_test.csv").write_text('label,input,is_short,edited\n0,I helped.,True,False\n1,"I lied, badly.",True,False\n'
                                   "2,Bad label,True,False\n1,too,many,columns,here\n")
    rows = "".join(f"{i % 2},Can you cook?,No because {i}.\n" for i in range(8))
    (d / "deontology_test.csv").write_text("label,scenario,excuse\n" + rows)
    (d / "justice_test_hard.csv").write_text("label,scenario\n1,I deserve it because I worked.\n")
    (d / "virtue_train.csv").write_text("label,scenario\n1,Ann gave away her lunch. [SEP] generous\n0,no sep\n")
    (d / "util_test.csv").write_text("I won the lottery.,I lost my keys.\nonly one column\n")
    (d / "cm_ambig.csv").write_text("Something ambiguous.\n")
    report, groups, rejects = run("ethics", d, tmp_path)
    by_id = {g.id: g for g in groups}
    cm = by_id["ethics:commonsense:test:1"]
    assert cm.context == "I lied, badly.\nQuestion: Is this wrong?\nAnswer:" and cm.responses == [" yes", " no"]
    assert by_id["ethics:commonsense:test:0"].responses == [" no", " yes"]
    de = [g for g in groups if g.metadata["subset"] == "deontology"]
    assert len(de) == 8 and [g.metadata["group_id"] for g in de] == ["deontology:test:0"] * 4 + ["deontology:test:1"] * 4
    assert de[1].context == ('Question: Would most people believe this reasonable or unreasonable to say? '
                             '"Can you cook? No because 1."\nAnswer:')
    assert de[1].responses == [" reasonable", " unreasonable"] and de[0].responses == [" unreasonable", " reasonable"]
    assert all(g.split_key == g.metadata["group_id"] for g in de)
    assert by_id["ethics:justice:test_hard:0"].metadata["group_id"] == "justice:test_hard:0"
    vi = by_id["ethics:virtue:train:0"]
    assert vi.context == ('Sentence: Ann gave away her lunch.\nQuestion: Does the character in this sentence exhibit '
                          'the trait "generous"?\nAnswer:') and vi.responses == [" yes", " no"]
    ut = by_id["ethics:utilitarianism:test:0"]
    assert ut.kind == "ranked" and ut.context == "Scenario:" and ut.responses == [" I won the lottery.", " I lost my keys."]
    assert sorted(r["reason"] for r in rejects) == [
        "expected 2 columns (more pleasant, less pleasant), got 1", "expected 4 columns (label,input,is_short,edited), got 5",
        "label must be 0 or 1, got '2'", "virtue scenario lacks ' [SEP] <trait>'"]
    assert report.skipped == {"unlabelled (commonsense ambiguous)": 1}


def test_ethics_unknown_file_name(tmp_path):
    path = tmp_path / "moral.csv"
    path.write_text("label,input\n1,x\n")
    _report, groups, rejects = run("ethics", path, tmp_path)
    assert groups == [] and "cannot tell the ETHICS subset" in rejects[0]["reason"]


# ---------------------------------------------------------------------------------------------
# HellaSwag

def test_hellaswag_text_and_jsonl(tmp_path):
    txt = tmp_path / "hellaswag_val.txt.bz2"
    block = "Baking: A man mixes flour. he\n2\nflies.\nsings.\nkneads the dough.\nsleeps.\n"
    txt.write_bytes(bz2.compress((block + block.replace("\n2\n", "\nx\n") + "Only: two\n1\n").encode()))
    report, groups, rejects = run("hellaswag", txt, tmp_path)
    (g,) = groups
    assert g.context == "Baking: A man mixes flour. He" and g.scores  # ctx_b capital restored == [0, 0, 1, 0]
    assert g.responses[2] == " kneads the dough."
    assert [r["reason"] for r in rejects] == ["label must be an ending index, got 'x'",
                                             "incomplete item at end of file (2 of 6 lines)"]
    assert pairs(g, "sample", seed=3)[0].chosen == " kneads the dough."
    row = {"ind": 4, "activity_label": "Baking", "ctx_a": "A man mixes flour.", "ctx_b": "he",
           "endings": ["[title] flies.", "kneads the dough.", "sings.", "sleeps."], "label": "1", "split": "val"}
    js = tmp_path / "hellaswag.jsonl"
    js.write_text("\n".join(json.dumps(r) for r in [row, {**row, "label": ""}, {**row, "label": 7}]))
    report, groups, rejects = run("hellaswag", js, tmp_path)
    assert groups[0].context == "Baking: A man mixes flour. He" and groups[0].responses[0] == " flies."
    assert report.skipped == {"no gold label": 1} and "out of range" in rejects[0]["reason"]


# ---------------------------------------------------------------------------------------------
# TruthfulQA

def test_truthfulqa_csv(tmp_path):
    path = tmp_path / "TruthfulQA.csv"
    path.write_text("Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
                    'Adversarial,Misconceptions,Do seeds grow in you?,No,"No; They pass; No","Yes; You grow melons",x\n'
                    "Adversarial,Misc,Only true?,Yes,Yes,,x\n"
                    "broken,row\n")
    report, groups, rejects = run("truthfulqa", path, tmp_path)
    (g,) = groups
    assert g.context == "Q: Do seeds grow in you?\nA:" and g.kind == "binary"
    assert g.responses == [" No", " They pass", " Yes", " You grow melons"] and g.scores == [1, 1, 0, 0]
    assert report.skipped == {"question without both a true and a false answer": 1}
    assert len(rejects) == 1 and "expected 7 columns" in rejects[0]["reason"]


# ---------------------------------------------------------------------------------------------
# Code (runs the sandbox)

def test_code_quixbugs_and_humaneval_samples(tmp_path):
    quix = {"name": "add_one", "buggy": "\ndef add_one(n):\n    return n + 2\n\n\"\"\"\nAdd one\n>>> add_one(1)\n2\n\"\"\"\n",
            "fixed": "\ndef add_one(n):\n    return n + 1\n", "testcases": [[[1], 2], [[5], 6]]}
    he = {"task_id": "HumanEval/0", "prompt": "def double(x):\n    \"\"\"Twice x.\"\"\"\n",
          "canonical_solution": "    return 2 * x\n", "test": "def check(f):\n    assert f(3) == 6\n",
          "entry_point": "double"}
    path = tmp_path / "problems.jsonl"
    path.write_text("\n".join([json.dumps(quix), json.dumps(he), json.dumps({"task_id": 1}),
                               json.dumps({**quix, "name": "no_tests", "testcases": []})]))
    samples = tmp_path / "samples.jsonl"
    samples.write_text("\n".join(json.dumps({"task_id": "HumanEval/0", "completion": c}) for c in
                                 ["    return x + x\n", "    return 3 * x\n", "    while True:\n        pass\n",
                                  "    import os\n    exit(0)\n"]))
    report, groups, rejects = run("code", path, tmp_path, code_samples=samples, code_timeout_s=3)
    quixg, heg = groups
    assert quixg.context == "# Add one\n# >>> add_one(1)\n# 2\n"
    assert quixg.responses == ["def add_one(n):\n    return n + 1\n", "def add_one(n):\n    return n + 2\n"]
    assert quixg.scores == [1, 0] and quixg.metadata["origins"] == ["fixed", "buggy"]
    assert heg.context == he["prompt"] and heg.responses[0] == he["canonical_solution"]
    assert heg.scores == [1, 1, 0, 0, 0]
    assert heg.metadata["statuses"][2:] == ["failed", "timeout", "failed"]  # early exit(0) does not pass
    assert heg.split_key == "code:humaneval:HumanEval/0"
    assert len(rejects) == 1 and "not a HumanEval, MBPP or QuixBugs record" in rejects[0]["reason"]
    assert report.skipped == {"no tests to run": 1}


def test_unknown_source_and_missing_input(tmp_path):
    with pytest.raises(DataError, match="unknown data source"):
        build("imdb", tmp_path, tmp_path / "o.jsonl")
    with pytest.raises(DataError, match="does not exist"):
        build("hh-rlhf", tmp_path / "nope", tmp_path / "o.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no input files"):
        build("stackexchange", tmp_path / "empty", tmp_path / "o.jsonl")


def test_unreadable_compressed_file_is_one_reject_and_the_build_goes_on(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl.gz").write_bytes(b"not gzip at all")
    (d / "b.jsonl").write_text(json.dumps({"chosen": "\n\nHuman: x\n\nAssistant: y",
                                           "rejected": "\n\nHuman: x\n\nAssistant: z"}))
    _report, groups, rejects = run("hh-rlhf", d, tmp_path)
    assert len(groups) == 1 and len(rejects) == 1
    assert rejects[0]["where"].endswith("a.jsonl.gz") and "cannot read the rest of the file" in rejects[0]["reason"]


def test_rejects_path():
    assert rejects_path_for(Path("/x/out.jsonl")) == Path("/x/out.rejects.jsonl")
    assert rejects_path_for(Path("/x/out.jsonl.gz")) == Path("/x/out.rejects.jsonl")


def test_hub_input_through_datasets(tmp_path):
    """``--input hf:NAME[:CONFIG][@SPLIT]`` streams rows with `datasets.load_dataset` (here a local
    folder, as the tests have no hub); the same builder code turns them into groups."""
    folder = tmp_path / "shp"
    folder.mkdir()
    (folder / "test.jsonl").write_text("\n".join([shp(), shp(score_A="x"), shp(score_B=10)]))
    report, groups, rejects = run("reddit", f"hf:{folder}@test", tmp_path)
    assert [g.responses for g in groups] == [[" Rayleigh scattering.", " Magic."]]
    assert rejects[0]["where"] == f"hf:{folder}@test:1" and report.skipped == {"tie": 1}
    with pytest.raises(DataError, match="Bad split"):
        build("reddit", f"hf:{folder}@train", tmp_path / "o.jsonl")
    with pytest.raises(DataError, match="reads its dump files"):
        build("wikipedia", f"hf:{folder}", tmp_path / "o.jsonl")


def test_hellaswag_label_of_infinity_is_a_reject_not_a_traceback():
    """Found by the fuzzer: int(float('inf')) raises OverflowError, which must become a DataError."""
    import pytest

    from hhhlab.data.sources.hellaswag import _gold
    from hhhlab.errors import DataError

    with pytest.raises(DataError, match="ending index"):
        _gold(float("inf"))
