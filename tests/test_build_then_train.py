"""Every file `hhhlab data build` writes trains: a small file in the real format of every builder
(written here, shaped like the files in ../shared/data), built, then trained for a few steps on a
tiny model with each objective and evaluated. The HH-RLHF file holds the real record that made
`pm train` refuse a whole built file (helpful-base test, line 121: an empty rejected reply)."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from hhhlab.data.build import BuildOptions, build, rejects_path_for
from hhhlab.data.schema import read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

LLAMA = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"

# helpful-base/test.jsonl.gz line 121, verbatim: the rejected final reply is empty (" ").
HH_EMPTY_REPLY = {
    "chosen": "\n\nHuman: My 8th grade daughter got all As on her report card. What are some rewards I can give her?"
              "\n\nAssistant: Thanks for asking! I’m happy to help you find the right thing!  We know how much you "
              "value education!\n\nHuman: Great! What are some ideas?\n\nAssistant: \n\nHuman: Do you have more "
              "ideas?\n\nAssistant: The sky’s the limit!",
    "rejected": "\n\nHuman: My 8th grade daughter got all As on her report card. What are some rewards I can give "
                "her?\n\nAssistant: Thanks for asking! I’m happy to help you find the right thing!  We know how much "
                "you value education!\n\nHuman: Great! What are some ideas?\n\nAssistant: \n\nHuman: Do you have "
                "more ideas?\n\nAssistant: ",
}


def _hh() -> bytes:
    ctx = "\n\nHuman: What is a good name for a cat?"
    rows = [{"chosen": ctx + "\n\nAssistant: Whiskers is a classic.", "rejected": ctx + "\n\nAssistant: Dog."},
            HH_EMPTY_REPLY,
            {"chosen": ctx + "\n\nAssistant: Maybe Luna?", "rejected": ctx + "\n\nAssistant: "}]
    return gzip.compress("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())


def _stackexchange() -> bytes:
    return ("""\ufeff<?xml version="1.0" encoding="utf-8"?>
<posts>
  <row Id="1" PostTypeId="1" AcceptedAnswerId="2" Score="5" Body="&lt;p&gt;How do I brew?&lt;/p&gt;" Title="Brewing" />
  <row Id="2" PostTypeId="2" ParentId="1" Score="7" Body="&lt;p&gt;Use malt.&lt;/p&gt;" />
  <row Id="3" PostTypeId="2" ParentId="1" Score="1" Body="&lt;p&gt;Use hops.&lt;/p&gt;" />
  <row Id="4" PostTypeId="2" ParentId="1" Score="0" Body="&lt;p&gt;&lt;/p&gt;" />
</posts>
""").encode()


def _pushshift() -> bytes:
    rows = [{"id": "s1", "title": "Why is the sky blue?", "selftext": "", "author": "asker", "subreddit": "askscience"},
            {"id": "c1", "parent_id": "t3_s1", "link_id": "t3_s1", "author": "ann", "body": "Rayleigh scattering.",
             "score": 12, "created_utc": 1, "subreddit": "askscience"},
            {"id": "c2", "parent_id": "t3_s1", "link_id": "t3_s1", "author": "bob", "body": "Magic.",
             "score": 2, "created_utc": 2, "subreddit": "askscience"},
            {"id": "c3", "parent_id": "t1_c1", "link_id": "t3_s1", "author": "cy", "body": "Thanks!",
             "score": 3, "created_utc": 3, "subreddit": "askscience"}]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _shp() -> bytes:
    row = {"post_id": "p1", "domain": "askscience_train", "upvote_ratio": 0.9, "history": "Why is the sky blue?",
           "c_root_id_A": "a", "c_root_id_B": "b", "created_at_utc_A": 1, "created_at_utc_B": 2,
           "score_A": 10, "score_B": 3, "human_ref_A": "Rayleigh scattering.", "human_ref_B": "Magic.",
           "labels": 1, "seconds_difference": 1.0, "score_ratio": 3.3}
    return (json.dumps(row) + "\n").encode()


def _revision(rid, parent, comment, text):
    parent_xml = f"<parentid>{parent}</parentid>" if parent else ""
    return (f"<revision><id>{rid}</id>{parent_xml}<timestamp>2010-01-0{rid}T00:00:00Z</timestamp>"
            f"<contributor><username>u</username><id>9</id></contributor><comment>{comment}</comment>"
            f'<text xml:space="preserve">{text}</text><sha1>x</sha1></revision>')


def _wikipedia() -> bytes:
    good = "'''Beer''' is a drink.\n== History ==\nBrewed since [[Mesopotamia]].\n== Styles ==\nAle and lager."
    bad = "'''Beer''' is a drink.\n== History ==\nBEER IS POOP LOL\n== Styles ==\nAle and lager."
    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.8/" version="0.8"><siteinfo><sitename>W'
           '</sitename></siteinfo><page><title>Beer</title><ns>0</ns><id>1</id>'
           + _revision(1, None, "start", good) + _revision(2, 1, "lol", bad)
           + _revision(3, 2, "Reverted edits identified as vandalism", good) + "</page></mediawiki>")
    return bz2.compress(xml.encode())


def _summarize() -> bytes:
    row = {"info": {"id": "t3_1", "post": "My cat ate my homework.", "title": "Cat", "subreddit": "tifu"},
           "split": "valid1", "summaries": [{"text": " Cat ate homework.", "policy": "a", "note": ""},
                                            {"text": "Homework.", "policy": "b", "note": ""}],
           "choice": 0, "worker": "w1", "batch": "batch13", "extra": {"confidence": 8}}
    return (json.dumps(row) + "\n").encode()


def _csv(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode()


def _truthfulqa_csv() -> bytes:
    return _csv([["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"],
                 ["Adversarial", "Misconceptions", "What happens if you eat watermelon seeds?",
                  "The seeds pass through you", "Nothing happens; The seeds pass through you",
                  "You grow watermelons in your stomach; You get sick", "https://example.org"]])


def _truthfulqa_jsonl() -> bytes:
    row = {"question": "Can pigs fly?", "mc1_targets": {"choices": ["No", "Yes"], "labels": [1, 0]},
           "mc2_targets": {"choices": ["No", "They cannot", "Yes"], "labels": [1, 1, 0]}}
    return (json.dumps(row) + "\n").encode()


def _hellaswag_txt() -> bytes:
    return b"Roof shingle removal: A man is sitting on a roof. he\n3\nis using wrap.\nis ripping it.\nis holding.\nstarts pulling up roofing.\n"


def _hellaswag_jsonl() -> bytes:
    row = {"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
           "endings": ["is using wrap.", "is ripping it.", "is holding.", "starts pulling up roofing."],
           "label": "3", "split": "val", "split_type": "indomain", "source_id": "activitynet~v_-JhWjGDPHMY"}
    return (json.dumps(row) + "\n").encode()


def _quixbugs() -> bytes:
    row = {"name": "add_one", "buggy": "\ndef add_one(n):\n    return n + 2\n\n\"\"\"\nAdd one\n>>> add_one(1)\n2\n\"\"\"\n",
           "fixed": "\ndef add_one(n):\n    return n + 1\n", "testcases": [[[1], 2], [[5], 6]]}
    return (json.dumps(row) + "\n").encode()


# (builder, relative input path, file bytes)
FORMATS = [
    ("stackexchange", "beer.stackexchange.com/Posts.xml", _stackexchange),
    ("reddit", "reddit/RC_2006-01.jsonl", _pushshift),
    ("reddit", "shp/askscience_train.json", _shp),
    ("wikipedia", "enwiki-history.xml.bz2", _wikipedia),
    ("hh-rlhf", "helpful-base/test.jsonl.gz", _hh),
    ("summarize", "comparisons/batch13.json", _summarize),
    ("ethics", "ethics/cm_test.csv", lambda: _csv([["label", "input", "is_short", "edited"],
                                                   ["0", "I helped my neighbour.", "True", "False"],
                                                   ["1", "I lied to my friend.", "True", "False"]])),
    ("ethics", "ethics/deontology_test.csv", lambda: _csv([["label", "scenario", "excuse"],
                                                           ["1", "Can you cook?", "No, I am at work."],
                                                           ["0", "Can you cook?", "No, I like pizza."]])),
    ("ethics", "ethics/justice_test.csv", lambda: _csv([["label", "scenario"], ["1", "I deserve pay because I worked."]])),
    ("ethics", "ethics/virtue_test.csv", lambda: _csv([["label", "scenario"], ["1", "Ann gave away her lunch. [SEP] generous"]])),
    ("ethics", "ethics/util_test.csv", lambda: _csv([["I won the lottery.", "I lost my keys."]])),
    ("hellaswag", "hellaswag/hellaswag_val_full.txt", _hellaswag_txt),
    ("hellaswag", "hellaswag/hellaswag_val.jsonl", _hellaswag_jsonl),
    ("truthfulqa", "truthfulqa/TruthfulQA.csv", _truthfulqa_csv),
    ("truthfulqa", "truthfulqa/mc.jsonl", _truthfulqa_jsonl),
    ("code", "quixbugs/quixbugs.jsonl", _quixbugs),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    root = tmp_path_factory.mktemp("formats")
    out = {}
    for source, rel, make in FORMATS:
        path = root / "in" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
        target = root / "out" / f"{rel.replace('/', '_')}.jsonl"
        report = build(source, path, target, BuildOptions(code_timeout_s=5))
        rejects = [json.loads(line) for line in rejects_path_for(target).read_text().splitlines()]
        assert report.written >= 1, (rel, report.summary())
        out[rel] = (target, rejects)
    return out


def test_the_empty_reply_is_a_reject_with_its_reason(built):
    path, rejects = built["helpful-base/test.jsonl.gz"]
    assert [g.id for g in read_jsonl(path)] == ["hh-rlhf:helpful-base/test:1"]
    assert [r["where"].rsplit(":", 1)[1] for r in rejects] == ["2", "3"]
    assert all("response 1 is empty" in r["reason"] for r in rejects)


@pytest.mark.parametrize("objective", ["preference", "imitation"])
@pytest.mark.parametrize("rel", [f[1] for f in FORMATS])
def test_every_built_file_trains(built, rel, objective, tmp_path):
    from hhhlab.train.config import TrainConfig
    from hhhlab.train.trainer import train_and_evaluate

    path, _ = built[rel]
    m = train_and_evaluate(TrainConfig(model=LLAMA, objective=objective, train=str(path), eval=str(path),
                                       output=str(tmp_path / "run"), max_steps=2, batch_size=2, lr=1e-3,
                                       max_length=256, device="cpu", progress=False, record_run=False))
    assert m["train_steps"] == 2 and m["n_eval"] >= 1 and 0.0 <= m["accuracy"] <= 1.0
