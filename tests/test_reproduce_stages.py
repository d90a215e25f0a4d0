"""``hhhlab reproduce`` beyond the evals and PM vs IL: the re-ranking, distillation and PMP
sections (`experiments.stages`) — checked against their commands' schemas when the study is
loaded, run as cells (one per model where the command takes a ladder), written where the
report reads them, and skipped on a rerun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hhhlab.errors import HHHLabError
from hhhlab.experiments import reproduce as rp

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"


def test_stage_sections_are_checked_against_their_commands_when_loaded():
    with pytest.raises(HHHLabError, match=r"rerank\.sampls: unknown key"):
        rp.load_study("paper-cpu", sets=["rerank.sampls=8"])
    with pytest.raises(HHHLabError, match=r"rerank_code\.samples: .*integer.*'many'"):
        rp.load_study("paper-cpu", sets=["rerank_code.samples=many"])
    with pytest.raises(HHHLabError, match=r"rerank_code.*--code-datasets 'apps'"):
        rp.load_study("paper-cpu", sets=["rerank_code.code_datasets=apps"])
    with pytest.raises(HHHLabError, match=r"distill\.compare\.limt: unknown key"):
        rp.load_study("paper-cpu", sets=["distill.compare.limt=3"])
    with pytest.raises(HHHLabError, match=r"distill\.tokens: Field required"):
        rp.load_study(None, sets=["distill.lr=1e-4"])
    with pytest.raises(HHHLabError, match=r"rerank\.output: set by the study"):
        rp.load_study("paper-cpu", sets=["rerank.output=elsewhere"])
    with pytest.raises(HHHLabError, match=r"pmp_synthetic\.conditions: .*T9"):
        rp.load_study("paper-cpu", sets=["pmp_synthetic.conditions=[none, T9]"])
    with pytest.raises(HHHLabError, match=r"pmp\.sources: Field required"):
        rp.load_study(None, sets=["pmp.targets=[a.jsonl:b.jsonl]"])
    # a section set to null is skipped; the study's data_dir / dtype / seed are inherited
    cfg = rp.load_study("paper-cpu", {"seed": 5}, ["rerank=null", "distill=null", "rerank_code=null",
                                                    "pmp_synthetic=null"])
    cells, info = rp.plan(cfg.model_copy(update={"evals": None, "pm_vs_il": None}))
    assert cells == [] and info["stage"] == {}
    cfg = rp.load_study(None, {"seed": 5, "data_dir": "/data"}, ["evals=null", "pm_vs_il=null",
                                                                 "models=smollm2-135m@L2,@L4", "rerank.samples=8"])
    cells, info = rp.plan(cfg)
    assert [rp.cell_label(info, c) for c in cells] == ["rerank smollm2-135m@L2", "rerank smollm2-135m@L4"]
    rr = cells[0].args[1]
    assert (rr.models, rr.seed, rr.data_dir, rr.samples, rr.task) == ("smollm2-135m@L2", 5, "/data", 8, "lambada")
    assert rr.output.startswith(str(cfg.output)) and cells[0].key != cells[1].key


@pytest.fixture(scope="module")
def staged_study(tmp_path_factory):
    """A study of only the other stages on tiny models: Lambada re-ranking on two rungs,
    distillation with its comparison on one, and the synthetic PMP experiment."""
    from test_distill_run import PROMPT
    from test_evals import make_data
    from test_rerank import _lambada_dir

    root = tmp_path_factory.mktemp("staged")
    data = _lambada_dir(root)
    make_data(root / "evaldata")
    for sub in ("bigbench",):
        (data / sub).symlink_to(root / "evaldata" / sub)
    (root / "p.txt").write_text(PROMPT)
    with (root / "c.jsonl").open("w") as f:
        for i in range(200):
            f.write(json.dumps({"text": f"Sample {i}: the quick brown fox jumps over the lazy dog."}) + "\n")
    sets = [f"output={root / 'study'}", f"models={TINY}@L1,{TINY}", f"data_dir={data}", "dtype=float32",
            "evals=null", "pm_vs_il=null",
            "rerank.train_prompts=12", "rerank.train_samples=3", "rerank.eval_prompts=6", "rerank.samples=4",
            "rerank.max_new_tokens=3", "rerank.max_steps=2", "rerank.batch_size=4", "rerank.lr=1e-3",
            "rerank.max_length=64",
            f"distill.models={TINY}", f"distill.prompt={root / 'p.txt'}", f"distill.corpus={root / 'c.jsonl'}",
            "distill.tokens=512", "distill.context_length=32", "distill.top_k=8", "distill.heldout_tokens=128",
            "distill.batch_size=4", "distill.lr=1e-3", "distill.device=cpu",
            "distill.compare.evals=[hhh_alignment]", "distill.compare.limit=4", "distill.compare.dtype=float32",
            f"pmp_synthetic.model={TINY}", "pmp_synthetic.conditions=[none, Tb, T2]", "pmp_synthetic.letters=3",
            "pmp_synthetic.pmp_pairs=32", "pmp_synthetic.sizes=[0, 8]", "pmp_synthetic.eval_pairs=20"]
    cfg = rp.load_study(None, {}, sets)
    seen: list[str] = []
    result = rp.reproduce(cfg, on_cell=lambda cell: seen.append(cell.key))
    return cfg, result, seen


def test_stage_cells_run_and_write_their_commands_documents(staged_study):
    from hhhlab.results import read_results

    cfg, result, seen = staged_study
    assert not result["failures"] and result["planned"] == result["ran"] == len(seen) == 2 + 1 + 1
    out = Path(cfg.output)
    kinds = {}
    for key in seen:
        for path in sorted(rp.cell_doc(out, key).parent.glob("results*.json")):
            doc = read_results(path)
            assert doc.provenance["cell"] == key and doc.provenance["study"] == cfg.name
            kinds.setdefault(key.split("-")[0], []).append(doc.kind)
    assert {k: sorted(v) for k, v in kinds.items()} == {
        "rerank": ["sweep_rerank", "sweep_rerank"], "distill": ["distill", "distill_compare"],
        "pmp_synthetic": ["sweep_pmp_synthetic"]}
    distill_key = next(k for k in seen if k.startswith("distill"))
    assert read_results(rp.cell_doc(out, distill_key)).kind == "distill_compare"  # the finished marker
    rerank = [read_results(rp.cell_doc(out, k)) for k in seen if k.startswith("rerank")]
    assert sorted(r.payload["models"][0]["model"] for r in rerank) == sorted([f"{TINY}@L1", TINY])
    html = result["report"].read_text()
    for section in ("rerank", "distill", "pmp"):
        assert f'<section id="{section}" data-status="ok"' in html, section
    assert 'data-paper-fig="13"' in html and 'data-paper-fig="33"' in html


def test_a_rerun_skips_every_finished_stage_cell(staged_study, monkeypatch):
    from hhhlab.distill import run as distill_run
    from hhhlab.experiments import rerank
    from hhhlab.pmp import sweep

    cfg, _, seen = staged_study
    for module, name in ((rerank, "run_rerank"), (distill_run, "run_distill"), (sweep, "run_synthetic")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("a finished cell ran again"))
    again = rp.reproduce(cfg)
    assert again["skipped"] == again["planned"] == len(seen) and again["ran"] == 0
    # other settings are other cells, in other folders (a cache never meets other settings)
    changed = rp.load_study(None, {}, [f"{k}={v}" for k, v in (("output", cfg.output), ("models", cfg.models),
                                                               ("evals", "null"), ("pm_vs_il", "null"))]
                            + ["rerank.samples=8"])
    cells, _ = rp.plan(changed)
    assert not {c.key for c in cells} & set(seen)


def test_a_stage_without_its_data_is_reported_and_tried_again(tmp_path):
    from hhhlab.results import read_results

    (tmp_path / "data").mkdir()
    cfg = rp.load_study(None, {}, [f"output={tmp_path / 'study'}", f"models={TINY}", f"data_dir={tmp_path / 'data'}",
                                   "evals=null", "pm_vs_il=null", "rerank_code.code_datasets=mbpp"])
    result = rp.reproduce(cfg)
    assert result["ran"] == 1 and not result["failures"]  # missing data is not a failure to retry
    key = next(iter(rp.plan(cfg)[1]["stage"]))
    doc = read_results(rp.cell_doc(tmp_path / "study", key))
    assert doc.kind == "sweep_rerank" and "missing data" in doc.payload["skipped"]
    assert "mbpp/mbpp.jsonl" in doc.payload["skipped"] and "re-ranking programs" in doc.payload["skipped"]
    html = result["report"].read_text()
    assert '<section id="rerank" data-status="' in html and "missing data" in html
    assert not rp.is_finished(tmp_path / "study", key)  # the next run tries again: the data may be there
    assert rp.reproduce(cfg)["ran"] == 1
