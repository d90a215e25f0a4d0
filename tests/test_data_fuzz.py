"""Fuzzing every builder (issue 6 item 6): malformed input gives rejects or a clean DataError,
never a traceback, and every record is accounted for (written, rejected, skipped or a duplicate)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_builders import BAD_TEXT, GOOD_TEXT, SE_XML, comparison, shp, wiki_xml  # noqa: F401

from hhhlab.data.build import BuildOptions, build, rejects_path_for
from hhhlab.data.builders import SOURCES
from hhhlab.errors import DataError

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])

HH = json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"})
HELLA_TXT = "Baking: A man mixes flour. he\n2\nflies.\nsings.\nkneads.\nsleeps.\n" * 2
HELLA_JSON = json.dumps({"ind": 1, "activity_label": "A", "ctx_a": "x", "ctx_b": "y", "endings": ["a", "b", "c", "d"],
                         "label": "0"})
TQA_CSV = ("Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n"
           'A,M,Q1?,No,"No; Nope","Yes; Sure",s\nA,M,Q2?,Yes,Yes,No,s\n')
ETHICS = {"cm_test.csv": "label,input,is_short,edited\n0,I helped.,True,False\n1,I hit.,True,False\n",
          "deontology_test.csv": "label,scenario,excuse\n0,Cook?,No.\n1,Cook?,No because I am ill.\n",
          "util_test.csv": "A nice day.,A bad day.\nGood.,Bad.\n"}
QUIX = json.dumps({"name": "f", "buggy": "def f(n):\n    return n\n", "fixed": "def f(n):\n    return n + 1\n",
                   "testcases": [[[1], 2]]})

# source -> (file name, valid sample text, line-based JSONL?)
SAMPLES = {
    "stackexchange": ("site.Posts.xml", SE_XML, False),
    "hh-rlhf": ("test.jsonl", "\n".join([HH, HH.replace("c\"", "d\"")]), True),
    "reddit": ("train.jsonl", "\n".join([shp(), shp(human_ref_A="Other.")]), True),
    "wikipedia": ("history.xml", wiki_xml(), False),
    "summarize": ("batch1.json", "\n".join([comparison(), comparison(choice=1)]), True),
    "ethics": ("cm_test.csv", ETHICS["cm_test.csv"], False),
    "hellaswag": ("val.txt", HELLA_TXT, False),
    "truthfulqa": ("TruthfulQA.csv", TQA_CSV, False),
    "code": ("quix.jsonl", "\n".join([json.dumps({"task_id": 1}), "{}"]), True),
}
# every file-reading builder is fuzzed; `feedback` reads a comparisons database, whose bad input
# (unopenable URL, malformed rows) is tested in tests/test_feedback_store.py
assert set(SAMPLES) == set(SOURCES) - {"feedback"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8)


def keyed_objects(keys):
    """JSON objects with the source's real keys but arbitrary values (type confusion, missing keys)."""
    return st.dictionaries(st.sampled_from(keys), json_values, max_size=len(keys))


KEYS = {
    "hh-rlhf": ["chosen", "rejected"],
    "reddit": ["post_id", "domain", "history", "c_root_id_A", "c_root_id_B", "score_A", "score_B", "human_ref_A",
               "human_ref_B", "labels"],
    "summarize": ["info", "summaries", "choice", "split", "worker", "batch", "extra"],
    "hellaswag": ["ind", "activity_label", "ctx_a", "ctx_b", "ctx", "endings", "label"],
    "truthfulqa": ["question", "mc1_targets", "mc2_targets"],
    "code": ["task_id", "prompt", "canonical_solution", "test", "entry_point", "text", "code", "test_list", "buggy",
             "fixed", "name", "testcases"],
}


def check_build(source, path, tmp_path, lines: int | None = None):
    out = tmp_path / "out.jsonl"
    try:
        report = build(source, path, out, BuildOptions(code_timeout_s=2))
    except DataError:
        return None  # a clean, user-facing error is acceptable; anything else fails the test
    rejects = rejects_path_for(out).read_text().splitlines()
    assert len(rejects) == report.rejected
    assert all({"where", "reason", "record"} <= set(json.loads(r)) for r in rejects)
    assert len(out.read_text().splitlines()) == report.written
    file_level = any("cannot read the rest" in json.loads(r)["reason"] for r in rejects)
    if lines is not None and not file_level:
        assert report.written + report.rejected + sum(report.skipped.values()) + report.duplicates == lines
    return report


mutation = st.tuples(st.sampled_from(["truncate", "delete", "insert", "replace"]), st.floats(0, 1), st.floats(0, 1),
                     st.binary(min_size=1, max_size=12))


def mutate(data: bytes, op) -> bytes:
    kind, a, b, junk = op
    i, j = sorted((int(a * len(data)), int(b * len(data))))
    if kind == "truncate":
        return data[:i]
    if kind == "delete":
        return data[:i] + data[j:]
    if kind == "insert":
        return data[:i] + junk + data[i:]
    return data[:i] + junk + data[i + len(junk):]


def _fuzz_mutations(source):
    name, text, _ = SAMPLES[source]

    @FUZZ
    @given(ops=st.lists(mutation, min_size=1, max_size=3))
    def test(tmp_path_factory, ops):
        tmp = tmp_path_factory.mktemp(source)
        data = text.encode()
        for op in ops:
            data = mutate(data, op)
        (tmp / name).write_bytes(data)
        check_build(source, tmp / name, tmp)

    test.__name__ = f"test_fuzz_mutations_{source.replace('-', '_')}"
    return test


for _source in SAMPLES:
    globals()[f"test_fuzz_mutations_{_source.replace('-', '_')}"] = _fuzz_mutations(_source)


def _fuzz_json(source):
    @FUZZ
    @given(objs=st.lists(keyed_objects(KEYS[source]) | json_values, min_size=1, max_size=6))
    def test(tmp_path_factory, objs):
        tmp = tmp_path_factory.mktemp(source)
        path = tmp / "records.jsonl"
        path.write_text("\n".join(json.dumps(o) for o in objs) + "\n")
        check_build(source, path, tmp, lines=len(objs))

    test.__name__ = f"test_fuzz_json_{source.replace('-', '_')}"
    return test


for _source in KEYS:
    globals()[f"test_fuzz_json_{_source.replace('-', '_')}"] = _fuzz_json(_source)


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=10) | st.sampled_from(["0", "1", "2", ""]), max_size=5), max_size=6),
       name=st.sampled_from(["cm_test.csv", "deontology_test.csv", "justice_train.csv", "virtue_test.csv",
                             "util_test.csv", "cm_ambig.csv"]))
def test_fuzz_ethics_rows(tmp_path_factory, rows, name):
    import csv
    import io

    tmp = tmp_path_factory.mktemp("ethics")
    buf = io.StringIO()
    header = {"cm": "label,input,is_short,edited", "de": "label,scenario,excuse"}.get(name[:2], "label,scenario")
    if not name.startswith(("util", "cm_ambig")):
        buf.write(header + "\r\n")
    csv.writer(buf).writerows(rows)
    (tmp / name).write_text(buf.getvalue())
    check_build("ethics", tmp / name, tmp)


def test_valid_samples_build(tmp_path):
    """The fuzz seeds themselves are valid: the fuzzing starts from real, accepted records."""
    for source, (name, text, _) in SAMPLES.items():
        if source == "code":
            continue
        d = tmp_path / source
        d.mkdir()
        (d / name).write_text(text)
        report = check_build(source, d / name, d)
        assert report is not None and report.written >= 1, source
