"""The eval loaders on the real datasets in ../shared/data (slow: skipped when absent)."""

from __future__ import annotations

from collections import Counter

import pytest

from hhhlab.evals.base import EvalContext, get_eval

pytestmark = pytest.mark.slow


def _load(name, data_dir, **options):
    return get_eval(name, **options).load(EvalContext(engine=None, data_dir=data_dir))  # type: ignore[arg-type]


def test_hhh_alignment_has_the_papers_counts(shared_data):
    items = _load("hhh_alignment", shared_data)
    assert Counter(it.data["meta"]["category"] for it in items) == {
        "helpful": 59, "honest": 61, "harmless": 58, "other": 43}
    assert all(sorted(it.data["labels"]) == [0, 1] for it in items)


def test_truthfulqa_csv_and_bigbench_sources(shared_data, tmp_path):
    mc1 = _load("truthfulqa_mc1", shared_data)
    mc2 = _load("truthfulqa_mc2", shared_data)
    assert len(mc1) == len(mc2) == 817
    assert all(it.data["labels"][0] == 1 and sum(it.data["labels"]) == 1 for it in mc1)
    assert all(sum(it.data["labels"]) >= 1 for it in mc2)
    # without the CSV, BIG-bench's 299-question subset is used
    (tmp_path / "bigbench").mkdir()
    (tmp_path / "bigbench" / "truthful_qa").symlink_to(shared_data / "bigbench" / "truthful_qa")
    assert len(_load("truthfulqa_mc1", tmp_path)) == 299
    assert len(_load("truthfulqa_mc2", tmp_path)) == 299


def test_capability_and_bias_sets(shared_data):
    assert len(_load("lambada", shared_data)) == 5153
    hs = _load("hellaswag", shared_data)
    assert len(hs) == 10042 and all(len(it.data["choices"]) == 4 for it in hs)
    bbq = _load("bbq", shared_data)
    assert len(bbq) == 16076
    assert Counter(it.data["meta"]["condition"] for it in bbq) == {"ambig": 8038, "disambig": 8038}
