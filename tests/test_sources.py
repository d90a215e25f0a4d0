"""The source readers shared by evals and builders (`hhhlab.data.sources`): HellaSwag's text
format gives lm-evaluation-harness's queries; the eval and the builder read the same records."""

from __future__ import annotations

import bz2
import json

import pytest

from hhhlab.data.sources.hellaswag import preprocess, query_from_fields, restore_ctx_b

# Validation items with their original fields (rowanz/hellaswag hellaswag_val.jsonl): activity_label,
# ctx_a, ctx_b. The text file's context line is the upstream extractor's uncapitalised join.
HELLASWAG_FIELDS = [
    ("Roof shingle removal", "A man is sitting on a roof.", "he"),
    ("Clean and jerk", "A lady walks to a barbell. She bends down and grabs the pole.", "the lady"),
    ("Canoeing", ("Two women in a child are shown in a canoe while a man pulls the canoe while standing in the "
                 "water, with other individuals visible in the background."), "the child and a different man"),
    ("Sharpening knives", "A man is holding a pocket knife while sitting on some rocks in the wilderness.", "then he"),
    ("Layup drill in basketball", ('Young men play basketball in an indoor court and "how to do a spin move in '
                                  'basketball" overlays the video.'), '" power dribble'),
    ("Personal Care and Style", ("[header] How to become a fashion consultant [title] Obtain your high school "
                                "diploma or ged. [step] This job requires a high school diploma or equivalent."), ""),
    ("Health", ("[header] How to manage grass allergies [title] Use over-the-counter allergy medication! [step] "
               "Why wait?"), ""),
]


def text_line(label: str, ctx_a: str, ctx_b: str) -> str:
    return preprocess(f"{label}: {ctx_a} {ctx_b}")


@pytest.mark.parametrize("label, ctx_a, ctx_b", HELLASWAG_FIELDS)
def test_hellaswag_text_line_gives_lm_evals_query(label, ctx_a, ctx_b):
    lm_eval = query_from_fields(label, ctx_a, ctx_b)
    assert restore_ctx_b(text_line(label, ctx_a, ctx_b)) == lm_eval
    if ctx_b[:1].isalpha():  # the bug: the text line alone differs from lm-eval's query
        assert text_line(label, ctx_a, ctx_b) != lm_eval


def test_hellaswag_eval_and_builder_read_the_same_queries_from_both_formats(tmp_path):
    from hhhlab.data.build import BuildOptions, build
    from hhhlab.data.schema import read_jsonl
    from hhhlab.evals.base import EvalContext, get_eval

    lines = []
    for k, (label, a, b) in enumerate(HELLASWAG_FIELDS):
        lines += [text_line(label, a, b), str(k % 4), "ends one.", "ends two.", "ends three.", "ends four."]
    (tmp_path / "hellaswag").mkdir()
    (tmp_path / "hellaswag" / "hellaswag_val_full.txt.bz2").write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    items = get_eval("hellaswag").load(EvalContext(engine=None, data_dir=tmp_path))  # type: ignore[arg-type]
    expected = [query_from_fields(*f) for f in HELLASWAG_FIELDS]
    assert [it.data["query"] for it in items] == expected
    build("hellaswag", tmp_path / "hellaswag" / "hellaswag_val_full.txt.bz2", tmp_path / "t.jsonl", BuildOptions())
    assert [g.context for g in read_jsonl(tmp_path / "t.jsonl")] == expected
    js = tmp_path / "hs.jsonl"
    js.write_text("".join(json.dumps({"ind": k, "activity_label": lab, "ctx_a": a, "ctx_b": b, "label": 0,
                                      "endings": ["x.", "y."]}) + "\n" for k, (lab, a, b) in enumerate(HELLASWAG_FIELDS)))
    build("hellaswag", js, tmp_path / "j.jsonl", BuildOptions())
    assert [g.context for g in read_jsonl(tmp_path / "j.jsonl")] == expected


def test_truthfulqa_eval_and_builder_read_the_same_rows(tmp_path):
    import csv

    from hhhlab.data.build import BuildOptions, build, rejects_path_for
    from hhhlab.data.schema import read_jsonl
    from hhhlab.evals.base import EvalContext, get_eval

    (tmp_path / "truthfulqa").mkdir()
    path = tmp_path / "truthfulqa" / "TruthfulQA.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source"])
        w.writerow(["Adversarial", "Misc", "Can pigs fly?", "No", "No; They cannot ;", "Yes; ", "x"])
        w.writerow(["Adversarial", "Misc", "Is ice cold?", "Yes", "Yes", "No; Never", "x"])
    ctx = EvalContext(engine=None, data_dir=tmp_path)  # type: ignore[arg-type]
    mc2 = get_eval("truthfulqa_mc2").load(ctx)
    build("truthfulqa", path, tmp_path / "t.jsonl", BuildOptions())
    groups = list(read_jsonl(tmp_path / "t.jsonl"))
    assert [g.id for g in groups] == ["truthfulqa:0", "truthfulqa:1"] and [it.id for it in mc2] == ["q0", "q1"]
    for it, g in zip(mc2, groups):
        assert g.context == f"Q: {it.data['question']}\nA:"
        assert [" " + c for c in it.data["choices"]] == g.responses and it.data["labels"] == g.scores
    assert rejects_path_for(tmp_path / "t.jsonl").read_text() == ""
